"""Tests of feature tables (ARFF dense/sparse with MULAN XML, CSV), standardisation, and tabular train/predict/evaluate."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.metrics import f1_score, hamming_loss
from typer.testing import CliRunner

from tagnet.inference.artifact import load_artifact
from tagnet.cli import app
from tagnet.config.settings import TrainConfig
from tagnet.data.check import check_dataset
from tagnet.data.feature_table import (find_labels_xml, fit_standardization, read_feature_rows, read_feature_table,
                                 read_labels_xml, standardize)
from tagnet.errors import ConfigError, DataError
from tagnet.evaluation.evaluate import evaluate
from tagnet.models import head_members
from tagnet.inference.predictor import Predictor
from tagnet.training.trainer import train as train_run

HEADER = """% a tiny MULAN-style data set
@relation tiny
@attribute f1 numeric
@attribute f2 real
@attribute f3 {0,1}
@attribute sun {0,1}
@attribute beach {0,1}
@data
"""
DENSE_ROWS = ["1.5,0,1,1,0", "0,2.5,0,0,1", "?,0,0,1,?", "0,0,0,0,0"]
# the same rows, sparse: left-out values are 0 (the first nominal value for {0,1})
SPARSE_ROWS = ["{0 1.5,2 1,3 1}", "{1 2.5,4 1}", "{0 ?,3 1,4 ?}", "{}"]
XML = """<?xml version="1.0" encoding="utf-8"?>
<labels xmlns="http://mulan.sourceforge.net/labels">
<label name="sun"></label>
<label name="beach"></label>
</labels>
"""
runner = CliRunner()


def _write(path, text):
    path.write_text(text, encoding="utf-8")
    return path


def test_dense_arff_with_xml_found_beside(tmp_path):
    _write(tmp_path / "tiny.xml", XML)
    path = _write(tmp_path / "tiny-train.arff", HEADER + "\n".join(DENSE_ROWS) + "\n")
    assert find_labels_xml(path) == tmp_path / "tiny.xml"
    found = read_feature_table(path)
    assert found.feature_names == ["f1", "f2", "f3"]
    assert found.labels.label_names == ["beach", "sun"]  # sorted, like every LabelTable
    assert found.labels.items == ["1", "2", "3", "4"]
    np.testing.assert_array_equal(found.labels.targets, [[0, 1], [1, 0], [0, 1], [0, 0]])
    np.testing.assert_array_equal(found.labels.known, [[1, 1], [1, 1], [0, 1], [1, 1]])
    np.testing.assert_array_equal(found.features, [[1.5, 0, 1], [0, 2.5, 0], [np.nan, 0, 0], [0, 0, 0]])
    assert found.features.dtype == np.float32


def test_data_check_reads_feature_tables(tmp_path):
    _write(tmp_path / "tiny.xml", XML)
    header = HEADER.replace("@attribute sun", "@attribute flat numeric\n@attribute sun")
    rows = [row.split(",", 3) for row in DENSE_ROWS]
    path = _write(tmp_path / "tiny-train.arff", header + "\n".join(",".join(r[:3] + ["7"] + r[3:]) for r in rows) + "\n")
    report = check_dataset(path, min_examples=1)
    assert [step.name for step in report.steps] == ["read labels", "labels", "features"]
    assert report.usable and report.items == 4 and report.features == 4 and report.missing_values == 1
    assert report.label_counts == {"beach": 1, "sun": 2} and report.unknown_counts == {"beach": 1, "sun": 0}
    assert {(p.kind, p.where) for p in report.warnings()} == {
        ("constant feature", "flat"), ("missing values", "data row 3"), ("empty label set", "data row 4")}
    done = runner.invoke(app, ["data", "check", str(path)])
    assert done.exit_code == 0 and "constant feature" in " ".join(done.output.split())
    done = runner.invoke(app, ["data", "check", str(path), "--label-count", "9"])
    assert done.exit_code == 1 and "not usable" in done.output
    done = runner.invoke(app, ["data", "split", str(path), "--out", str(tmp_path / "parts")])
    assert done.exit_code != 0 and "is a feature table" in str(done.exception)


def test_sparse_arff_reads_like_dense(tmp_path):
    _write(tmp_path / "tiny.xml", XML)
    dense = read_feature_table(_write(tmp_path / "tiny.arff", HEADER + "\n".join(DENSE_ROWS) + "\n"))
    sparse = read_feature_table(_write(tmp_path / "tiny-sparse.arff", HEADER + "\n".join(SPARSE_ROWS) + "\n"))
    np.testing.assert_array_equal(sparse.features, dense.features)
    np.testing.assert_array_equal(sparse.labels.targets, dense.labels.targets)
    np.testing.assert_array_equal(sparse.labels.known, dense.labels.known)


def test_label_count_option_and_missing_label_definition(tmp_path):
    path = _write(tmp_path / "alone.arff", HEADER + "\n".join(DENSE_ROWS) + "\n")
    with pytest.raises(DataError, match="--label-count"):
        read_feature_table(path)
    found = read_feature_table(path, label_count=2)
    assert found.labels.label_names == ["beach", "sun"] and found.feature_names == ["f1", "f2", "f3"]
    assert read_feature_table(path, label_count=3).feature_names == ["f1", "f2"]
    with pytest.raises(DataError, match="label_count is 5"):
        read_feature_table(path, label_count=5)


def test_xml_naming_an_absent_label(tmp_path):
    _write(tmp_path / "bad.xml", XML.replace("beach", "snow"))
    path = _write(tmp_path / "bad.arff", HEADER + "\n".join(DENSE_ROWS) + "\n")
    with pytest.raises(DataError, match="snow"):
        read_feature_table(path)
    assert read_labels_xml(tmp_path / "bad.xml") == ["sun", "snow"]


def test_bad_arff_values(tmp_path):
    _write(tmp_path / "t.xml", XML)
    with pytest.raises(DataError, match="not a readable ARFF"):
        read_feature_table(_write(tmp_path / "t.arff", HEADER + "1,2,3\n"))
    nominal_label = HEADER.replace("@attribute sun {0,1}", "@attribute sun {no,yes}")
    with pytest.raises(DataError, match="label column 'sun' is nominal with values no, yes; expected numbers"):
        read_feature_table(_write(tmp_path / "t.arff", nominal_label + "1,2,0,yes,0\n"))


def test_csv_feature_table(tmp_path):
    path = _write(tmp_path / "table.csv", "id,height,width,tall,wide\na,2.0,1,1,0\nb,0.5,,0,1\nc,1,3,-1,1\n")
    found = read_feature_table(path, label_columns=["tall", "wide"])
    assert found.labels.items == ["a", "b", "c"]  # the "id" column is found by name and is no feature
    assert found.feature_names == ["height", "width"]
    np.testing.assert_array_equal(found.features, [[2, 1], [0.5, np.nan], [1, 3]])
    np.testing.assert_array_equal(found.labels.known, [[1, 1], [1, 1], [0, 1]])
    assert read_feature_table(path, label_count=2).feature_names == ["height", "width"]
    items, rows = read_feature_rows(path, feature_names=["width", "height"])
    np.testing.assert_array_equal(rows, [[1, 2], [np.nan, 0.5], [3, 1]])
    with pytest.raises(DataError, match="line 3, label column 'tall': value 2"):
        read_feature_table(_write(tmp_path / "b.csv", "id,x,tall\na,1,1\nb,2,2\n"), label_columns=["tall"])
    with pytest.raises(DataError, match="'x' holds 'big' on line 2"):
        read_feature_table(_write(tmp_path / "c.csv", "id,x,tall\na,big,1\n"), label_columns=["tall"])
    with pytest.raises(DataError, match="lacks 1 of the model's feature columns: depth"):
        read_feature_rows(path, feature_names=["height", "depth"])


def test_standardization_ignores_missing_and_constant_features():
    x = np.array([[1.0, 5.0, np.nan], [3.0, 5.0, np.nan], [np.nan, 5.0, np.nan]])
    mean, std = fit_standardization(x)
    np.testing.assert_allclose(mean, [2.0, 5.0, 0.0])
    np.testing.assert_allclose(std, [1.0, 1.0, 1.0])  # std of (1, 3) is 1; constant and empty columns get 1
    np.testing.assert_allclose(standardize(x, mean, std), [[-1, 0, 0], [1, 0, 0], [0, 0, 0]])


def _separable_arff(path, n, seed):
    """Labels a = f1 > 0, b = f2 > 0.5 on random features of very different scales."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 4)) * [1.0, 1000.0, 0.01, 1.0]
    rows = [",".join(f"{v:.6g}" for v in r) + f",{int(r[0] > 0)},{int(r[1] > 500)}" for r in x]
    header = "@relation sep\n" + "".join(f"@attribute x{j} numeric\n" for j in range(4))
    return _write(path, header + "@attribute a {0,1}\n@attribute b {0,1}\n@data\n" + "\n".join(rows) + "\n")


