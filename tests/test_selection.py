"""Tests of head selection for feature tables: linear logistic regression vs the MLP by k-fold CV (--select)."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from typer.testing import CliRunner

from tagnet.inference.artifact import load_artifact
from tagnet.cli import app
from tagnet.config.settings import TrainConfig
from tagnet.data.feature_table import read_feature_table, standardize
from tagnet.errors import ConfigError, DataError
from tagnet.evaluation.evaluate import evaluate
from tagnet.training.trainer import train
from tagnet.inference.predictor import Predictor
from tagnet.engine.headfit import fit_head, head_probabilities
from tagnet.evaluation.metrics import mean_average_precision as average_precision
from tagnet.training.selection import (ENSEMBLE_HEADS, Selection, candidate_names, cv_folds, fit_linear, fold_scores, select_head,
                              select_metric)
from tagnet.decisions.thresholds import Thresholds, decision_mode, fit_decisions, fit_thresholds, side_rules


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
    [(coef, intercept)] = fit_linear(x, targets, known, Cs=(0.1,), tol=1e-6)
    for j, rows in ((0, slice(None)), (1, slice(10, None))):
        expected = LogisticRegression(C=0.1, tol=1e-8).fit(x[rows], targets[rows, j])  # the optimum, to 1e-6
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


def test_one_splitter_holds_out_parts_and_folds_within_the_rows_given():
    from tagnet.data.label_table import LabelTable
    from tagnet.data.split import split_table, train_val_splits

    targets = np.tile([[1, 0], [0, 1], [1, 1], [0, 0]], (15, 1)).astype(np.float32)
    known = np.ones_like(targets, dtype=bool)
    rows = np.arange(10, 50)
    folds = train_val_splits(targets, known, rows=rows, folds=4, seed=0)
    np.testing.assert_array_equal(np.sort(np.concatenate([held for _, held in folds])), rows)
    for train_rows, held in folds:
        np.testing.assert_array_equal(np.sort(np.concatenate([train_rows, held])), rows)
    heads = train_val_splits(targets, known, rows=rows, heads=3, val_fraction=0.25, seed=0)
    assert [len(held) for _, held in heads] == [10, 10, 10] and len({tuple(held) for _, held in heads}) == 3
    # head k holds out what split_table (seed + k) holds out of the same rows
    part = split_table(LabelTable([str(r) for r in rows], ["a", "b"], targets[rows], known[rows]), val=0.25, seed=1)
    np.testing.assert_array_equal(heads[1][1], [int(item) for item in part["val"].items])


def test_select_metric_follows_the_objective():
    assert select_metric(TrainConfig().for_modality("tabular")) == "hamming_loss"  # the default objective of tables
    assert select_metric(TrainConfig(objective="f1").for_modality("tabular")) == "micro_f1"
    assert select_metric(TrainConfig(objective="fbeta:2").for_modality("tabular")) == "mAP"
    assert select_metric(TrainConfig(objective="f1", threshold_mode="fixed")) == "hamming_loss"
    assert select_metric(TrainConfig(threshold_mode="fixed", select_metric="micro_f1")) == "micro_f1"


def test_the_threshold_rule_follows_the_objective():
    assert decision_mode("hamming") == "fixed" and decision_mode("f1") == "per-label"
    assert decision_mode("precision>=0.9") == "per-label"
    resolved = {m: TrainConfig().for_modality(m) for m in ("tabular", "image", "text")}
    assert (resolved["tabular"].objective, resolved["tabular"].threshold_mode) == ("hamming", "fixed")
    assert all((resolved[m].objective, resolved[m].threshold_mode) == ("f1", "per-label") for m in ("image", "text"))
    config = TrainConfig(objective="f1").for_modality("tabular")  # F1 users keep per-label F1 thresholds
    assert (config.objective, config.threshold_mode) == ("f1", "per-label")
    config = TrainConfig(objective="hamming").for_modality("image")
    assert config.threshold_mode == "fixed"
    config = TrainConfig(objective="hamming", threshold_mode="per-label").for_modality("tabular")  # given: kept
    assert config.threshold_mode == "per-label"
    assert TrainConfig(threshold_mode="top-k").for_modality("tabular").objective == "f1"  # top-k optimises nothing
    assert TrainConfig(threshold_mode="global").for_modality("tabular").objective == "hamming"
    # fixed thresholds are the Hamming rule: 0.5 for every label, whatever the validation data
    fit = fit_decisions(np.eye(3), np.full((3, 3), 0.9), objective="hamming", mode="fixed")
    assert fit.thresholds.values == [0.5] * 3
    with pytest.raises(ConfigError, match="objective recall>=0.9 applies to per-label and global thresholds"):
        TrainConfig(objective="recall>=0.9", threshold_mode="fixed").validate()


def test_side_rules_are_the_f1_fit_and_p05():
    rng = np.random.default_rng(0)
    targets = (rng.random((60, 3)) < 0.4).astype(np.float32)
    probs = np.clip(targets * 0.3 + rng.random((60, 3)) * 0.6, 0, 1)
    rules = side_rules(targets, probs, min_positives=5)
    assert rules["p>=0.5"].mode == "fixed" and rules["p>=0.5"].values == [0.5] * 3
    assert rules["f1"] == fit_thresholds(targets, probs, objective="f1", mode="per-label", min_positives=5)


def test_fold_scores_fit_thresholds_on_the_other_folds():
    targets = np.array([[1], [0], [1], [0], [1], [0]], dtype=np.float32)
    val = {"probs": np.array([[0.9], [0.1], [0.8], [0.2], [0.4], [0.3]]), "targets": targets,
           "known": np.ones_like(targets, dtype=bool)}
    folds = [(np.array([2, 3, 4, 5]), np.array([0, 1])), (np.array([0, 1, 4, 5]), np.array([2, 3])),
             (np.array([0, 1, 2, 3]), np.array([4, 5]))]
    seen = []

    def thresholds_for(part):
        seen.append(part["probs"][:, 0].tolist())
        return Thresholds("per-label", [0.35])

    scores = fold_scores("hamming_loss", val, folds, thresholds_for)
    assert seen == [[0.8, 0.2, 0.4, 0.3], [0.9, 0.1, 0.4, 0.3], [0.9, 0.1, 0.8, 0.2]]  # never the scored fold
    assert scores == [0.0, 0.0, 0.0]


def _xor_table(n, seed):
    """Two labels of x0 * x1 > 0 and x2 * x3 > 0 (no linear rule), with 10% of labels flipped."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 6)).astype(np.float32)
    targets = np.column_stack([x[:, 0] * x[:, 1] > 0, x[:, 2] * x[:, 3] > 0]).astype(np.float32)
    flip = rng.random(targets.shape) < 0.1
    return x, np.where(flip, 1 - targets, targets), np.ones_like(targets, dtype=bool)


