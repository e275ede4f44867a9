"""Tests of the tree heads of tables. The random forest: chosen by the CV where trees win, ONNX vs scikit-learn, the
artifact without pickle, the single exported graph, the time-budget note. The gradient-boosted trees: scikit-learn's
per-label classifiers, their one ONNX-ML graph, the CV that chooses them, the artifact and the export, the cost rule
without a time budget."""

from __future__ import annotations

import json
import shutil
import time

import numpy as np
import onnx
import onnxruntime
import pytest
import safetensors.numpy
import torch
from rich.console import Console
from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestRegressor
from sklearn.metrics import hamming_loss
from torch import nn

from tagnet.config.settings import TrainConfig
from tagnet.data.feature_table import read_feature_table, standardize
from tagnet.decisions.thresholds import Thresholds
from tagnet.errors import ArtifactError, ConfigError
from tagnet.evaluation.evaluate import evaluate
from tagnet.inference.artifact import load_artifact
from tagnet.inference.export import export_onnx
from tagnet.inference.predictor import Predictor
from tagnet.modalities import get as get_modality
from tagnet.models.boosting import LEAVES, LEARNING_RATE, boosted_probabilities, fit_boosted
from tagnet.models.trees import ForestHead, fit_forest, forest_onnx, forest_probabilities
from tagnet.training.budget import TimeBudget
from tagnet.training import trees
from tagnet.training.trees import tree_out_of_fold
from tagnet.training.selection import cv_folds, select_head
from tagnet.training.trainer import train


