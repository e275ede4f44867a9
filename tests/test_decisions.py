"""Decision rules end to end: settings checked before data, the rules in every prediction path, `tagnet calibrate`,
and the CLI workflows over a trained table model (audit, suggest)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from tagnet.inference.artifact import load_artifact
from tagnet.cli import app
from tagnet.config.settings import TrainConfig
from tagnet.errors import ConfigError
from tagnet.training.trainer import train as train_run
from tagnet.inference.predictor import Predictor
from tagnet.decisions.thresholds import apply_thresholds

runner = CliRunner()


def separable_arff(path, n, seed, *, noise=0.0, flip=()):
    """Labels a = x0 > 0, b = x1 > 0 (b flipped with probability `noise`; the rows in `flip` have label a flipped)."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 3))
    y = np.column_stack([x[:, 0] > 0, x[:, 1] > 0]).astype(int)
    y[:, 1] ^= (rng.random(n) < noise).astype(int)
    for i in flip:
        y[i, 0] ^= 1
    header = "@relation sep\n" + "".join(f"@attribute x{j} numeric\n" for j in range(3))
    rows = [",".join(f"{v:.6g}" for v in r) + f",{a},{b}" for r, (a, b) in zip(x, y)]
    path.write_text(header + "@attribute a {0,1}\n@attribute b {0,1}\n@data\n" + "\n".join(rows) + "\n")
    path.with_suffix(".xml").write_text('<?xml version="1.0"?>\n<labels xmlns="http://mulan.sourceforge.net/labels">'
                                        '<label name="a"></label><label name="b"></label></labels>\n')
    return path


@pytest.fixture(scope="module")
def tables(tmp_path_factory):
    folder = tmp_path_factory.mktemp("decisions")
    return (separable_arff(folder / "train.arff", 160, 0, noise=0.1), separable_arff(folder / "new.arff", 120, 1))


FAST = ["--epochs", "3", "--batch-size", "32", "--set", "head_hidden=8", "--select", "mlp"]  # the MLP, not a CV choice


def test_decision_settings_are_checked_before_any_data_is_read(tmp_path):
    missing = str(tmp_path / "absent.arff")
    for flags, expected in ((["--objective", "precision>=1.5"], "objective 'precision>=1.5' is not one of"),
                            (["--objective", "f1", "--confidence", "0.9"], "confidence=0.9"),
                            (["--objective", "recall>=0.9", "--confidence", "1.5"], "confidence=1.5"),
                            (["--min-labels", "3", "--max-labels", "2"], "max_labels=2 is below min_labels=3"),
                            (["--if-empty", "all"], "expected one of none, top1")):
        done = runner.invoke(app, ["train", missing, "--out", str(tmp_path / "run"), *flags])
        assert done.exit_code != 0 and expected in str(done.exception or done.output), (flags, done.output)
        assert not (tmp_path / "run").exists()
    with pytest.raises(ConfigError, match="applies to per-label and global"):
        TrainConfig(objective="hamming", threshold_mode="top-k").validate()


def test_train_stores_the_rules_and_prints_unreachable_labels(tables, tmp_path):
    train, new = tables
    out = tmp_path / "run"
    done = runner.invoke(app, ["train", str(train), "--out", str(out), *FAST, "--objective", "precision>=0.99",
                               "--max-labels", "1", "--if-empty", "top1"])
    assert done.exit_code == 0, done.output
    flat = " ".join(done.output.split())
    assert "label 'b': precision>=0.99 not reached on validation data; the best precision it reaches is" in flat
    artifact = load_artifact(out)
    stored = json.loads((artifact.path / "tagnet.json").read_text())["thresholds"]
    assert stored["max_labels"] == 1 and stored["if_empty"] == "top1"
    assert artifact.config["objective"] == "precision>=0.99"
    predictor = Predictor(out)
    results = predictor.predict_paths([new])
    chosen = apply_thresholds(predictor.predict_proba(np.array([list(r) for r in _rows(new)])), artifact.thresholds)
    assert [p.labels for p in results] == [[n for n, on in zip("ab", row) if on] for row in chosen]
    assert all(len(p.labels) == 1 for p in results)  # max_labels 1, if_empty top1


def _rows(path):
    from tagnet.data.feature_table import read_feature_table

    return read_feature_table(path).features


@pytest.fixture(scope="module")
def plain_run(tables, tmp_path_factory):
    """A tabular run with the default decisions, trained briefly (so its probabilities are not calibrated)."""
    out = tmp_path_factory.mktemp("plain") / "run"
    config = TrainConfig(epochs=3, batch_size=32, head_hidden=8)
    return train_run(tables[0], modality="tabular", out_dir=out, config=config, progress=False).run_dir