def test_selection_picks_the_ensemble_where_it_wins_and_records_every_candidate():
    from rich.console import Console
    from torch import nn

    x, targets, known = _xor_table(240, 0)
    # a high learning rate makes single heads noisy: averaging five of them wins; no linear rule exists
    # the MLP candidates only (the forest, which wins here, is tests/test_trees.py's)
    config = TrainConfig(epochs=12, batch_size=16, lr=0.05, head_hidden=32, cv_folds=3,
                         forest_trees=0, boosted_rounds=0).for_modality("tabular")
    console = Console(record=True, width=200)

    def make_head():
        return nn.Sequential(nn.Dropout(0.2), nn.Linear(6, 32), nn.ReLU(), nn.Linear(32, 2))

    selection = select_head(config, x, targets, known, make_head=make_head,
                            thresholds_for=lambda val: Thresholds("fixed", [0.5, 0.5]), console=console)
    scores = selection.candidates
    assert list(scores) == ["linear", "mlp", "ensemble"] and selection.metric == "hamming_loss"
    assert scores["linear"]["mean"] > 0.4  # chance level: no linear rule
    assert scores["ensemble"]["mean"] < scores["mlp"]["mean"] < scores["linear"]["mean"]
    assert selection.choice == "ensemble" and selection.heads == ENSEMBLE_HEADS == scores["ensemble"]["heads"]
    assert all(len(s["folds"]) == 3 and s["seconds"] > 0 for s in scores.values())
    assert scores["ensemble"]["seconds"] > scores["mlp"]["seconds"]  # the MLP is the ensemble's first head
    assert selection.applied(config).ensemble == ENSEMBLE_HEADS and selection.applied(config).head_hidden == 32
    text = console.export_text()
    assert "ensemble hamming_loss" in text and "chose the ensemble heads by 3-fold CV on hamming_loss" in text
    assert Selection("linear", "hamming_loss").applied(config).head_hidden == 0
    assert candidate_names(TrainConfig(select="auto", ensemble=3)) == ("linear", "ensemble")


