"""Tests of label hierarchies: reading trees, closure of targets, the consistency rule, hierarchical metrics, and a
tiny `tagnet train --hierarchy` run through predict, evaluate, export and data check."""

from __future__ import annotations

import json

import numpy as np
import pytest
from rich.console import Console
from typer.testing import CliRunner

from tagnet.cli import app
from tagnet.data.check import check_dataset
from tagnet.data.label_table import LabelTable
from tagnet.errors import ArtifactError, DataError
from tagnet.evaluation.metrics import evaluate_probabilities
from tagnet.hierarchy import (Tree, hierarchical_prf, hierarchy_from_names, load_hierarchy, read_hierarchy,
                              with_implied_ancestors)
from tagnet.inference.artifact import load_artifact
from tagnet.inference.predictor import Predictor
from tagnet.report.terminal import render_metrics

runner = CliRunner()
PATHS = "vehicle/car/taxi\nvehicle/bike\nanimal/dog  # a comment\n\ncar/van\n"
YAML = "vehicle:\n  car: [taxi, van]\n  bike:\nanimal:\n  - dog\n"


def _tree_facts(tree: Tree) -> dict[str, str | None]:
    """{label: its parent's name or None}."""
    return {name: tree.names[p] if p >= 0 else None for name, p in zip(tree.names, tree.parents)}


def test_paths_file_yaml_and_label_names_read_the_same_tree(tmp_path):
    want = {"vehicle": None, "car": "vehicle", "taxi": "car", "van": "car", "bike": "vehicle", "animal": None,
            "dog": "animal"}
    (tmp_path / "tree.txt").write_text(PATHS)
    (tmp_path / "tree.yaml").write_text(YAML)
    from_lines, from_yaml = read_hierarchy(tmp_path / "tree.txt"), read_hierarchy(tmp_path / "tree.yaml")
    assert _tree_facts(from_lines) == want and _tree_facts(from_yaml) == want
    assert dict(zip(from_lines.names, from_lines.depth.tolist())) == {
        "vehicle": 1, "car": 2, "taxi": 3, "bike": 2, "animal": 1, "dog": 2, "van": 3}
    assert from_lines.paths[from_lines.index["taxi"]] == "vehicle/car/taxi"
    (tmp_path / "dots.txt").write_text("vehicle.car.taxi\n")
    assert _tree_facts(read_hierarchy(tmp_path / "dots.txt", separator=".")) == {
        "vehicle": None, "car": "vehicle", "taxi": "car"}
    named = hierarchy_from_names(["vehicle/car/taxi", "animal", "vehicle/bike"], separator="/")
    assert _tree_facts(named) == {"vehicle": None, "vehicle/car": "vehicle", "vehicle/car/taxi": "vehicle/car",
                                  "animal": None, "vehicle/bike": "vehicle"}
    assert named.paths == list(named.names)
    assert load_hierarchy(None, separator=None, label_names=["a/b"]) is None


@pytest.mark.parametrize("name, text, message", [
    ("cycle.txt", "a/b\nb/c\nc/a\n", r"cycle.txt: the hierarchy has a cycle: a -> c -> b -> a"),
    ("self.txt", "a/a\n", r"cycle: a -> a"),
    ("two.txt", "animal/dog\npet/dog\n", r"two.txt line 2: label 'dog' is under 'pet' here but under 'animal' \(line 1\)"),
    ("empty.txt", "\n# only a comment\n", r"empty.txt names no label"),
    ("gap.txt", "a//b\n", r"gap.txt line 1: 'a//b' has an empty name"),
    ("bad.yaml", "a: [b\n", r"bad.yaml: not valid YAML"),
    ("two.yaml", "a: [x]\nb: {x: null}\n", r"label 'x' is under 'b' here but under 'a'"),
    ("code.yaml", "!!python/object/apply:os.system ['echo hi']\n", r"code.yaml: not valid YAML"),
])
def test_bad_hierarchy_files_are_one_line_data_errors(tmp_path, name, text, message):
    (tmp_path / name).write_text(text)
    with pytest.raises(DataError, match=message) as caught:
        read_hierarchy(tmp_path / name)
    assert "\n" not in str(caught.value)