def _box_table(n, seed):
    """Axis-aligned rules no linear model and no short-trained MLP finds: a = (x0 > 0) xor (x1 > 0),
    b = x2 > 0.5 and x3 < 0; two noise features."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 6)).astype(np.float32)
    targets = np.column_stack([(x[:, 0] > 0) ^ (x[:, 1] > 0), (x[:, 2] > 0.5) & (x[:, 3] < 0)]).astype(np.float32)
    return x, targets, np.ones_like(targets, dtype=bool)


def _box_arff(path, n, seed):
    """_box_table as a MULAN ARFF (features, then the two 0/1 label attributes) with its labels XML beside it."""
    x, targets, _ = _box_table(n, seed)
    header = "@relation box\n" + "".join(f"@attribute x{j} numeric\n" for j in range(6))
    rows = [",".join(f"{v:.6g}" for v in r) + f",{int(a)},{int(b)}" for r, (a, b) in zip(x, targets)]
    path.write_text(header + "@attribute a {0,1}\n@attribute b {0,1}\n@data\n" + "\n".join(rows) + "\n")
    (path.parent / "box.xml").write_text('<labels xmlns="http://mulan.sourceforge.net/labels">'
                                         '<label name="a"></label><label name="b"></label></labels>')
    return path


def test_the_forest_is_chosen_where_trees_win_and_its_cv_is_scikit_learns():
    x, targets, known = _box_table(240, 0)
    config = TrainConfig(epochs=3, batch_size=32, head_hidden=16, cv_folds=3, forest_trees=20, boosted_rounds=0).for_modality("tabular")
    console = Console(record=True, width=200)
    selection = select_head(config, x, targets, known,
                            make_head=lambda: nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 2)),
                            thresholds_for=lambda val: Thresholds("fixed", [0.5, 0.5]), console=console)
    scores = selection.candidates
    assert list(scores) == ["linear", "mlp", "ensemble", "forest"] and scores["forest"]["trees"] == 20
    assert selection.choice == "forest" and selection.applied(config) == config
    assert scores["forest"]["mean"] < 0.2 < 0.25 < min(scores[name]["mean"] for name in ("linear", "mlp", "ensemble"))
    # each fold's score is scikit-learn's forest (seed + fold) on the other folds' rows, at p >= 0.5
    expected = []
    for k, (rows, held) in enumerate(cv_folds(targets, known, folds=3, seed=config.seed)):
        forest = RandomForestRegressor(20, max_features="sqrt", random_state=config.seed + k).fit(x[rows], targets[rows])
        expected.append(hamming_loss(targets[held], forest.predict(x[held]) >= 0.5))
    np.testing.assert_allclose(scores["forest"]["folds"], expected, atol=1e-6)
    text = console.export_text()
    assert "forest   hamming_loss" in text and "20 trees" in text and "chose the forest head" in text


@pytest.mark.parametrize("labels", [1, 3])
def test_the_onnx_forest_is_scikit_learns_to_1e4(labels):
    rng = np.random.default_rng(labels)
    x = rng.normal(size=(200, 5)).astype(np.float32)
    targets = (x[:, :labels] + 0.5 * rng.normal(size=(200, labels)) > 0).astype(np.float32)
    if labels == 3:
        targets[:, 2] = 0  # a label never seen positive
    forest = fit_forest(x, targets, np.ones_like(targets, dtype=bool), trees=15, seed=0)
    head = ForestHead(forest_onnx(forest, 5))
    new = rng.normal(size=(50, 5)).astype(np.float32)
    native = forest_probabilities(forest, new)
    assert native.shape == (50, labels)
    np.testing.assert_allclose(head.probabilities(torch.from_numpy(new)), native, atol=1e-4)
    # the head's logits are those probabilities' logits (clamped), as every head's
    np.testing.assert_allclose(torch.sigmoid(head(torch.from_numpy(new))).numpy(), native, atol=1e-4)


def test_an_unknown_target_counts_as_negative():
    x, targets, known = _box_table(100, 1)
    known[:50, 0] = False
    forest = fit_forest(x, targets, known, trees=5, seed=0)
    expected = RandomForestRegressor(5, max_features="sqrt", random_state=0).fit(x, np.where(known, targets, 0))
    np.testing.assert_allclose(forest_probabilities(forest, x), expected.predict(x), atol=1e-6)


def test_a_forest_that_does_not_fit_the_time_budget_is_left_out_with_a_note():
    x, targets, known = _box_table(120, 2)
    folds = cv_folds(targets, known, folds=3, seed=0)
    console = Console(record=True, width=200)
    spent = TimeBudget(60.0, started=time.perf_counter() - 55.0)  # 5 s left, less than the 20 s reserve
    assert tree_out_of_fold("forest", x, targets, known, folds, size=10, seed=0, budget=spent, console=console) is None
    text = console.export_text()
    assert "time budget 1m: forest left out: its 3-fold CV would take about" in text and "are left" in text
    assert spent.choices and spent.choices[0].startswith("forest left out")
    roomy = TimeBudget(3600.0)
    found = tree_out_of_fold("forest", x, targets, known, folds, size=10, seed=0, budget=roomy, console=console)
    assert found is not None and found[0].shape == targets.shape and not roomy.choices


def _box_run(folder, **trees):
    """A default train of the box table's ARFF file with these tree settings: (result, train file, test file)."""
    train_file, test_file = _box_arff(folder / "box-train.arff", 200, 0), _box_arff(folder / "box-test.arff", 60, 1)
    config = TrainConfig(epochs=3, batch_size=32, head_hidden=16, cv_folds=3, **trees)
    return train(train_file, out_dir=folder / "run", config=config, progress=False), train_file, test_file


@pytest.fixture(scope="module")
def forest_run(tmp_path_factory):
    return _box_run(tmp_path_factory.mktemp("forest"), forest_trees=20, boosted_rounds=0)