def test_fit_head_learns_and_repeats_with_its_seed():
    import torch
    from torch import nn

    x, targets, known = _xor_table(300, 1)
    features = torch.from_numpy(x)
    config = TrainConfig(epochs=20, batch_size=32, lr=0.01)
    rows, val_rows = np.arange(200), np.arange(200, 300)
    runs = []
    for _ in range(2):
        torch.manual_seed(0)
        head = nn.Sequential(nn.Linear(6, 32), nn.ReLU(), nn.Linear(32, 2))
        probs, _ = fit_head(head, features, targets, known, rows, val_rows, config=config, seed=3)
        runs.append(probs)
        np.testing.assert_allclose(head_probabilities(head, features[200:]), probs, atol=1e-6)  # best epoch kept
    np.testing.assert_array_equal(runs[0], runs[1])
    assert average_precision(targets[val_rows], runs[0], known[val_rows]) > 0.8
    from sklearn.metrics import average_precision_score
    expected = np.mean([average_precision_score(targets[val_rows, j], runs[0][:, j]) for j in range(2)])
    assert average_precision(targets[val_rows], runs[0], known[val_rows]) == pytest.approx(expected)


def test_select_is_refused_for_images_and_texts():
    assert TrainConfig().for_modality("tabular").select == "auto"
    for modality in ("image", "text"):
        with pytest.raises(ConfigError, match="select='linear'"):
            TrainConfig(select="linear").for_modality(modality)
    with pytest.raises(ConfigError, match="select is 'ridge'; expected one of auto, mlp, linear, ensemble"):
        TrainConfig.from_dict({"select": "ridge"})


@pytest.fixture(scope="module")
def selected_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("select")
    train_file = _linear_arff(folder / "lin-train.arff", 150, 0)
    test_file = _linear_arff(folder / "lin-test.arff", 60, 1)
    config = TrainConfig(epochs=3, batch_size=32, head_hidden=16, cv_folds=3, forest_trees=0, boosted_rounds=0)  # objective hamming: p >= 0.5
    result = train(train_file, out_dir=folder / "run", config=config, progress=False)
    return result, train_file, test_file