@pytest.fixture(scope="module")
def tabular_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tabular")
    _write(folder / "sep.xml", XML.replace("sun", "a").replace("beach", "b"))
    train = _separable_arff(folder / "sep-train.arff", 160, 0)
    test = _separable_arff(folder / "sep-test.arff", 60, 1)
    config = TrainConfig(epochs=15, batch_size=32, lr=2e-2, head_hidden=16, patience=15, select="mlp")
    result = train_run(train, modality="tabular", out_dir=folder / "run", config=config, progress=False)
    return result, test


def test_tabular_run_files_and_artifact(tabular_run):
    result, _ = tabular_run
    for name in ("metrics.csv", "metrics.json", "config.json", "run.json", "val_predictions.csv"):
        assert (result.run_dir / name).is_file(), name
    artifact = load_artifact(result.run_dir)
    assert artifact.model.spec["name"] == "mlp" and artifact.model.num_features == 4
    assert artifact.meta["modality"] == "tabular"
    assert artifact.state["feature_names"] == ["x0", "x1", "x2", "x3"]
    assert json.loads((result.run_dir / "config.json").read_text())["backbone"] == "mlp"
    assert result.report.mAP > 0.9


def test_vector_predictor_applies_the_stored_standardisation(tabular_run):
    result, test = tabular_run
    predictor = Predictor(result.run_dir)
    assert predictor.modality.name == "tabular"
    rows = read_feature_table(test).features
    extra = predictor.artifact.state
    with torch.no_grad():
        expected = torch.sigmoid(predictor.model(torch.from_numpy(standardize(rows, extra["mean"], extra["std"])))).numpy()
    np.testing.assert_allclose(predictor.predict_proba(rows), expected, rtol=1e-5, atol=1e-6)
    results = predictor.predict(rows[:2])
    assert [p.source for p in results] == ["1", "2"] and set(results.predictions[0].probabilities) == {"a", "b"}
    with pytest.raises(DataError, match="expects"):
        predictor.predict_proba(rows[:, :3])
    with pytest.raises(DataError, match="tabular model"):
        predictor.predict(["hello"])