def test_the_forest_artifact_round_trips_without_pickle(forest_run):
    result, train_file, test_file = forest_run
    assert json.loads((result.run_dir / "metrics.json").read_text())["selection"]["choice"] == "forest"
    assert sorted(p.name for p in result.artifact_dir.iterdir()) == ["MODEL_CARD.md", "model.safetensors", "tagnet.json"]
    artifact = load_artifact(result.run_dir)
    spec = artifact.model.spec
    assert spec["head"] == "forest" and isinstance(artifact.model.head, ForestHead)
    stored = safetensors.numpy.load_file(result.artifact_dir / "model.safetensors")["head.onnx"]
    assert spec["forest_bytes"] == stored.size
    ops = {node.op_type for node in onnx.load_from_string(stored.tobytes()).graph.node}
    assert "TreeEnsembleRegressor" in ops
    # the head is scikit-learn's forest on every training row (refit: val_predictions.csv holds the out-of-fold ones)
    state = artifact.state
    x = standardize(read_feature_table(train_file).features, state["mean"], state["std"])
    targets = read_feature_table(train_file).labels.targets
    assert json.loads((result.run_dir / "metrics.json").read_text())["final_fit"] == {
        "rows": len(x), "all_rows": True, "folds": 3, "validation": "out-of-fold", "trees": 20}
    rows = np.arange(len(x))
    forest = fit_forest(x[rows], targets[rows], np.ones_like(targets[rows], dtype=bool), trees=20,
                        seed=artifact.config["seed"])
    test = read_feature_table(test_file)
    x_test = standardize(test.features, state["mean"], state["std"])
    probs = Predictor(result.run_dir, runtime="torch").predict_proba(test.features)
    np.testing.assert_allclose(probs, forest_probabilities(forest, x_test), atol=1e-4)
    report, _ = evaluate(result.run_dir, test_file)
    assert report.hamming_loss == pytest.approx(hamming_loss(test.labels.targets, probs >= 0.5))
    assert report.hamming_loss < 0.2


def test_a_bad_forest_size_in_tagnet_json_is_refused():
    spec = {"name": "mlp", "num_labels": 2, "dropout": 0.2, "head_hidden": 0, "head": "forest", "forest_bytes": "9"}
    state = {"feature_names": ["a"], "mean": [0.0], "std": [1.0]}
    with pytest.raises(ArtifactError, match="forest_bytes is '9'; expected the positive size"):
        get_modality("tabular").rebuild_model(spec, state, source="tagnet.json")


def test_the_export_is_one_graph_of_standardisation_and_onnx_ml_trees(forest_run, tmp_path):
    import shutil

    result, _, test_file = forest_run
    artifact_dir = shutil.copytree(result.artifact_dir, tmp_path / "artifact")
    report = export_onnx(artifact_dir)
    assert report.parity_max_abs_diff <= 1e-4
    model = onnx.load(str(report.onnx_path))
    assert {"TreeEnsembleRegressor", "Sub", "Div", "Where"} <= {node.op_type for node in model.graph.node}
    assert {o.domain for o in model.opset_import} >= {"", "ai.onnx.ml"}
    rows = read_feature_table(test_file).features.astype(np.float64)
    rows[0, 0] = np.nan  # missing: the training mean, as the Predictor does
    session = onnxruntime.InferenceSession(str(report.onnx_path), providers=["CPUExecutionProvider"])
    assert session.get_inputs()[0].name == "features" and session.get_inputs()[0].type == "tensor(double)"
    got = session.run(["probabilities"], {"features": rows})[0]
    want = Predictor(artifact_dir, runtime="torch").predict_proba(rows)
    np.testing.assert_allclose(got, want, atol=1e-4)
    on_onnx = Predictor(artifact_dir, runtime="onnx")
    assert on_onnx.runtime == "onnx"
    np.testing.assert_allclose(on_onnx.predict_proba(rows), want, atol=1e-4)


def test_a_forest_model_is_served_like_any_head(forest_run):
    from fastapi.testclient import TestClient

    from tagnet.serve import create_app

    result, _, test_file = forest_run
    predictor = Predictor(result.run_dir, runtime="torch")
    client = TestClient(create_app(predictor))
    rows = read_feature_table(test_file).features[:3].astype(np.float64)
    body = {"inputs": [{"name": "rows", "datatype": "FP32", "shape": [3, 6], "data": rows.tolist()}]}
    answer = client.post("/v2/models/run/infer", json=body)
    assert answer.status_code == 200, answer.text
    outputs = {o["name"]: o for o in answer.json()["outputs"]}
    got = np.array(outputs["probabilities"]["data"]).reshape(3, 2)
    np.testing.assert_allclose(got, predictor.predict_proba(rows), atol=1e-6)