def test_missing_file_and_labels_outside_the_tree(tmp_path):
    with pytest.raises(DataError, match="hierarchy file .*nope.txt does not exist"):
        read_hierarchy(tmp_path / "nope.txt")
    with pytest.raises(DataError, match="empty part"):
        hierarchy_from_names(["a//b"], separator="/")
    (tmp_path / "tree.txt").write_text(PATHS)
    with pytest.raises(DataError, match="labels.csv: label\\(s\\) 'cat' of the data are not in the hierarchy"):
        read_hierarchy(tmp_path / "tree.txt").for_labels(["dog", "cat"], source="labels.csv")


def test_aligned_tree_adds_only_the_ancestors_of_data_labels(tmp_path):
    (tmp_path / "tree.txt").write_text(PATHS)
    tree = read_hierarchy(tmp_path / "tree.txt").for_labels(["taxi", "dog", "car"])
    assert tree.names == ("taxi", "dog", "car", "animal", "vehicle")  # the data's labels, then the implied ones
    assert tree.implied == ("animal", "vehicle")  # van and bike: neither data labels nor their ancestors
    assert _tree_facts(tree) == {"taxi": "car", "dog": "animal", "car": "vehicle", "animal": None, "vehicle": None}
    assert tree.ancestors.toarray().astype(int).tolist() == [
        [0, 0, 1, 0, 1], [0, 0, 0, 1, 0], [0, 0, 0, 0, 1], [0, 0, 0, 0, 0], [0, 0, 0, 0, 0]]


def test_implied_ancestors_respect_known_cells():
    # labels taxi, car; the tree vehicle/car/taxi adds vehicle
    table = LabelTable(["a", "b", "c", "d"], ["car", "taxi"],
                       np.array([[0, 1], [1, 0], [0, 0], [0, 1]], np.uint8),
                       np.array([[True, True], [True, True], [True, False], [False, False]]))
    tree = Tree(("vehicle", "car", "taxi"), (-1, 0, 1))
    closed = with_implied_ancestors(table, tree)
    assert closed.label_names == ["car", "taxi", "vehicle"]
    # a: taxi implies car and vehicle; b: car implies vehicle; c: nothing positive, taxi unknown -> vehicle unknown;
    # d: taxi=1 but unknown, so it implies nothing
    assert closed.targets.tolist() == [[1, 1, 1], [1, 0, 1], [0, 0, 0], [0, 1, 0]]
    assert closed.known.tolist() == [[True, True, True], [True, True, True], [True, False, False],
                                     [False, False, False]]
    assert closed.meta["implied_labels"] == ["vehicle"]


def test_consistency_rule_and_gate_by_hand():
    tree = Tree(("vehicle", "car", "taxi", "animal"), (-1, 0, 1, -1))
    probs = np.array([[0.6, 0.9, 0.8, 0.1], [0.9, 0.3, 0.7, 0.5]])
    consistent = tree.consistent(probs)
    # p'(car) = min(0.9, 0.6) = 0.6, p'(taxi) = min(0.8, p'(car)) = 0.6; row 2: car 0.3, taxi min(0.7, 0.3)
    np.testing.assert_allclose(consistent, [[0.6, 0.6, 0.6, 0.1], [0.9, 0.3, 0.3, 0.5]])
    assert (consistent[:, 1:3] <= consistent[:, [0, 1]]).all()
    chosen = np.array([[False, True, True, True], [True, False, True, False]])
    assert tree.inconsistent(chosen) == 2  # car without vehicle (row 1), taxi without car (row 2)
    assert tree.gate(chosen).tolist() == [[False, False, False, True], [True, False, False, False]]
    assert tree.inconsistent(tree.gate(chosen)) == 0