def test_evaluate_matches_scikit_learn(tabular_run):
    result, test = tabular_run
    report, skipped = evaluate(result.run_dir, test)
    predictor = Predictor(result.run_dir)
    found = read_feature_table(test)
    truth = found.labels.aligned_to(predictor.label_names).targets
    predicted = predictor.predict(found.features)
    chosen = np.array([[name in p.labels for name in predictor.label_names] for p in predicted])
    assert skipped == {}
    assert report.hamming_loss == pytest.approx(hamming_loss(truth, chosen))
    assert report.micro_f1 == pytest.approx(f1_score(truth, chosen, average="micro"))
    assert report.hamming_loss < 0.15


def test_cli_train_evaluate_predict(tabular_run, tmp_path):
    _, test = tabular_run
    train = test.parent / "sep-train.arff"
    out = tmp_path / "run"
    done = runner.invoke(app, ["train", str(train), "--out", str(out), "--epochs", "2", "--batch-size", "32",
                               "--threshold-mode", "fixed", "--set", "fixed_threshold=0.4"])
    assert done.exit_code == 0, done.output
    assert load_artifact(out).thresholds.to_dict() == {"mode": "fixed", "values": [0.4, 0.4], "top_k": 1, "fallback": []}
    report_file = tmp_path / "report.json"
    done = runner.invoke(app, ["evaluate", str(out), str(test), "--json", str(report_file), "--threshold", "0.5"])
    assert done.exit_code == 0, done.output
    found = read_feature_table(test)
    probs = Predictor(out).predict_proba(found.features)
    report = json.loads(report_file.read_text())
    assert report["threshold_mode"] == "fixed"
    assert report["hamming_loss"] == pytest.approx(hamming_loss(found.labels.targets, probs >= 0.5))
    predictions = tmp_path / "p.csv"
    done = runner.invoke(app, ["predict", str(out), str(test), "--output", str(predictions)])
    assert done.exit_code == 0, done.output
    assert len(predictions.read_text().splitlines()) == 61