def test_each_label_is_scikit_learns_classifier_on_its_known_rows_and_the_onnx_graph_agrees():
    """Label a: a classifier on its known rows only; label b: one class only (a constant probability, its rate clamped);
    label c: a classifier on every row. The ONNX graph of all three agrees to 1e-4 (checked_tree_onnx)."""
    x, box, _ = _box_table(300, 3)
    targets = np.column_stack([box[:, 0], np.zeros(300), box[:, 1]]).astype(np.float32)
    known = np.ones_like(targets, dtype=bool)
    known[::3, 0] = False
    boosted = fit_boosted(x, targets, known, rounds=30, seed=4)
    probs = boosted_probabilities(boosted, x)
    for j, rows in ((0, known[:, 0]), (2, slice(None))):
        want = HistGradientBoostingClassifier(max_iter=30, learning_rate=LEARNING_RATE, max_leaf_nodes=LEAVES,
                                              max_features=0.5, early_stopping=False, random_state=4 + j)
        want.fit(x[rows], targets[rows, j] > 0)
        np.testing.assert_allclose(probs[:, j], want.predict_proba(x)[:, 1], atol=1e-6)
    np.testing.assert_allclose(probs[:, 1], 1e-6, rtol=1e-3)
    graph, expected = trees.checked_tree_onnx(trees.TREE_KINDS["boosted"], boosted, x)
    np.testing.assert_array_equal(expected, probs)
    session = onnxruntime.InferenceSession(graph, providers=["CPUExecutionProvider"])
    np.testing.assert_allclose(session.run(None, {"forest_input": x})[0], probs, atol=1e-4)


def test_without_a_budget_boosting_that_would_take_too_long_is_left_out_with_a_line(monkeypatch):
    x, targets, known = _box_table(120, 2)
    folds = cv_folds(targets, known, folds=3, seed=0)
    console = Console(record=True, width=200)
    monkeypatch.setattr(trees, "UNBUDGETED_SECONDS", 0.0)
    assert tree_out_of_fold("boosted", x, targets, known, folds, size=10, seed=0, budget=None,
                                  console=console) is None
    assert "boosted left out: its 3-fold CV would take about" in console.export_text()
    found = tree_out_of_fold("forest", x, targets, known, folds, size=10, seed=0, budget=None, console=console)
    assert found is not None and found[0].shape == targets.shape  # the forest is always compared


@pytest.fixture(scope="module")
def boosted_run(tmp_path_factory):
    return _box_run(tmp_path_factory.mktemp("boosted"), forest_trees=0, boosted_rounds=40)


def test_the_boosted_run_is_chosen_refitted_on_every_row_and_predicts_as_scikit_learn(boosted_run):
    result, train_file, test_file = boosted_run
    metrics = json.loads((result.run_dir / "metrics.json").read_text())
    scores = metrics["selection"]["candidates"]
    assert metrics["selection"]["choice"] == "boosted" and scores["boosted"]["rounds"] == 40
    assert scores["boosted"]["mean"] < min(scores[name]["mean"] for name in ("linear", "mlp", "ensemble"))
    assert metrics["final_fit"] == {"rows": 200, "all_rows": True, "folds": 3, "validation": "out-of-fold",
                                    "rounds": 40}
    table, test = read_feature_table(train_file), read_feature_table(test_file)
    state = Predictor(result.run_dir).artifact.state
    x = standardize(table.features, state["mean"], state["std"])
    boosted = fit_boosted(x, table.labels.targets, np.ones_like(table.labels.targets, dtype=bool), rounds=40,
                          seed=TrainConfig().seed)
    probs = Predictor(result.run_dir, runtime="torch").predict_proba(test.features)
    np.testing.assert_allclose(probs, boosted_probabilities(boosted, standardize(test.features, state["mean"],
                                                                                state["std"])), atol=1e-4)
    report, _ = evaluate(result.run_dir, test_file)
    assert report.hamming_loss == pytest.approx(hamming_loss(test.labels.targets, probs >= 0.5))
    assert report.hamming_loss < 0.15