def test_hierarchical_prf_against_a_hand_computation():
    # root r with children a (children a1, a2) and b
    tree = Tree(("r", "a", "a1", "a2", "b"), (-1, 0, 1, 1, 0))
    truth = np.array([[0, 0, 1, 0, 0], [0, 0, 0, 0, 1]])  # item 1: a1, item 2: b
    said = np.array([[0, 0, 0, 1, 0], [0, 0, 0, 0, 1]])  # item 1: a2 (a sibling), item 2: b
    # augmented: item 1 true {r, a, a1}, predicted {r, a, a2}: 2 shared; item 2 {r, b} both: 2 shared
    # hP = (2 + 2) / (3 + 2) = 0.8, hR = 4 / 5 = 0.8, hF1 = 0.8
    scores = hierarchical_prf(truth, said, tree)
    assert scores == pytest.approx({"precision": 0.8, "recall": 0.8, "f1": 0.8})
    said = np.array([[0, 1, 0, 0, 0], [0, 0, 0, 0, 1]])  # item 1 stops at a: predicted {r, a}
    scores = hierarchical_prf(truth, said, tree)
    # shared 2 + 2 = 4, predicted 2 + 2 = 4, true 3 + 2 = 5: hP = 1, hR = 0.8, hF1 = 2 * 0.8 / 1.8
    assert scores == pytest.approx({"precision": 1.0, "recall": 0.8, "f1": 1.6 / 1.8})


def test_report_gates_decisions_and_scores_each_depth():
    tree = Tree(("r", "a", "b"), (-1, 0, 0))
    targets = np.array([[1, 1, 0], [1, 0, 1], [0, 0, 0], [1, 1, 0]])
    probs = np.array([[0.9, 0.8, 0.1], [0.4, 0.1, 0.7], [0.2, 0.1, 0.1], [0.8, 0.3, 0.2]])
    report = evaluate_probabilities(targets, probs, [0.5, 0.5, 0.5], label_names=["r", "a", "b"], hierarchy=tree)
    # b passes on item 2 but r does not: gated away, so b has no prediction at all
    assert report.per_label[2]["recall"] == 0.0 and report.hierarchy["inconsistent"] == 0
    depth_1, depth_2 = report.hierarchy["per_depth"]
    assert (depth_1["depth"], depth_1["labels"], depth_2["labels"]) == (1, 1, 2)
    # depth 1 (r): predicted items 1, 4 of true 1, 2, 4 -> P 1, R 2/3, F1 0.8; AP of r = 1 (both positives ranked first
    # above ... item 2's 0.4 is above item 3's 0.2): AP 1
    assert depth_1["micro_f1"] == pytest.approx(0.8) and depth_1["mAP"] == pytest.approx(1.0)
    # depth 2 (a, b): tp 1 (item 1 a), fn 2 (item 2 b, item 4 a), fp 0 -> F1 2 / 4
    assert depth_2["micro_f1"] == pytest.approx(0.5)
    # hierarchical: predicted sets {r,a}, {}, {}, {r}; true {r,a}, {r,b}, {}, {r,a}: shared 3, predicted 3, true 6
    assert report.hierarchy["precision"] == pytest.approx(1.0) and report.hierarchy["recall"] == pytest.approx(0.5)
    assert report.summary()["hierarchical_f1"] == pytest.approx(2 / 3)
    console = Console(record=True, width=140)
    render_metrics(report, console)
    text = console.export_text()
    assert "Hierarchy" in text and "inconsistent decisions (a label without its parent): 0" in text