def test_ensemble_of_heads_averages_members_and_exports(tabular_run, tmp_path):
    from tagnet.inference.export import export_onnx

    _, test = tabular_run
    train = test.parent / "sep-train.arff"
    config = TrainConfig(epochs=10, batch_size=32, lr=2e-2, head_hidden=16, ensemble=3, select="mlp")
    result = train_run(train, modality="tabular", out_dir=tmp_path / "run", config=config, progress=False)
    phases = [line.split(",")[0] for line in (result.run_dir / "metrics.csv").read_text().splitlines()[1:]]
    assert sorted(set(phases)) == ["head", "head-2", "head-3"]  # one head per phase, as for every modality
    predictor = Predictor(result.run_dir)
    members = head_members(predictor.model)
    assert len(members) == 3 and predictor.artifact.model.spec["ensemble"] == 3
    rows = read_feature_table(test).features
    extra = predictor.artifact.state
    inputs = torch.from_numpy(standardize(rows, extra["mean"], extra["std"]))
    with torch.no_grad():
        mean = np.mean([torch.sigmoid(m(inputs)).numpy() for m in members], axis=0)
    np.testing.assert_allclose(predictor.predict_proba(rows), mean, atol=1e-6)
    # each head held out its own 20% (32 rows): a validation row's probability is the mean of the heads that held it out
    saved = np.loadtxt(result.run_dir / "val_predictions.csv", delimiter=",", skiprows=1)  # item, true_a/b, prob_a/b
    assert 32 < len(saved) <= 96 and result.report.n_items == len(saved)
    validation_rows = read_feature_table(train).features[saved[:, 0].astype(int) - 1]  # items are row numbers from 1
    inputs = torch.from_numpy(standardize(validation_rows, extra["mean"], extra["std"]))
    with torch.no_grad():
        per_head = np.stack([torch.sigmoid(m(inputs)).numpy() for m in members])  # (3, rows, 2)
    subsets = [[k for k in range(3) if mask >> k & 1] for mask in range(1, 8)]
    for row, probs in enumerate(saved[:, 3:]):
        assert any(np.allclose(per_head[heads, row].mean(0), probs, atol=1e-5) for heads in subsets), row
    assert result.report.mAP > 0.9
    shared = train_run(train, modality="tabular", val_labels=test, out_dir=tmp_path / "shared", config=config,
                           progress=False)  # with a --val file every head validates on it: the whole ensemble's output
    saved = np.loadtxt(shared.run_dir / "val_predictions.csv", delimiter=",", skiprows=1)
    np.testing.assert_allclose(Predictor(shared.run_dir).predict_proba(read_feature_table(test).features),
                               saved[:, 3:], atol=1e-5)
    report = export_onnx(shutil.copytree(result.artifact_dir, tmp_path / "artifact"))
    assert report.parity_max_abs_diff <= 1e-4
    with pytest.raises(ConfigError, match="an ensemble averages heads on a frozen pretrained encoder"):
        train_run(tmp_path / "labels.csv", out_dir=tmp_path / "image", progress=False,
                  config=TrainConfig(backbone="seed_cnn", pretrained=False, ensemble=2))
    with pytest.raises(ConfigError, match="ensemble=2 with finetune"):
        train_run(train, modality="text", text_column="x", out_dir=tmp_path / "text",
                      config=TrainConfig(ensemble=2, finetune=True), progress=False)


def test_options_that_do_not_apply_to_tables(tmp_path):
    with pytest.raises(ConfigError, match="no_header"):
        train_run(tmp_path / "x.arff", modality="tabular", out_dir=tmp_path / "run",
                      read_options={"no_header": True}, progress=False)
    with pytest.raises(ConfigError, match="does not take tabular"):
        train_run(tmp_path / "x.arff", modality="tabular", out_dir=tmp_path / "run",
                      config=TrainConfig(backbone="seed_cnn"), progress=False)


def test_cli_trains_on_a_csv_feature_table(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(60, 3))
    lines = ["id,x0,x1,x2,a,b"] + [f"r{i},{r[0]:.4f},{r[1]:.4f},{r[2]:.4f},{int(r[0] > 0)},{int(r[1] > 0)}"
                                   for i, r in enumerate(x)]
    table = _write(tmp_path / "table.csv", "\n".join(lines) + "\n")
    out = tmp_path / "run"
    done = runner.invoke(app, ["train", str(table), "--tabular", "--label-columns", "a,b", "--out", str(out),
                               "--epochs", "2"])
    assert done.exit_code == 0, done.output
    extra = load_artifact(out).state
    assert extra["feature_names"] == ["x0", "x1", "x2"] and extra["id_column"] is None
    report, _ = evaluate(out, table)  # labels and features found by the model's column names
    assert report.per_label[0]["support"] + report.per_label[1]["support"] == int((x[:, :2] > 0).sum())


