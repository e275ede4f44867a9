"""Tests of head selection for feature tables: linear logistic regression vs the MLP by k-fold CV (--select)."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from typer.testing import CliRunner

from tagnet.artifact import load_artifact
from tagnet.cli import app
from tagnet.config import TrainConfig
from tagnet.data.tabular import read_feature_table, standardize
from tagnet.errors import ConfigError, DataError
from tagnet.evaluation import evaluate
from tagnet.pipeline import train
from tagnet.predict import Predictor
from tagnet.selection import cv_folds, fit_linear, select_metric


def _linear_arff(path, n, seed):
    """Labels a = x0 + x1 > 0 and b = x2 > 0.3 (linear), on features of very different scales, with noise."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 5)) * [1.0, 1.0, 100.0, 1.0, 0.01]
    a = (x[:, 0] + x[:, 1] + 0.3 * rng.normal(size=n)) > 0
    b = x[:, 2] > 30
    rows = [",".join(f"{v:.6g}" for v in r) + f",{int(p)},{int(q)}" for r, p, q in zip(x, a, b)]
    header = "@relation lin\n" + "".join(f"@attribute x{j} numeric\n" for j in range(5))
    path.write_text(header + "@attribute a {0,1}\n@attribute b {0,1}\n@data\n" + "\n".join(rows) + "\n")
    (path.parent / "lin.xml").write_text('<labels xmlns="http://mulan.sourceforge.net/labels">'
                                         '<label name="a"></label><label name="b"></label></labels>')
    return path


def test_fit_linear_is_scikit_learns_logistic_regression_per_label():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(80, 3))
    targets = np.column_stack([x[:, 0] > 0, x[:, 1] + rng.normal(size=80) > 0, np.zeros(80)]).astype(np.float32)
    known = np.ones_like(targets, dtype=bool)
    known[:10, 1] = False  # an unknown cell is left out of that label's fit
    [(coef, intercept)] = fit_linear(x, targets, known, Cs=(0.1,))
    for j, rows in ((0, slice(None)), (1, slice(10, None))):
        expected = LogisticRegression(C=0.1).fit(x[rows], targets[rows, j])
        np.testing.assert_allclose(coef[j], expected.coef_[0], atol=1e-4)
        assert intercept[j] == pytest.approx(expected.intercept_[0], abs=1e-4)
    # a label with one class: zero weights, the logit of its clipped rate (0 -> 1e-3)
    np.testing.assert_array_equal(coef[2], 0.0)
    assert intercept[2] == pytest.approx(np.log(1e-3 / (1 - 1e-3)))


def test_cv_folds_cover_every_row_once_and_refuse_too_few_rows():
    targets = np.tile([[1, 0], [0, 1], [1, 1], [0, 0]], (5, 1))
    folds = cv_folds(targets, np.ones_like(targets, dtype=bool), folds=4, seed=0)
    held = np.sort(np.concatenate([rows for _, rows in folds]))
    np.testing.assert_array_equal(held, np.arange(20))
    assert all(len(np.intersect1d(train_rows, rows)) == 0 for train_rows, rows in folds)
    with pytest.raises(DataError, match="cv_folds=5 needs at least 10 training rows, got 4"):
        cv_folds(targets[:4], np.ones((4, 2), dtype=bool), folds=5, seed=0)


def test_select_metric_follows_the_threshold_rule():
    assert select_metric(TrainConfig()) == "mAP"
    assert select_metric(TrainConfig(threshold_mode="fixed")) == "hamming_loss"
    assert select_metric(TrainConfig(threshold_mode="fixed", select_metric="micro_f1")) == "micro_f1"


def test_select_is_refused_for_images_and_texts():
    assert TrainConfig().for_modality("tabular").select == "auto"
    for modality in ("image", "text"):
        with pytest.raises(ConfigError, match="select='linear'"):
            TrainConfig(select="linear").for_modality(modality)
    with pytest.raises(ConfigError, match="select is 'ridge'; expected one of auto, mlp, linear"):
        TrainConfig.from_dict({"select": "ridge"})


@pytest.fixture(scope="module")
def selected_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("select")
    train_file = _linear_arff(folder / "lin-train.arff", 150, 0)
    test_file = _linear_arff(folder / "lin-test.arff", 60, 1)
    config = TrainConfig(epochs=3, batch_size=32, head_hidden=16, cv_folds=3, threshold_mode="fixed")
    result = train(train_file, out_dir=folder / "run", config=config, progress=False)
    return result, train_file, test_file