def test_cross_validation_fold_scores_apply_the_tree():
    from tagnet.engine.process import PhaseResult
    from tagnet.training.validation import fold_scores
    tree = Tree(("r", "a", "b"), (-1, 0, 0))
    val = {"targets": np.array([[1, 1, 0], [1, 0, 1], [0, 0, 0], [1, 1, 0]]), "known": np.ones((4, 3), bool),
           "probs": np.array([[0.9, 0.8, 0.1], [0.4, 0.1, 0.7], [0.2, 0.1, 0.1], [0.8, 0.3, 0.2]], np.float32)}
    result = PhaseResult(best_score=0.0, best_epoch=1, epochs_run=1, validation=val, seconds=0.0)
    splits = [(np.arange(4), np.arange(4))]
    flat = fold_scores(splits, [result], [0.5, 0.5, 0.5], ["r", "a", "b"])
    gated = fold_scores(splits, [result], [0.5, 0.5, 0.5], ["r", "a", "b"], hierarchy=tree)
    # flat: tp 4 (r1 a1 b2 r4), fn 2 (r2 a4) -> 8/10; gated: b on item 2 goes with its parent r -> tp 3, fn 3 -> 6/9
    assert flat["micro_f1"]["mean"] == pytest.approx(0.8) and gated["micro_f1"]["mean"] == pytest.approx(2 / 3)


def test_tree_round_trip_and_malformed_json():
    tree = Tree(("taxi", "car", "vehicle"), (1, 2, -1), implied=("vehicle",))
    again = Tree.from_dict(json.loads(json.dumps(tree.to_dict())), num_labels=3)
    assert again == tree and again.paths == ["vehicle/car/taxi", "vehicle/car", "vehicle"]
    with pytest.raises(ArtifactError, match="tagnet.json key 'hierarchy': 3 labels for a model with 4 outputs"):
        Tree.from_dict(tree.to_dict(), num_labels=4, source="tagnet.json key 'hierarchy'")
    with pytest.raises(ArtifactError, match="parent indices"):
        Tree.from_dict({"names": ["a"], "parents": [5]})
    with pytest.raises(ArtifactError, match="cycle"):
        Tree.from_dict({"names": ["a", "b"], "parents": [1, 0]})
    with pytest.raises(ArtifactError, match="'implied' is not a list"):
        Tree.from_dict({"names": ["a"], "parents": [-1], "implied": 7})