def test_server_answers_json_feature_rows(tabular_run):
    from fastapi.testclient import TestClient

    from tagnet.serve import create_app

    predictor = Predictor(tabular_run[0].run_dir)
    client = TestClient(create_app(predictor))
    rows = [[3.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0]]
    answer = client.post("/predict", json={"rows": rows})
    assert answer.status_code == 200
    expected = predictor.predict(np.array(rows)).to_dicts()
    got = answer.json()["predictions"]
    assert [p["labels"] for p in got] == [p["labels"] for p in expected]
    assert got[0]["probabilities"] == pytest.approx(expected[0]["probabilities"])
    assert client.get("/labels").json()["labels"] == predictor.label_names
    assert client.post("/predict", json={"texts": ["a"]}).status_code == 400
    assert client.post("/predict", json={"rows": [[1.0, 2.0]]}).status_code == 400  # 2 features, model has 4
    assert client.post("/predict", json={"rows": [[1.0, 2.0, 3.0, 4.0]]}).status_code == 200  # still serving
    missing = client.post("/predict", json={"rows": [[None, 0.0, 0.0, 0.0]]}).json()["predictions"][0]
    assert missing["probabilities"] == pytest.approx(
        predictor.predict(np.array([[np.nan, 0.0, 0.0, 0.0]])).predictions[0].probabilities)
    page = client.get("/")
    assert page.status_code == 200 and 'id="lines"' in page.text and "/static/lines.js" in page.text
    assert '"/predict"' in client.get("/static/lines.js").text
    counts = client.get("/metrics").json()
    assert "POST /predict" in json.dumps(counts)
    small = TestClient(create_app(predictor, max_upload_bytes=100))
    too_big = small.post("/predict", json={"rows": [[1.0, 2.0, 3.0, 4.0]] * 20})
    assert too_big.status_code == 413 and "over the limit of 100 bytes" in too_big.json()["detail"]


def test_export_tabular_model_to_onnx_with_standardisation_inside(tabular_run, tmp_path, monkeypatch):
    import onnxruntime
    import uvicorn
    from fastapi.testclient import TestClient

    from tagnet.inference.export import export_onnx, read_onnx_metadata
    from tagnet.serve import create_app

    result, test = tabular_run
    folder = shutil.copytree(result.artifact_dir, tmp_path / "artifact")
    report = export_onnx(folder, val_labels=test)
    on_torch = Predictor(folder, runtime="torch")
    assert report.parity_max_abs_diff <= 1e-4 and report.tokenizer_path is None
    assert report.val_map["onnx"] == pytest.approx(evaluate(on_torch, test)[0].mAP, abs=1e-6)
    meta = read_onnx_metadata(report.onnx_path)
    assert meta["modality"] == "tabular" and meta["feature_names"] == ["x0", "x1", "x2", "x3"]
    rows = read_feature_table(test).features[:8].astype(np.float32)
    rows[0, 1] = np.nan  # a missing value: the training mean, as in PyTorch
    session = onnxruntime.InferenceSession(str(report.onnx_path), providers=["CPUExecutionProvider"])
    raw = session.run(["probabilities"], {"features": rows})[0]  # raw values in, no standardisation outside
    np.testing.assert_allclose(raw, on_torch.predict_proba(rows), atol=1e-5)
    out = tmp_path / "p.json"
    done = runner.invoke(app, ["predict", str(folder), str(test), "--runtime", "onnx", "--output", str(out)])
    assert done.exit_code == 0, done.output
    expected = on_torch.predict_paths([test]).to_dicts()
    got = json.loads(out.read_text())["predictions"]
    assert [p["labels"] for p in got] == [p["labels"] for p in expected]
    assert got[5]["probabilities"] == pytest.approx(expected[5]["probabilities"], abs=1e-5)
    on_openvino = Predictor(folder, runtime="openvino")  # the same graph, NaN handling included
    np.testing.assert_allclose(on_openvino.predict_proba(rows), raw, atol=1e-4)
    assert on_openvino.runtime == "openvino"
    done = runner.invoke(app, ["predict", str(folder), str(test), "--runtime", "openvino", "--output", str(out)])
    assert done.exit_code == 0, done.output
    got = json.loads(out.read_text())["predictions"]
    assert got[5]["probabilities"] == pytest.approx(expected[5]["probabilities"], abs=1e-4)
    for name, runtime in [("auto", "onnx"), ("openvino", "openvino")]:
        client = TestClient(create_app(Predictor(folder, runtime=name)))
        answer = client.post("/predict", json={"rows": rows[1:3].tolist()}).json()["predictions"]
        assert answer[0]["probabilities"]["a"] == pytest.approx(float(raw[1, 0]), abs=1e-4)
        assert client.get("/health").json()["runtime"] == runtime
    monkeypatch.setattr(uvicorn, "run", lambda app, **where: None)  # `tagnet serve` up to listening
    started = runner.invoke(app, ["serve", str(folder), "--runtime", "openvino", "--port", "0"])
    assert started.exit_code == 0 and f"serving {folder} on http://127.0.0.1:0/ (runtime openvino;" in started.output