def test_calibrate_refits_thresholds_and_temperatures_on_new_data(plain_run, tables, tmp_path):
    import shutil

    from tagnet.decisions.calibration import fit_temperature
    from tagnet.decisions.thresholds import fit_decisions

    run = shutil.copytree(plain_run, tmp_path / "run")
    new = tables[1]
    former = (run / "artifact" / "tagnet.json").read_text()
    rows = _rows(new)
    raw = Predictor(run).predict_proba(rows)
    done = runner.invoke(app, ["calibrate", str(run), str(new), "--objective", "recall>=0.9", "--max-labels", "1"])
    assert done.exit_code == 0, done.output
    assert "temperature" in done.output and "tagnet.json.previous (move it back to undo)" in done.output
    assert (run / "artifact" / "tagnet.json.previous").read_text() == former
    targets = np.column_stack([rows[:, 0] > 0, rows[:, 1] > 0]).astype(int)
    scaling = fit_temperature(targets, raw)
    expected = fit_decisions(targets, scaling.apply(raw), objective="recall>=0.9", max_labels=1).thresholds
    artifact = load_artifact(run)
    assert artifact.thresholds.values == pytest.approx(expected.values) and artifact.thresholds.max_labels == 1
    assert artifact.calibration.temperatures == pytest.approx(scaling.temperatures, rel=1e-6)
    assert artifact.config["objective"] == "recall>=0.9"
    predictor = Predictor(run)
    calibrated = predictor.predict_proba(rows)
    np.testing.assert_allclose(calibrated, scaling.apply(raw), atol=1e-6)
    np.testing.assert_allclose(Predictor(run, calibrated=False).predict_proba(rows), raw, atol=1e-7)
    chosen = apply_thresholds(calibrated, artifact.thresholds)
    assert [p.labels for p in predictor.predict(rows)] == [[n for n, on in zip("ab", r) if on] for r in chosen]

    report_file = tmp_path / "report.json"
    done = runner.invoke(app, ["evaluate", str(run), str(new), "--json", str(report_file)])
    assert done.exit_code == 0 and "ECE" in done.output, done.output
    report = json.loads(report_file.read_text())
    from tagnet.decisions.calibration import ece

    per_label = ece(targets, calibrated)
    assert [row["ece"] for row in report["per_label"]] == pytest.approx(per_label.tolist(), abs=1e-6)
    assert 0 <= report["ece"] < 1

    # the calibrated run without temperatures, starting from the stored decisions (recall>=0.9, max 1 label)
    done = runner.invoke(app, ["calibrate", str(run), str(new), "--no-temperature"])
    assert done.exit_code == 0, done.output
    again = load_artifact(run)
    assert again.calibration is None and again.thresholds.max_labels == 1
    assert again.thresholds.values == pytest.approx(
        fit_decisions(targets, raw, objective="recall>=0.9", max_labels=1).thresholds.values)


def test_calibrate_checks_settings_before_reading_data(plain_run, tmp_path):

    for flags, expected in ((["--objective", "recall>=2"], "objective 'recall>=2' is not one of"),
                            (["--confidence", "0.9"], "confidence=0.9")):
        done = runner.invoke(app, ["calibrate", str(plain_run), str(tmp_path / "absent.arff"), *flags])
        assert done.exit_code != 0 and expected in str(done.exception), done.output
    assert not (plain_run / "artifact" / "tagnet.json.previous").exists()