def test_auto_selection_is_recorded_and_the_linear_head_is_the_fitted_regression(selected_run, tmp_path):
    from tagnet.export import export_onnx

    result, train_file, test_file = selected_run
    selection = json.loads((result.run_dir / "metrics.json").read_text())["selection"]
    assert selection["metric"] == "hamming_loss" and selection["folds"] == 3
    scores = selection["candidates"]
    assert set(scores) == {"linear", "mlp"} and all(len(s["folds"]) == 3 and s["seconds"] >= 0 for s in scores.values())
    for s in scores.values():
        assert s["mean"] == pytest.approx(np.mean(s["folds"]), abs=1e-6)
        assert s["std"] == pytest.approx(np.std(s["folds"]), abs=1e-6)
    # a noisy linear rule, 3 MLP epochs: logistic regression has the lower CV Hamming loss and is chosen
    assert scores["linear"]["mean"] < scores["mlp"]["mean"] and selection["choice"] == "linear"
    assert (result.run_dir / "selection" / "mlp-fold3" / "metrics.csv").is_file()
    artifact = load_artifact(result.run_dir)
    assert artifact.meta["extra"]["selection"] == selection and artifact.model.spec["head_hidden"] == 0
    # the head is one-vs-rest logistic regression at the chosen C on the head's training rows (the validation
    # rows are the 30 in val_predictions.csv), copied into the Linear layer
    state = artifact.state
    x = standardize(read_feature_table(train_file).features, state["mean"], state["std"])
    val_rows = np.loadtxt(result.run_dir / "val_predictions.csv", delimiter=",", skiprows=1)[:, 0].astype(int) - 1
    rows = np.setdiff1d(np.arange(len(x)), val_rows)
    targets = read_feature_table(train_file).labels.targets
    linear = artifact.model.head[1]
    for j in range(2):
        expected = LogisticRegression(C=selection["C"]).fit(x[rows].astype(np.float64), targets[rows, j])
        np.testing.assert_allclose(linear.weight[j].detach().numpy(), expected.coef_[0], atol=1e-3)
        found = Predictor(result.run_dir).predict_proba(read_feature_table(test_file).features)[:, j]
        x_test = standardize(read_feature_table(test_file).features, state["mean"], state["std"])
        np.testing.assert_allclose(found, expected.predict_proba(x_test.astype(np.float64))[:, 1], atol=2e-3)
    assert artifact.thresholds.to_dict()["values"] == [0.5, 0.5]
    report = export_onnx(shutil.copytree(result.artifact_dir, tmp_path / "artifact"))
    assert report.parity_max_abs_diff <= 1e-4


def test_select_linear_ensemble_and_mlp_without_cv(selected_run, tmp_path):
    _, train_file, test_file = selected_run
    result = train(train_file, out_dir=tmp_path / "lin", progress=False,
                   config=TrainConfig(select="linear", ensemble=2, cv_folds=3))
    selection = json.loads((result.run_dir / "metrics.json").read_text())["selection"]
    assert selection["choice"] == "linear" and set(selection["candidates"]) == {"linear"}
    model = load_artifact(result.run_dir).model
    assert model.spec == {"name": "mlp", "num_labels": 2, "dropout": 0.2, "head_hidden": 0, "ensemble": 2}
    assert not (result.run_dir / "metrics.csv").exists()  # no epochs: fitted by scikit-learn
    assert result.report.mAP > 0.9
    # evaluate: the fitted (per-label F1) thresholds and, beside them, p >= 0.5
    out = tmp_path / "report.json"
    done = CliRunner().invoke(app, ["evaluate", str(result.run_dir), str(test_file), "--json", str(out)])
    assert done.exit_code == 0, done.output
    report = json.loads(out.read_text())
    fitted, _ = evaluate(result.run_dir, test_file)
    half, _ = evaluate(result.run_dir, test_file, threshold=0.5)
    assert report["hamming_loss"] == pytest.approx(fitted.hamming_loss) and report["threshold_mode"] == "per-label"
    assert report["at_p05"] == pytest.approx({"hamming_loss": half.hamming_loss, "micro_f1": half.micro_f1,
                                              "macro_f1": half.macro_f1, "exact_match": half.exact_match})
    assert f"at p >= 0.5 for every label: hamming_loss {half.hamming_loss:.4f}" in " ".join(done.output.split())
    done = CliRunner().invoke(app, ["train", str(train_file), "--out", str(tmp_path / "mlp"), "--select", "mlp",
                                    "--epochs", "2"])
    assert done.exit_code == 0, done.output
    metrics = json.loads((tmp_path / "mlp" / "metrics.json").read_text())
    assert metrics["selection"] == {"choice": "mlp", "metric": "mAP", "folds": 0, "C": None, "candidates": {}}
    assert load_artifact(tmp_path / "mlp").model.spec["head_hidden"] == 256