def test_tune_searches_a_feature_table(tabular_run, tmp_path):
    import optuna

    from tagnet.config.settings import load_config
    from tagnet.tuning.search import suggest_config, tune

    _, test = tabular_run
    train = test.parent / "sep-train.arff"
    result = tune(train, modality="tabular", trials=3, out_dir=tmp_path / "study",
                  base_config=TrainConfig(epochs=3, batch_size=32), console=None)
    assert result.finished == 3
    study = optuna.load_study(study_name="tagnet", storage=f"sqlite:///{tmp_path / 'study' / 'study.db'}")
    first = study.trials[0].params  # the base recipe, with the tabular defaults (mlp, 256 wide)
    assert (first["backbone"], first["head_hidden"], first["label_smoothing"], first["mixup"]) == ("mlp", 256, 0.0, 0.0)
    assert "augment" not in first
    config = load_config(result.best_config_path)
    assert config.backbone == "mlp" and config == TrainConfig(  # a table's objective resolved: hamming, p >= 0.5
        epochs=3, batch_size=32, select="mlp", objective="hamming", threshold_mode="fixed").updated(
        **study.best_trial.params)
    assert load_artifact(result.best_run).modality == "tabular"
    best_metrics = json.loads((result.best_run / "metrics.json").read_text())
    assert best_metrics["validation"]["mAP"] == pytest.approx(study.best_value)
    strong = {"backbone": "mlp", "lr": 1e-3, "weight_decay": 0.5, "dropout": 0.5, "label_smoothing": 0.1, "mixup": 0.4,
              "head_hidden": 1024, "loss": "bce"}
    assert suggest_config(optuna.trial.FixedTrial(strong), TrainConfig(), backbones=["mlp"],
                          modality="tabular") == TrainConfig().updated(**strong)
    done = runner.invoke(app, ["tune", str(train), "--trials", "3", "--out", str(tmp_path / "cli"), "--set", "epochs=2",
                               "--metric", "hamming_loss", "--set", "threshold_mode=fixed"])
    assert done.exit_code == 0, done.output
    printed = " ".join(done.output.split())
    assert "best validation hamming_loss" in printed and f"tagnet train {train} --config" in printed
    study = optuna.load_study(study_name="tagnet", storage=f"sqlite:///{tmp_path / 'cli' / 'study.db'}")
    assert study.direction == optuna.study.StudyDirection.MINIMIZE
    assert study.best_value == min(t.value for t in study.trials)
    best_metrics = json.loads((tmp_path / "cli" / "best_run" / "metrics.json").read_text())["validation"]
    assert best_metrics["hamming_loss"] == pytest.approx(study.best_value)
    assert best_metrics["threshold_mode"] == "fixed"
    rows = list(csv.DictReader((tmp_path / "cli" / "trials.csv").open()))
    assert [float(r["hamming_loss"]) for r in rows] == pytest.approx([t.value for t in study.trials], abs=1e-5)
    assert all(r["mAP"] for r in rows)


# ---- ARFF as MULAN and MEKA write it ---------------------------------------------------------
FIXTURES = Path(__file__).parent / "fixtures"