def test_the_boosted_export_is_one_graph_that_matches_the_predictor(boosted_run, tmp_path):
    result, _, test_file = boosted_run
    artifact_dir = shutil.copytree(result.artifact_dir, tmp_path / "artifact")
    report = export_onnx(artifact_dir)
    assert report.parity_max_abs_diff <= 1e-4
    rows = read_feature_table(test_file).features.astype(np.float64)
    rows[0, 0] = np.nan
    session = onnxruntime.InferenceSession(str(report.onnx_path), providers=["CPUExecutionProvider"])
    got = session.run(["probabilities"], {"features": rows})[0]
    np.testing.assert_allclose(got, Predictor(artifact_dir, runtime="torch").predict_proba(rows), atol=1e-4)


def test_the_cost_probe_scales_a_fixed_and_a_per_round_cost_from_labels_with_both_classes():
    """A stand-in per-label kind whose fit takes 20 ms + 5 ms a round per label: the probe times 2 and 8 rounds (the
    fastest of PROBE_REPEATS each) on the three labels with the most rows of their rarer class (never the constant
    ones) and scales to 100 rounds, every label and fold; a fit stalled once does not make the estimate."""
    x, box, _ = _box_table(150, 5)
    targets = np.column_stack([np.zeros(150), np.ones(150), box, box[:, :1]]).astype(np.float32)  # 2 constant labels
    known = np.ones_like(targets, dtype=bool)
    probed, stall = [], [2.0]  # the first 8-round fit stalls for 2 s

    def fit(rows, t, k, size, seed):
        probed.append(t.shape[1] if size > 1 and t.min(0).max() == 0 and t.max(0).min() == 1 else -1)
        time.sleep(t.shape[1] * (0.02 + 0.005 * size) + (stall.pop() if size == 8 and stall else 0.0))

    kind = trees.TreeKind(fit, None, None, "boosted_rounds", "rounds", True)
    folds = cv_folds(targets, known, folds=3, seed=0)
    estimate = trees.estimated_cv_seconds(kind, x, targets, known, folds, size=100, seed=0)
    assert probed[1:] == [3] * 2 * trees.PROBE_REPEATS  # the untimed fit first, then the timed ones, on three labels
    assert estimate == pytest.approx(5 * (0.02 + 0.5) * 3, rel=0.25)


@pytest.mark.parametrize("head", ["forest", "boosted"])
def test_select_names_a_tree_head_which_is_refitted_on_every_row(tmp_path, head):
    """`tagnet train box.arff --select forest|boosted`: only that candidate's CV runs, it is refitted on every row;
    naming a tree of size 0 is refused in one line before any data is read."""
    from typer.testing import CliRunner

    from tagnet.cli import app

    train_file = _box_arff(tmp_path / "box-train.arff", 200, 0)
    done = CliRunner().invoke(app, ["train", str(train_file), "--out", str(tmp_path / "run"), "--select", head,
                                    "--cv-folds", "3", "--forest-trees", "20", "--boosted-rounds", "20"])
    assert done.exit_code == 0, done.output
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert list(metrics["selection"]["candidates"]) == [head] and metrics["selection"]["choice"] == head
    assert metrics["final_fit"]["all_rows"] and metrics["final_fit"][trees.TREE_KINDS[head].unit] == 20
    size = "--forest-trees" if head == "forest" else "--boosted-rounds"
    refused = CliRunner().invoke(app, ["train", str(train_file), "--out", str(tmp_path / "no"), "--select", head,
                                       size, "0"])
    assert isinstance(refused.exception, ConfigError)  # `tagnet` prints a TagnetError as one line (cli.main)
    assert "with " + size[2:].replace("-", "_") + "=0: give its size" in str(refused.exception)


def test_a_named_tree_left_out_by_its_cost_rule_is_a_one_line_error(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from tagnet.cli import app

    monkeypatch.setattr(trees, "UNBUDGETED_SECONDS", 0.0)
    train_file = _box_arff(tmp_path / "box-train.arff", 120, 0)
    done = CliRunner().invoke(app, ["train", str(train_file), "--out", str(tmp_path / "run"), "--select", "boosted",
                                    "--cv-folds", "3", "--boosted-rounds", "20"])
    assert isinstance(done.exception, ConfigError)  # `tagnet` prints a TagnetError as one line (cli.main)
    assert "--select boosted: left out by its size or cost rule" in str(done.exception)
    assert "boosted left out: its 3-fold CV would take about" in done.output