def _animal_table(path, n, seed):
    """A feature table: dog when x0 > 0.6, cat when x0 < -0.6 (animal on both, but labelled only on half), car when
    x1 > 0; the hierarchy animal/dog, animal/cat, vehicle/car adds vehicle."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 3))
    dog, cat, car = x[:, 0] > 0.6, x[:, 0] < -0.6, x[:, 1] > 0
    animal = (dog | cat) & (np.arange(n) % 2 == 0)
    lines = ["id,x0,x1,x2,animal,dog,cat,car"] + [
        f"r{i},{r[0]:.4f},{r[1]:.4f},{r[2]:.4f},{int(a)},{int(d)},{int(c)},{int(v)}"
        for i, (r, a, d, c, v) in enumerate(zip(x, animal, dog, cat, car))]
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture(scope="module")
def hierarchy_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("hier")
    (folder / "tree.txt").write_text("animal/dog\nanimal/cat\nvehicle/car\n")
    train = _animal_table(folder / "train.csv", 200, 0)
    _animal_table(folder / "test.csv", 80, 1)
    done = runner.invoke(app, ["train", str(train), "--tabular", "--label-columns", "animal,dog,cat,car",
                               "--hierarchy", str(folder / "tree.txt"), "--out", str(folder / "run"), "--epochs", "8",
                               "--select", "mlp", "--set", "lr=0.02"])
    assert done.exit_code == 0, done.output
    return folder, done.output


def test_train_adds_ancestors_and_stores_the_tree(hierarchy_run):
    folder, output = hierarchy_run
    assert "hierarchy: 5 labels in 2 level(s), 1 ancestor(s) added as labels (vehicle)" in output
    assert "inconsistent decisions (a label without its parent): 0" in output
    artifact = load_artifact(folder / "run")
    assert artifact.label_names == ["animal", "car", "cat", "dog", "vehicle"]  # the file's (sorted), then implied
    assert _tree_facts(artifact.hierarchy) == {"animal": None, "dog": "animal", "cat": "animal", "car": "vehicle",
                                               "vehicle": None}
    assert artifact.meta["hierarchy"]["implied"] == ["vehicle"]
    assert json.loads((folder / "run" / "config.json").read_text())["hierarchy"] == str(folder / "tree.txt")
    metrics = json.loads((folder / "run" / "metrics.json").read_text())
    assert metrics["validation"]["hierarchy"]["inconsistent"] == 0
    assert [row["depth"] for row in metrics["validation"]["hierarchy"]["per_depth"]] == [1, 2]


def test_predict_and_evaluate_follow_the_tree(hierarchy_run):
    folder, _ = hierarchy_run
    predictor = Predictor(folder / "run")
    names = predictor.label_names
    rows = np.random.default_rng(5).normal(size=(300, 3)).astype(np.float32) * 2
    probs = predictor.predict_proba(rows)
    parent = np.array([-1, 4, 0, 0, -1])  # animal, car, cat, dog, vehicle
    child = parent >= 0
    assert (probs[:, child] <= probs[:, parent[child]]).all()  # no label above its parent
    for prediction in predictor.predict(rows):
        for label in prediction.labels:
            j = names.index(label)
            assert parent[j] < 0 or names[parent[j]] in prediction.labels
    out = folder / "report.json"
    done = runner.invoke(app, ["evaluate", str(folder / "run"), str(folder / "test.csv"), "--json", str(out)])
    assert done.exit_code == 0, done.output
    report = json.loads(out.read_text())
    scores = report["hierarchy"]
    assert scores["inconsistent"] == 0 and 0.5 < scores["f1"] <= 1.0
    # the file's vehicle column is implied by car, as in training: its support is car's
    support = {row["label"]: row["support"] for row in report["per_label"]}
    assert support["vehicle"] == support["car"] and support["animal"] == support["dog"] + support["cat"]
    assert "Hierarchy" in done.output


def test_export_keeps_the_rule_in_the_graph_and_the_tree_in_metadata(hierarchy_run):
    pytest.importorskip("onnxruntime")
    from tagnet.inference.export import export_onnx, read_onnx_metadata

    folder, _ = hierarchy_run
    report = export_onnx(folder / "run", out=folder / "model.onnx")
    meta = read_onnx_metadata(report.onnx_path)
    assert meta["hierarchy"]["parents"] == [-1, 4, 0, 0, -1]
    assert meta["hierarchy"]["paths"] == ["animal", "vehicle/car", "animal/cat", "animal/dog", "vehicle"]
    rows = np.random.default_rng(6).normal(size=(50, 3)).astype(np.float32) * 2
    onnx = Predictor(folder / "run", runtime="onnx", onnx_file=report.onnx_path).predict_proba(rows)
    np.testing.assert_allclose(onnx, Predictor(folder / "run", runtime="torch").predict_proba(rows), atol=1e-5)


def test_serve_labels_carry_paths(hierarchy_run):
    from fastapi.testclient import TestClient

    from tagnet.serve import create_app

    folder, _ = hierarchy_run
    with TestClient(create_app(Predictor(folder / "run"))) as client:
        body = client.get("/labels").json()
    assert body["paths"] == ["animal", "vehicle/car", "animal/cat", "animal/dog", "vehicle"]


def test_data_check_reports_missing_labels_skipped_levels_and_cycles(hierarchy_run, tmp_path):
    folder, _ = hierarchy_run
    table = folder / "train.csv"
    options = dict(tabular=True, label_columns=["animal", "dog", "cat", "car"])
    report = check_dataset(table, hierarchy=folder / "tree.txt", **options)
    kinds = {p.kind: p for p in report.problems}
    assert report.usable and "level skipped" in kinds
    assert "training adds the parent" in kinds["level skipped"].message
    assert "'dog' without 'animal'" in kinds["level skipped"].message or "'cat' without 'animal'" in \
        kinds["level skipped"].message
    step = next(s for s in report.steps if s.name == "hierarchy")
    assert step.detail == "5 labels in 2 level(s); 1 ancestor(s) added as labels: 'vehicle'"
    (tmp_path / "short.txt").write_text("animal/dog\nanimal/cat\n")
    report = check_dataset(table, hierarchy=tmp_path / "short.txt", **options)
    assert not report.usable and "'car'" in report.errors()[0].message
    (tmp_path / "cycle.txt").write_text("animal/dog\ndog/animal\nvehicle/car\nanimal/cat\n")
    report = check_dataset(table, hierarchy=tmp_path / "cycle.txt", **options)
    assert not report.usable and "cycle" in report.errors()[0].message
    done = runner.invoke(app, ["data", "check", str(table), "--tabular", "--label-columns", "animal,dog,cat,car",
                               "--hierarchy", str(tmp_path / "short.txt")])
    assert done.exit_code == 1 and "not in the hierarchy" in done.output


def test_report_page_and_calibrate_keep_the_tree(hierarchy_run, tmp_path):
    import shutil

    from tagnet.decisions.refit import calibrate
    from tagnet.report.html import load_run

    folder, _ = hierarchy_run
    assert load_run(folder / "run").hierarchy == load_artifact(folder / "run").hierarchy
    copy = tmp_path / "run"
    shutil.copytree(folder / "run", copy)
    calibrate(copy, folder / "test.csv", read_options={"label_columns": ["animal", "car", "cat", "dog"]})
    predictor = Predictor(copy)
    assert predictor.hierarchy is not None and predictor.calibration is not None
    probs = predictor.predict_proba(np.random.default_rng(7).normal(size=(100, 3)).astype(np.float32) * 2)
    assert (probs[:, [1, 2, 3]] <= probs[:, [4, 0, 0]]).all()  # still consistent after the temperatures
    # the exported graph applies the rule before the temperatures; the Predictor's PyTorch path does the same
    from tagnet.inference.export import export_onnx, read_onnx_metadata

    export_onnx(copy)
    assert "then the hierarchy's rule again" in read_onnx_metadata(copy / "artifact" / "model.onnx")["calibration_note"]
    rows = np.random.default_rng(7).normal(size=(100, 3)).astype(np.float32) * 2
    on_torch = Predictor(copy, runtime="torch").predict_proba(rows)
    on_onnx = Predictor(copy, runtime="onnx")
    assert on_onnx.runtime == "onnx"
    np.testing.assert_allclose(on_onnx.predict_proba(rows), on_torch, atol=1e-5)


def test_api_train_with_the_separator_in_label_names(tmp_path):
    import tagnet

    rng = np.random.default_rng(0)
    x = rng.normal(size=(80, 2))
    lines = ["x0,x1,animal/dog,animal/cat,plant"] + [
        f"{a:.4f},{b:.4f},{int(a > 0.5)},{int(a < -0.5)},{int(b > 0)}" for a, b in x]
    (tmp_path / "t.csv").write_text("\n".join(lines) + "\n")
    result = tagnet.train(tmp_path / "t.csv", tabular=True, out_dir=tmp_path / "run", hierarchy_separator="/",
                          read_options={"label_columns": ["animal/dog", "animal/cat", "plant"]},
                          config=tagnet.TrainConfig(epochs=2, select="mlp"), progress=False)
    artifact = load_artifact(result.run_dir)
    assert artifact.label_names == ["animal", "animal/cat", "animal/dog", "plant"]  # sorted, as the file's
    assert artifact.hierarchy.paths == artifact.label_names and artifact.hierarchy.parents == (-1, 0, 0, -1)
    assert artifact.config["hierarchy_separator"] == "/" and result.report.hierarchy["inconsistent"] == 0