def test_mulan_escaped_quotes_match_the_xml_and_nominal_features_are_encoded():
    found = read_feature_table(FIXTURES / "mulan_birds-train.arff")
    assert found.labels.label_names == ["Brown Creeper", "Pacific Wren", "Swainson's Thrush"]
    assert found.labels.targets.tolist() == [[1, 0, 0], [0, 1, 1], [0, 0, 0], [0, 0, 1]]
    assert found.feature_names == ["audio_ssd1", "audio_ssd2", "location=1", "location=2", "location=3", "location=4",
                                   "hasSegments"]
    np.testing.assert_allclose(found.features, [[0.0116, 0.0046, 1, 0, 0, 0, 1], [0.0021, 0.0104, 0, 0, 1, 0, 1],
                                                [0, 0, 0, 1, 0, 0, 0], [0.0089, np.nan, 1, 0, 0, 0, 1]], rtol=1e-6)
    assert found.encoding == {"binary": {"hasSegments": "1"}, "onehot": {"location": ["1", "2", "3", "4"]}}


def test_meka_label_count_identifier_and_nominals():
    found = read_feature_table(FIXTURES / "meka_music.arff")
    assert found.labels.label_names == ["amazed", "happy", "quiet'still"]  # the first 3 attributes (-C 3)
    assert found.labels.items == ["t-001", "t-002", "t-003", "t-004"]  # the string attribute names the rows
    assert "'track_id' identify the rows" in found.labels.meta["notes"][0]
    assert found.feature_names == ["Mean_Acc1298_Mean_Mem40_Centroid", "instrumental", "genre=rock", "genre=jazz",
                                   "genre=hip hop"]
    np.testing.assert_array_equal(found.features[:, 1:], [[1, 1, 0, 0], [0, 0, 0, 1], [np.nan, 0, 1, 0], [0, 1, 0, 0]])
    assert json.loads(json.dumps(found.encoding)) == {"binary": {"instrumental": "YES"},
                                                      "onehot": {"genre": ["rock", "jazz", "hip hop"]}}
    report = check_dataset(FIXTURES / "meka_music.arff")
    assert report.usable and any("track_id" in note for note in report.notes)


def test_meka_negative_label_count_sparse():
    found = read_feature_table(FIXTURES / "meka_scene_negative_c.arff")
    assert found.labels.label_names == ["Beach", "Sunset"] and found.feature_names == ["Att1", "Att2"]
    assert found.labels.targets.tolist() == [[1, 0], [0, 1], [0, 0]]
    np.testing.assert_allclose(found.features, [[0.646467, 0.666435], [0.770156, 0], [0, 0.5]], rtol=1e-6)


def test_meka_label_count_out_of_range(tmp_path):
    path = _write(tmp_path / "m.arff", "@relation 'x: -C 5'\n@attribute a numeric\n@attribute b {0,1}\n@data\n1,0\n")
    with pytest.raises(DataError, match=r"m\.arff: @relation 'x: -C 5' says -C 5; expected 1 to 1 labels"):
        read_feature_table(path)


def test_encoding_applied_to_new_rows_unseen_category_is_zeros(tmp_path):
    train = read_feature_table(FIXTURES / "meka_music.arff")
    new = _write(tmp_path / "new.arff", """@relation 'Music: -C 3'
@attribute amazed {0,1}
@attribute happy {0,1}
@attribute 'quiet\\'still' {0,1}
@attribute track_id string
@attribute Mean_Acc1298_Mean_Mem40_Centroid numeric
@attribute instrumental {YES,NO}
@attribute genre {rock,jazz,'hip hop',polka}
@data
0,0,0,'n-1',0.5,NO,polka
0,0,0,'n-2',0.25,YES,jazz
""")
    items, rows = read_feature_rows(new, feature_names=train.feature_names, encoding=train.encoding)
    assert items == ["n-1", "n-2"]
    np.testing.assert_allclose(rows, [[0.5, 0, 0, 0, 0], [0.25, 1, 0, 1, 0]])  # polka: no genre column is 1
    from tagnet.data.feature_table import encode_features

    raw = {"Mean_Acc1298_Mean_Mem40_Centroid": ["1.5", "?"], "instrumental": ["YES", None], "genre": ["hip hop", "rock"]}
    np.testing.assert_array_equal(encode_features(raw, train.feature_names, train.encoding),
                                  [[1.5, 1, 0, 0, 1], [np.nan, np.nan, 1, 0, 0]])
    with pytest.raises(DataError, match="no column 'genre' for feature 'genre=rock'"):
        encode_features({k: v for k, v in raw.items() if k != "genre"}, train.feature_names, train.encoding)


