"""Tests of report/: the HTML run report (self-contained, every section, values of its helpers) and terminal tables."""

import json
import re
import shutil

import numpy as np
import pytest
from sklearn.metrics import log_loss

from tagnet.errors import ArtifactError
from tagnet.decisions.thresholds import Thresholds
from tagnet.report.html import RunData, cooccurrence, item_losses, load_run, render_page, write_report

SECTIONS = ("summary", "curves", "pr-curves", "f1-thresholds", "cooccurrence", "worst")


def test_report_of_an_image_run_is_self_contained(tiny_run, tmp_path):
    path = write_report(tiny_run.run_dir, out=tmp_path / "report.html", max_images=5)
    page = path.read_text(encoding="utf-8")
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", page, re.I)
    assert "<link" not in page and "<script src" not in page and page.count("<script") == 1  # the label search
    for section in SECTIONS:
        assert f"id='{section}'" in page
    for name in tiny_run.report.label_names:
        assert name in page
    assert len(re.findall(r'src="data:image/png;base64,', page)) == 5  # curves, PR, reliability, bars, co-occurrence
    assert len(re.findall(r'src="data:image/jpeg;base64,', page)) == 5  # the 5 highest-loss thumbnails
    assert "counted on the 120 items of the label file labels.csv" in page  # co-occurrence of the whole label file