def test_auto_selection_is_recorded_and_the_linear_head_is_the_fitted_regression(selected_run, tmp_path):
    from tagnet.inference.export import export_onnx

    result, train_file, test_file = selected_run
    selection = json.loads((result.run_dir / "metrics.json").read_text())["selection"]
    assert selection["metric"] == "hamming_loss" and selection["folds"] == 3
    scores = selection["candidates"]
    assert set(scores) == {"linear", "mlp", "ensemble"} and all(len(s["folds"]) == 3 and s["seconds"] >= 0 for s in scores.values())
    for s in scores.values():
        assert s["mean"] == pytest.approx(np.mean(s["folds"]), abs=1e-6)
        assert s["std"] == pytest.approx(np.std(s["folds"]), abs=1e-6)
    # a noisy linear rule, 3 MLP epochs: logistic regression has the lower CV Hamming loss and is chosen
    assert scores["linear"]["mean"] < scores["mlp"]["mean"] and selection["choice"] == "linear"
    artifact = load_artifact(result.run_dir)
    assert artifact.meta["extra"]["selection"] == selection and artifact.model.spec["head_hidden"] == 0
    # the head is one-vs-rest logistic regression at the chosen C on every row of the training file (refit: the
    # 150 rows of val_predictions.csv are validated out of fold), copied into the Linear layer
    state = artifact.state
    x = standardize(read_feature_table(train_file).features, state["mean"], state["std"])
    val_rows = np.loadtxt(result.run_dir / "val_predictions.csv", delimiter=",", skiprows=1)[:, 0].astype(int) - 1
    np.testing.assert_array_equal(val_rows, np.arange(150))
    rows = np.arange(len(x))
    assert json.loads((result.run_dir / "metrics.json").read_text())["final_fit"] == {
        "rows": 150, "all_rows": True, "folds": 3, "validation": "out-of-fold", "C": selection["C"]}
    targets = read_feature_table(train_file).labels.targets
    linear = artifact.model.head[1]
    for j in range(2):
        expected = LogisticRegression(C=selection["C"], tol=1e-8, max_iter=1000).fit(x[rows].astype(np.float64),
                                                                               targets[rows, j])  # the optimum
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
                   config=TrainConfig(select="linear", ensemble=2, cv_folds=3, objective="f1"))
    selection = json.loads((result.run_dir / "metrics.json").read_text())["selection"]
    assert selection["choice"] == "linear" and set(selection["candidates"]) == {"linear"}
    assert selection["metric"] == "micro_f1" and selection["heads"] == 2
    artifact = load_artifact(result.run_dir)
    assert artifact.model.spec == {"name": "mlp", "num_labels": 2, "dropout": 0.2, "head_hidden": 0, "ensemble": 2}
    assert not (result.run_dir / "metrics.csv").exists()  # no epochs: fitted by scikit-learn
    assert result.report.mAP > 0.9
    # objective f1: the model's thresholds are the per-label F1 ones, the same as its saved "f1" rule
    assert artifact.thresholds.mode == "per-label"
    assert artifact.meta["extra"]["decision_rules"]["f1"] == artifact.thresholds.to_dict()
    # evaluate: the fitted (per-label F1) thresholds and, beside them, p >= 0.5 and the F1 rule
    out = tmp_path / "report.json"
    done = CliRunner().invoke(app, ["evaluate", str(result.run_dir), str(test_file), "--json", str(out)])
    assert done.exit_code == 0, done.output
    report = json.loads(out.read_text())
    fitted, _ = evaluate(result.run_dir, test_file)
    half, _ = evaluate(result.run_dir, test_file, threshold=0.5)
    assert report["hamming_loss"] == pytest.approx(fitted.hamming_loss) and report["threshold_mode"] == "per-label"
    expected = {"hamming_loss": half.hamming_loss, "micro_f1": half.micro_f1, "macro_f1": half.macro_f1,
                "exact_match": half.exact_match}
    assert report["at_p05"] == pytest.approx(expected) and report["rules"]["p>=0.5"] == pytest.approx(expected)
    assert report["rules"]["f1"]["micro_f1"] == pytest.approx(fitted.micro_f1)
    assert "Decision rules side by side" in done.output and f"{half.hamming_loss:.4f}" in done.output
    done = CliRunner().invoke(app, ["train", str(train_file), "--out", str(tmp_path / "mlp"), "--select", "mlp",
                                    "--epochs", "2"])
    assert done.exit_code == 0, done.output
    metrics = json.loads((tmp_path / "mlp" / "metrics.json").read_text())
    assert metrics["selection"] == {"choice": "mlp", "metric": "hamming_loss", "folds": 0, "C": None, "heads": 1,
                                    "candidates": {}}
    assert load_artifact(tmp_path / "mlp").model.spec["head_hidden"] == 256