def test_nominal_attributes_are_one_hot_encoded_in_training_prediction_and_evaluation(tmp_path):
    rng = np.random.default_rng(3)
    colors = ["red", "green", "blue"]
    rows = []
    for i in range(60):
        color, x = colors[i % 3], rng.normal()
        rows.append(f"{int(color == 'red')},{int(x > 0)},{color},{x:.4f}")
    header = "@relation 'nominal: -C 2'\n@attribute a {0,1}\n@attribute b {0,1}\n@attribute color {red,green,blue}\n" \
             "@attribute x numeric\n@data\n"
    train = _write(tmp_path / "nominal.arff", header + "\n".join(rows) + "\n")
    result = train_run(train, out_dir=tmp_path / "run", config=TrainConfig(epochs=3, batch_size=16), progress=False)
    state = load_artifact(result.run_dir).state
    assert state["feature_names"] == ["color=red", "color=green", "color=blue", "x"]
    assert state["encoding"]["onehot"] == {"color": colors}
    predictor = Predictor(result.run_dir, runtime="torch")
    found = predictor.predict_paths([train])
    assert len(found) == 60 and not found.errors
    expected = predictor.predict_proba([[1.0, 0.0, 0.0, float(rows[0].split(",")[3])]])
    np.testing.assert_allclose(found.predictions[0].probabilities["a"], expected[0, 0], rtol=1e-6)
    report, _ = evaluate(predictor, train)
    assert report.per_label[0]["support"] == 20  # the red rows


def test_cross_validation_scores_every_row_once_and_reports_the_spread(tmp_path):
    _write(tmp_path / "sep.xml", XML.replace("sun", "a").replace("beach", "b"))
    train = _separable_arff(tmp_path / "sep-train.arff", 90, 0)
    done = runner.invoke(app, ["train", str(train), "--cv", "3", "--epochs", "4", "--out", str(tmp_path / "run")])
    assert done.exit_code == 0, done.output
    assert "3-fold cross-validation: mAP" in " ".join(done.output.split())
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    cv = metrics["cv"]
    assert cv["folds"] == 3 and len(cv["per_fold"]) == 3
    values = [fold["mAP"] for fold in cv["per_fold"]]
    assert cv["mAP"]["mean"] == pytest.approx(np.mean(values)) and cv["mAP"]["std"] == pytest.approx(np.std(values, ddof=1))
    saved = np.loadtxt(tmp_path / "run" / "val_predictions.csv", delimiter=",", skiprows=1, dtype=str)
    assert len(saved) == 90 and len(set(saved[:, 0])) == 90  # every row validated exactly once, out of fold
    assert len(head_members(load_artifact(tmp_path / "run").model)) == 3  # the model averages the fold heads
    refused = runner.invoke(app, ["train", str(train), "--cv", "3", "--val", str(train), "--out", str(tmp_path / "r2")])
    assert refused.exit_code == 1 and "cross-validation holds out folds" in str(refused.exception)


def test_trainer_runs_its_stages_in_order_with_callbacks(tmp_path):
    """A run is its stages in order, each announced to on_stage_start/on_stage_end hooks; on_epoch_end sees every
    validation (as tuning's pruning does); the source may be given as one DataSource value."""
    from tagnet.config.source import DataSource

    train = _separable_arff(tmp_path / "sep-train.arff", 80, 0)
    seen: list[tuple[str, str]] = []
    epochs: list[int] = []
    hooks = {"on_stage_start": [lambda name, run: seen.append(("start", name))],
             "on_stage_end": [lambda name, run: seen.append(("end", name))],
             "on_epoch_end": [lambda epoch, score: epochs.append(epoch)]}
    config = TrainConfig(epochs=3, batch_size=32, patience=3, head_hidden=8, select="mlp")
    result = train_run(train, out_dir=tmp_path / "run", config=config, progress=False, callbacks=hooks,
                       source=DataSource(train, read_options={"label_count": 2}, modality="tabular"))
    names = [name for event, name in seen if event == "start"]
    assert names == ["read_inputs", "prepare_inputs", "fit_backbone_to_budget", "fit_state", "plan_recipe",
                     "frozen_outputs", "heads", "decisions", "write_artifact"]
    assert [name for event, name in seen if event == "end"] == names
    assert epochs == [1, 2, 3]
    recipe = json.loads((result.run_dir / "checkpoints" / "recipe.json").read_text())
    assert recipe["name"] == "head" and recipe["budget"] is None
    with pytest.raises(ConfigError, match="on_epoch_ends"):
        train_run(train, out_dir=tmp_path / "bad", config=config, callbacks={"on_epoch_ends": []},
                  read_options={"label_count": 2}, modality="tabular")
    assert not (tmp_path / "bad").exists()  # refused before the run folder is made