def test_rules_and_temperatures_reach_onnx_serve_and_report(plain_run, tables, tmp_path):
    import shutil

    from fastapi.testclient import TestClient

    from tagnet.decisions.refit import calibrate
    from tagnet.inference.export import export_onnx, read_onnx_metadata
    from tagnet.report.html import write_report
    from tagnet.serve import create_app

    run = shutil.copytree(plain_run, tmp_path / "run")
    result = calibrate(run, tables[1], min_labels=1, if_empty="top1")
    rows = _rows(tables[1])
    targets = np.column_stack([rows[:, 0] > 0, rows[:, 1] > 0])
    raw, calibrated = Predictor(run, calibrated=False).predict_proba(rows), Predictor(run).predict_proba(rows)

    def log_loss(p):
        return -np.where(targets, np.log(p), np.log1p(-p)).mean()

    assert log_loss(calibrated) < log_loss(raw)  # the temperatures minimise it on these rows
    assert result.ece_before.shape == result.ece_after.shape == (2,)
    export = export_onnx(run)
    meta = read_onnx_metadata(export.onnx_path)
    assert meta["thresholds"] == load_artifact(run).thresholds.to_dict() and meta["thresholds"]["min_labels"] == 1
    assert meta["calibration"]["temperatures"] == pytest.approx(result.calibration.temperatures)
    assert "not calibrated" in meta["calibration_note"]
    rows = rows[:20]
    on_torch, on_onnx = Predictor(run, runtime="torch"), Predictor(run, runtime="onnx")
    np.testing.assert_allclose(on_onnx.predict_proba(rows), on_torch.predict_proba(rows), atol=1e-5)
    expected = on_torch.predict(rows).to_dicts()
    assert [p["labels"] for p in on_onnx.predict(rows).to_dicts()] == [p["labels"] for p in expected]
    assert all(p["labels"] for p in expected)  # min_labels 1
    client = TestClient(create_app(on_torch))
    answer = client.post("/predict", json={"rows": rows.tolist()}).json()["predictions"]
    assert [p["labels"] for p in answer] == [p["labels"] for p in expected]
    assert answer[3]["probabilities"] == pytest.approx(expected[3]["probabilities"], abs=1e-6)
    described = client.get("/labels").json()
    assert described["min_labels"] == 1 and described["if_empty"] == "top1"
    assert described["temperatures"] == pytest.approx(result.calibration.temperatures)
    page = write_report(run).read_text()
    assert "id='reliability'" in page and "fitted by tagnet calibrate" in page


def test_audit_ranks_flipped_labels_of_a_table_first(tmp_path):
    from tagnet.curation.workflow import audit_labels
    from tagnet.data.feature_table import read_feature_table

    x0 = np.random.default_rng(2).normal(size=(160, 3))[:, 0]
    flipped = np.flatnonzero(np.abs(x0) > 1.0)[:5].tolist()  # clear cases, far from the boundary x0 = 0
    path = separable_arff(tmp_path / "flipped.arff", 160, 2, flip=flipped)
    items = read_feature_table(path).labels.items
    out, page = tmp_path / "issues.csv", tmp_path / "issues.html"
    done = runner.invoke(app, ["audit", str(path), "--output", str(out), "--html", str(page), "--folds", "4"])
    assert done.exit_code == 0, done.output
    import csv

    rows = list(csv.DictReader(out.open()))
    assert {(r["item"], r["label"]) for r in rows[:5]} == {(items[i], "a") for i in flipped}
    assert rows[0].keys() == {"item", "label", "issue", "given", "probability", "score"}
    assert "Likely label errors" in page.read_text() and items[flipped[0]] in page.read_text()
    result = audit_labels(path, folds=4)
    assert [(i.item, i.label) for i in result.issues] == [(r["item"], r["label"]) for r in rows]
    done = runner.invoke(app, ["data", "check", str(path), "--audit"])
    assert "likely label errors" in done.output and items[flipped[0]] in done.output, done.output


def test_audit_of_images_uses_the_frozen_encoder(synthetic_data, tmp_path):
    out = tmp_path / "issues.csv"
    done = runner.invoke(app, ["audit", str(synthetic_data.labels_csv), "--images", str(synthetic_data.images_dir),
                               "--output", str(out), "--html", str(tmp_path / "page.html"), "--set", "image_size=64"])
    assert done.exit_code == 0, done.output
    assert out.read_text().startswith("item,label,issue,given,probability,score")
    assert "data:image/jpeg;base64," in (tmp_path / "page.html").read_text() or len(out.read_text().splitlines()) == 1
    done = runner.invoke(app, ["audit", str(synthetic_data.labels_csv), "--images", str(synthetic_data.images_dir),
                               "--output", str(out), "--set", "backbone=seed_cnn", "--set", "pretrained=false"])
    assert done.exit_code != 0 and "frozen pretrained encoder" in str(done.exception)


def test_suggest_writes_a_label_file_of_pool_inputs(plain_run, tables, tmp_path):
    from tagnet.data.labels import read_labels

    out = tmp_path / "next.csv"
    done = runner.invoke(app, ["suggest", str(plain_run), str(tables[1]), "--n", "7", "--output", str(out)])
    assert done.exit_code == 0, done.output
    table = read_labels(out)
    sources = [p.source for p in Predictor(plain_run).predict_paths([tables[1]])]
    assert len(table) == 7 and len(set(table.items)) == 7 and set(table.items) <= set(sources)
    assert table.label_names == ["a", "b"] and not table.known.any()
    done = runner.invoke(app, ["suggest", str(plain_run), str(tables[1]), "--n", "500", "--output", str(out)])
    assert done.exit_code != 0 and "--n 500" in str(done.exception)