def test_the_default_command_through_evaluate(selected_run, tmp_path):
    """`tagnet train X.arff` with nothing else but a short epoch count: objective hamming, p >= 0.5, the head chosen
    among five candidates by CV; `tagnet evaluate` reports it with the per-label F1 thresholds beside it."""
    _, train_file, test_file = selected_run
    out = tmp_path / "default"
    done = CliRunner().invoke(app, ["train", str(train_file), "--out", str(out), "--epochs", "3", "--cv-folds", "3"])
    assert done.exit_code == 0, done.output
    assert "chose the" in done.output and "by 3-fold CV on hamming_loss" in done.output
    artifact = load_artifact(out)
    assert artifact.config["objective"] == "hamming" and artifact.config["threshold_mode"] == "fixed"
    assert artifact.thresholds.values == [0.5, 0.5]
    selection = artifact.meta["extra"]["selection"]
    assert set(selection["candidates"]) == {"linear", "mlp", "ensemble", "forest", "boosted"}  # trees: issue 25
    assert selection["choice"] == min(selection["candidates"], key=lambda n: selection["candidates"][n]["mean"])
    rules = artifact.meta["extra"]["decision_rules"]
    assert rules["p>=0.5"]["values"] == [0.5, 0.5] and rules["f1"]["mode"] == "per-label"
    report_file = tmp_path / "report.json"
    done = CliRunner().invoke(app, ["evaluate", str(out), str(test_file), "--json", str(report_file)])
    assert done.exit_code == 0, done.output
    report = json.loads(report_file.read_text())
    found = read_feature_table(test_file)
    probs = Predictor(out).predict_proba(found.features)
    from sklearn.metrics import f1_score, hamming_loss
    assert report["hamming_loss"] == pytest.approx(hamming_loss(found.labels.targets, probs >= 0.5))
    f1_rule = probs >= np.asarray(rules["f1"]["values"])
    assert report["rules"]["f1"]["micro_f1"] == pytest.approx(f1_score(found.labels.targets, f1_rule, average="micro"))
    assert report["rules"]["f1"]["hamming_loss"] == pytest.approx(hamming_loss(found.labels.targets, f1_rule))


def test_the_hamming_rule_keeps_p05_unless_a_global_threshold_wins_by_cv():
    from tagnet.training.selection import global_threshold_rule

    rng = np.random.default_rng(0)
    targets = (rng.random((90, 2)) < 0.4).astype(np.float32)
    known = np.ones_like(targets, dtype=bool)
    folds = cv_folds(targets, known, folds=3, seed=0)
    # scores too low: positives at 0.3-0.45, negatives at 0-0.25; p >= 0.5 predicts nothing
    low = np.where(targets > 0, 0.3 + 0.15 * rng.random(targets.shape), 0.25 * rng.random(targets.shape))
    rule = global_threshold_rule(low, targets, known, folds)
    assert rule["p>=0.5"]["mean"] == pytest.approx(targets.mean(), abs=0.01) and rule["global"]["mean"] == 0.0
    assert 0.25 < rule["value"] < 0.3
    # calibrated scores on the right side of 0.5: no threshold does better, p >= 0.5 is kept
    good = np.where(targets > 0, 0.6 + 0.4 * rng.random(targets.shape), 0.4 * rng.random(targets.shape))
    assert global_threshold_rule(good, targets, known, folds)["value"] == 0.5
    config = TrainConfig().for_modality("tabular")
    chosen = Selection("mlp", "hamming_loss", threshold={"value": 0.27}).applied(config)
    assert chosen.fixed_threshold == 0.27 and chosen.threshold_mode == "fixed"


def test_joint_fit_of_folds_on_sparse_rows_is_each_folds_logistic_regression():
    import scipy.sparse as sp
    from tagnet.engine.linear import fit_logistic

    rng = np.random.default_rng(4)
    x = (rng.random((120, 8)) < 0.2).astype(np.float32)  # 0/1 rows, mostly zeros: multiplied as CSR
    targets = np.column_stack([x[:, 0] + x[:, 1] + 0.3 * rng.normal(size=120) > 0.5,
                               x[:, 2] + 0.5 * rng.normal(size=120) > 0.5]).astype(np.uint8)
    known = np.ones_like(targets, dtype=bool)
    known[::7, 1] = False
    sets = [np.arange(0, 80), np.arange(40, 120)]
    paths = fit_logistic(sp.csr_matrix(x), targets, known, Cs=(0.3, 3.0), row_sets=sets, tol=1e-6)
    for rows, path in zip(sets, paths):
        for C, (coef, intercept) in zip((0.3, 3.0), path):
            for j in range(2):
                use = rows[known[rows, j]]
                expected = LogisticRegression(C=C, tol=1e-8, max_iter=1000).fit(x[use], targets[use, j])
                np.testing.assert_allclose(coef[j], expected.coef_[0], atol=1e-3)
                assert intercept[j] == pytest.approx(expected.intercept_[0], abs=1e-3)