def test_report_without_images_shows_item_ids(tiny_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(tiny_run.run_dir, run, ignore=shutil.ignore_patterns("cache", "*.safetensors"))
    shutil.rmtree(run / "artifact")  # thresholds then come from metrics.json
    info = json.loads((run / "run.json").read_text())
    (run / "run.json").write_text(json.dumps({**info, "modality": "text", "labels": str(tmp_path / "gone.csv")}))
    (run / "metrics.csv").unlink()
    page = write_report(run).read_text(encoding="utf-8")
    assert (run / "report.html").is_file()
    assert "data:image/jpeg" not in page and "no metrics.csv" in page
    data = load_run(run)
    worst = data.items[int(np.nanargmax(item_losses(data.truths, data.probs)))]
    assert f'<div class="item">{worst}</div>' in page
    assert "counted on the 24 validation items" in page  # unreadable label file: co-occurrence of the validation truths


def test_load_run_reads_thresholds_and_predictions(tiny_run):
    data = load_run(tiny_run.run_dir)
    assert data.label_names == tiny_run.report.label_names
    assert data.thresholds.values == pytest.approx(tiny_run.thresholds.values)
    assert data.truths.shape == data.probs.shape == (tiny_run.report.n_items, len(data.label_names))


def test_item_losses_match_sklearn_and_skip_unknown_cells():
    truths = np.array([[1, 0, 1], [0, -1, 1], [-1, -1, -1]])
    probs = np.array([[0.9, 0.2, 0.4], [0.3, 0.99, 0.8], [0.5, 0.5, 0.5]])
    losses = item_losses(truths, probs)
    assert losses[0] == pytest.approx(log_loss([1, 0, 1], [0.9, 0.2, 0.4]))
    assert losses[1] == pytest.approx(log_loss([0, 1], [0.3, 0.8]))
    assert np.isnan(losses[2])


def test_cooccurrence_counts_pairs_of_known_positives():
    targets = np.array([[1, 1, 0], [1, 0, 1], [1, 1, -1], [0, 0, 0]])
    assert cooccurrence(targets).tolist() == [[3, 2, 1], [2, 2, 0], [1, 0, 1]]


def test_missing_files_raise_artifact_error(tmp_path):
    with pytest.raises(ArtifactError, match="val_predictions.csv not found"):
        write_report(tmp_path)
    (tmp_path / "val_predictions.csv").write_text("item,true_a,prob_a\nx,1,0.7\n")
    with pytest.raises(ArtifactError, match="metrics.json not found"):
        write_report(tmp_path)
    (tmp_path / "val_predictions.csv").write_text("item,true_a,prob_a\nx,1,high\n")
    with pytest.raises(ArtifactError, match="non-numeric"):
        write_report(tmp_path)


def test_report_command(tiny_run, tmp_path):
    from typer.testing import CliRunner

    from tagnet.cli import app

    out = tmp_path / "page.html"
    result = CliRunner().invoke(app, ["report", str(tiny_run.run_dir), "--out", str(out), "--worst", "2"])
    assert result.exit_code == 0, result.output
    assert out.read_text(encoding="utf-8").count("data:image/jpeg;base64,") == 2


def test_prediction_table_keeps_long_file_names_whole():
    from rich.console import Console

    from tagnet.inference.predictor import Prediction, PredictionResults
    from tagnet.report.terminal import render_predictions

    name = "photos/2024/holiday/" + "x" * 40 + "_IMG_0001.jpg"
    names = ["alpha", "beta", "gamma", "delta"]
    results = PredictionResults([Prediction(name, {n: 0.5 for n in names}, names)], names)
    console = Console(width=70, record=True)
    render_predictions(results, console)
    rows = [line.split("│") for line in console.export_text().splitlines() if line.startswith("│")]
    assert "".join(cells[1].strip() for cells in rows) == name  # folded over lines, never cut with "…"


def test_metrics_table_of_many_labels_shows_the_most_frequent_and_the_worst():
    from rich.console import Console

    from tagnet.evaluation.metrics import evaluate_probabilities
    from tagnet.report.terminal import render_metrics, shown_labels

    rows = [{"label": f"l{j}", "support": s, "f1": f} for j, (s, f) in
            enumerate([(5, 0.9), (50, 0.8), (1, None), (7, 0.1), (30, 0.5), (2, 0.2)])]
    shown, line = shown_labels(rows, 4)
    # the 2 with most support (l1: 50, l4: 30), then the 2 lowest F1 among the rest (l3: 0.1, l5: 0.2), label order
    assert [row["label"] for row in shown] == ["l1", "l3", "l4", "l5"]
    assert line.startswith("4 of 6 labels shown") and shown_labels(rows, 6) == (rows, "")

    rng = np.random.default_rng(0)
    targets = (rng.random((300, 100)) < 0.1).astype(np.float32)
    probs = np.clip(targets * 0.6 + rng.random((300, 100)) * 0.5, 0, 1)
    report = evaluate_probabilities(targets, probs, np.full(100, 0.5), label_names=[f"tag{j:03d}" for j in range(100)])
    console = Console(width=200, record=True)
    render_metrics(report, console, max_labels=20)
    text = console.export_text()
    assert sum(1 for line in text.splitlines() if line.startswith("│ tag")) == 20
    assert "20 of 100 labels shown" in " ".join(text.split())


def test_prediction_table_of_many_labels_lists_each_inputs_most_probable():
    from rich.console import Console

    from tagnet.inference.predictor import Prediction, PredictionResults
    from tagnet.report.terminal import TOP_PROBABILITIES, render_predictions

    names = [f"tag{j:02d}" for j in range(30)]
    probabilities = {n: j / 100 for j, n in enumerate(names)}
    results = PredictionResults([Prediction("a.jpg", probabilities, ["tag29"])], names)
    console = Console(width=200, record=True)
    render_predictions(results, console)
    text = console.export_text()
    assert "tag29 0.290 tag28 0.280 tag27 0.270 tag26 0.260 tag25 0.250" in text and TOP_PROBABILITIES == 5
    assert "tag24" not in text and "most probable" in text


def test_report_at_1200_labels_lists_every_label_behind_a_search_box(tmp_path):
    rng = np.random.default_rng(0)
    names = [f"tag_{j:04d}" for j in range(1200)]
    truths = (rng.random((30, 1200)) < 0.02).astype(int)
    truths[:, 7] = 1  # the label with most validation positives comes first
    probs = rng.random((30, 1200))
    per_label = [{"label": name, "ap": 0.5, "precision": 0.25, "recall": 0.5, "f1": 1 / 3,
                  "support": int(truths[:, j].sum()), "threshold": 0.5} for j, name in enumerate(names)]
    data = RunData(tmp_path, names, [f"item{i}" for i in range(30)], truths, probs,
                   Thresholds("per-label", [0.5] * 1200, 1), [], {"validation": {"per_label": per_label}}, {},
                   {"modality": "text"})
    page = render_page(data, max_images=2, max_labels=4)
    rows = re.findall(r'<tr data-label="([^"]+)">', page)
    assert len(rows) == 1200 and rows[0] == "tag_0007" and sorted(rows) == [n.lower() for n in names]
    assert "placeholder='search 1200 labels'" in page and "showing the 4 labels with most validation positives" in page
    assert "<script src" not in page and not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", page, re.I)


def test_worst_items_tag_each_true_or_predicted_label_by_kind(tmp_path):
    from tagnet.report.html import _worst_items_html

    truths = np.array([[1, 1, 0, -1, 0], [0, 0, 0, 0, 0]])
    probs = np.array([[0.9, 0.2, 0.7, 0.6, 0.1], [0.1, 0.1, 0.1, 0.1, 0.1]])
    data = RunData(tmp_path, list("abcde"), ["x1", "x2"], truths, probs, Thresholds("fixed", [0.5] * 5), [], {}, {},
                   {"modality": "tabular"})
    page = _worst_items_html(data, probs >= 0.5, 1)
    tags = re.findall(r'class="tag (\w+)" title="p=[\d.]+">(\w) ', page)
    assert tags == [("ok", "a"), ("missed", "b"), ("wrong", "c"), ("unknown", "d")]
    assert "x1" in page and "x2" not in page  # the one item shown is the worst


def test_split_and_calibrate_tables_show_a_selection_beyond_forty_labels(tmp_path):
    from types import SimpleNamespace

    from rich.console import Console

    from tagnet.data.label_table import LabelTable
    from tagnet.report.terminal import MAX_LABEL_ROWS, render_calibration, render_split

    names = [f"tag{j:03d}" for j in range(100)]
    rows = np.arange(200)[:, None]
    train = (rows % 2 == 0) & (np.arange(100) < 50)  # tags 0-49 in every other training item
    val = np.zeros((200, 100), bool)
    val[:, 97] = True  # tag097 in every validation item and no training one: the largest gap
    parts = {name: LabelTable([f"{name}{i}" for i in range(200)], names, t.astype(np.uint8), np.ones_like(t),
                              "csv", {}) for name, t in (("train", train), ("val", val))}
    console = Console(record=True, width=200)
    render_split(parts, console)
    text = console.export_text()
    assert f"{MAX_LABEL_ROWS} of 100 labels shown: those whose share differs most between parts" in text
    assert "tag097" in text and "200 (100.0%)" in text and "tag098" not in text
    assert sum(line.lstrip().startswith("tag") for line in text.splitlines()) == MAX_LABEL_ROWS
    ece = np.linspace(0.0, 0.99, 100)
    result = SimpleNamespace(items=50, label_names=names, calibration=None, ece_before=ece, ece_after=ece / 2,
                             fit=SimpleNamespace(thresholds=SimpleNamespace(values=np.full(100, 0.5))),
                             skipped={}, notes=[], artifact_dir=tmp_path, previous=tmp_path / "tagnet.json.previous")
    console = Console(record=True, width=200)
    render_calibration(result, console)
    text = console.export_text()
    shown = re.findall(r"^│ (tag\d{3}) ", text, flags=re.M)
    assert "40 of 100 labels shown: those with the largest calibration error before" in text
    assert shown == [f"tag{j:03d}" for j in range(60, 100)]  # the 40 largest errors, in label order
