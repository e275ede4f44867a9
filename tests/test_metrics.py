"""Tests of the metrics report against scikit-learn on hand-made cases."""

import json

import numpy as np
import pytest
from rich.console import Console
from sklearn.metrics import (
    accuracy_score,
    average_precision_score,
    coverage_error,
    hamming_loss,
    label_ranking_loss,
    precision_recall_fscore_support,
)

from tagnet.errors import ConfigError, DataError
from tagnet.evaluation.metrics import evaluate_probabilities, f1_at
from tagnet.report.terminal import render_metrics
from tagnet.decisions.thresholds import Thresholds

NAMES = ["cat", "dog", "fish", "none_yet"]
# label "none_yet" has no positive; item 5 has no label at all
Y = np.array([
    [1, 0, 1, 0],
    [0, 1, 0, 0],
    [1, 1, 0, 0],
    [0, 0, 1, 0],
    [1, 0, 0, 0],
    [0, 0, 0, 0],
    [0, 1, 1, 0],
])
P = np.array([
    [0.9, 0.2, 0.6, 0.1],
    [0.3, 0.8, 0.1, 0.7],
    [0.4, 0.7, 0.2, 0.2],
    [0.2, 0.1, 0.3, 0.4],
    [0.7, 0.6, 0.5, 0.3],
    [0.1, 0.4, 0.2, 0.1],
    [0.6, 0.3, 0.9, 0.2],
])
T = [0.5, 0.5, 0.25, 0.5]


def _sk_prf(y, pred, average):
    return precision_recall_fscore_support(y, pred, average=average, zero_division=0)


def test_all_known_matches_sklearn():
    report = evaluate_probabilities(Y, P, T, label_names=NAMES)
    pred = (P >= np.array(T)).astype(int)

    p, r, f, s = _sk_prf(Y, pred, None)
    for j, row in enumerate(report.per_label):
        assert row["label"] == NAMES[j] and row["threshold"] == T[j]
        assert (row["precision"], row["recall"], row["f1"], row["support"]) == pytest.approx((p[j], r[j], f[j], s[j]))
    aps = [average_precision_score(Y[:, j], P[:, j]) for j in range(3)]
    assert [row["ap"] for row in report.per_label] == pytest.approx(aps + [None])
    assert report.mAP == pytest.approx(np.mean(aps))
    assert report.mAP == pytest.approx(average_precision_score(Y[:, :3], P[:, :3], average="macro"))

    for average in ("micro", "macro", "samples"):
        expected = _sk_prf(Y, pred, average)[:3]
        got = [getattr(report, f"{average}_{k}") for k in ("precision", "recall", "f1")]
        assert got == pytest.approx(expected), average
    assert report.hamming_loss == pytest.approx(hamming_loss(Y, pred))
    assert report.exact_match == pytest.approx(accuracy_score(Y, pred))
    assert report.ranking_loss == pytest.approx(label_ranking_loss(Y, P))
    assert report.coverage == pytest.approx(coverage_error(Y, P))
    # top labels: cat, dog, dog, none_yet (wrong), cat, (item 5 has no label: skipped), fish
    assert report.one_error == pytest.approx(1 / 6)
    assert report.n_items == report.n_complete == 7


def test_masked_cells_are_excluded():
    known = np.ones_like(Y, dtype=bool)
    known[0, 2] = known[2, 0] = known[4, 1] = known[6, 3] = False
    report = evaluate_probabilities(Y, P, T, label_names=NAMES, known=known)
    pred = (P >= np.array(T)).astype(int)

    for j, row in enumerate(report.per_label):
        rows = known[:, j]
        p, r, f, s = _sk_prf(Y[rows, j], pred[rows, j], "binary")
        assert (row["precision"], row["recall"], row["f1"]) == pytest.approx((p, r, f))
        assert row["support"] == Y[rows, j].sum()
        if Y[rows, j].any():
            assert row["ap"] == pytest.approx(average_precision_score(Y[rows, j], P[rows, j]))
    assert report.mAP == pytest.approx(np.mean([row["ap"] for row in report.per_label[:3]]))
    assert report.macro_f1 == pytest.approx(np.mean([row["f1"] for row in report.per_label]))

    tp = (pred & Y & known).sum()
    fp = (pred & (1 - Y) & known).sum()
    fn = ((1 - pred) & Y & known).sum()
    assert report.micro_precision == pytest.approx(tp / (tp + fp))
    assert report.micro_recall == pytest.approx(tp / (tp + fn))
    assert report.micro_f1 == pytest.approx(2 * tp / (2 * tp + fp + fn))
    assert report.hamming_loss == pytest.approx(((pred != Y) & known).sum() / known.sum())

    complete = known.all(axis=1)
    assert report.n_complete == 3
    assert report.samples_f1 == pytest.approx(_sk_prf(Y[complete], pred[complete], "samples")[2])
    assert report.exact_match == pytest.approx(accuracy_score(Y[complete], pred[complete]))
    assert report.ranking_loss == pytest.approx(label_ranking_loss(Y[complete], P[complete]))
    assert report.coverage == pytest.approx(coverage_error(Y[complete], P[complete]))

    # values in unknown cells do not matter
    y2, p2 = Y.copy(), P.copy()
    y2[~known] = 1 - y2[~known]
    p2[~known] = 0.99
    assert evaluate_probabilities(y2, p2, T, label_names=NAMES, known=known) == report


def test_no_complete_item_leaves_example_metrics_undefined():
    known = np.ones_like(Y, dtype=bool)
    known[:, 0] = False
    known[0, 0] = True
    known[0, 1] = False
    report = evaluate_probabilities(Y, P, T, label_names=NAMES, known=known)
    assert report.n_complete == 0
    assert report.samples_f1 is report.exact_match is report.ranking_loss is report.one_error is None
    assert report.per_label[0]["support"] == 1


def test_top_k_thresholds_and_json():
    th = Thresholds("top-k", [0.0] * 4, top_k=1)
    report = evaluate_probabilities(Y, P, th, label_names=NAMES)
    pred = np.zeros_like(Y)
    pred[np.arange(len(P)), P.argmax(axis=1)] = 1
    assert report.threshold_mode == "top-k"
    assert report.micro_f1 == pytest.approx(_sk_prf(Y, pred, "micro")[2])
    data = json.loads(json.dumps(report.to_dict()))
    assert data["mAP"] == pytest.approx(report.mAP) and data["per_label"][3]["ap"] is None
    assert set(report.summary()) == {"mAP", "micro_f1", "macro_f1", "samples_f1", "hamming_loss", "exact_match"}


def test_render_metrics_prints_every_label_and_average():
    console = Console(record=True, width=120)
    render_metrics(evaluate_probabilities(Y, P, T, label_names=NAMES), console)
    text = console.export_text()
    for word in NAMES + ["micro avg", "macro avg (mAP)", "samples avg", "Hamming loss", "one-error"]:
        assert word in text


def test_bad_inputs():
    with pytest.raises(DataError, match="shape"):
        evaluate_probabilities(Y, P[:, :3], T, label_names=NAMES)
    with pytest.raises(DataError, match="3 names"):
        evaluate_probabilities(Y, P, T, label_names=NAMES[:3])
    with pytest.raises(ConfigError, match="3 values for 4 labels"):
        evaluate_probabilities(Y, P, T[:3], label_names=NAMES)


def test_one_label_end_to_end_matches_sklearn():
    y, p = Y[:, [0]], P[:, [0]]
    report = evaluate_probabilities(y, p, [0.5], label_names=["cat"])
    pred = (p >= 0.5).astype(int)
    assert report.per_label[0]["ap"] == pytest.approx(average_precision_score(y[:, 0], p[:, 0]))
    assert report.mAP == report.per_label[0]["ap"]
    binary = precision_recall_fscore_support(y[:, 0], pred[:, 0], average="binary", zero_division=0)[:3]
    assert (report.micro_precision, report.micro_recall, report.micro_f1) == pytest.approx(binary)
    assert (report.macro_precision, report.macro_recall, report.macro_f1) == pytest.approx(binary)
    # per item: F1 1 where the one label is right and present, 0 elsewhere (no label predicted nor true: 0, as sklearn)
    hits = (y[:, 0] == 1) & (pred[:, 0] == 1)
    assert report.samples_f1 == pytest.approx(hits.mean())
    assert report.samples_precision == pytest.approx(hits.mean()) and report.samples_recall == pytest.approx(hits.mean())
    assert report.hamming_loss == pytest.approx(hamming_loss(y, pred))
    assert report.exact_match == pytest.approx(accuracy_score(y, pred))
    assert report.ranking_loss == 0.0  # one label: no pair to order
    assert report.coverage == pytest.approx(y.mean())  # 1 for an item with the label, 0 without
    assert report.one_error == 0.0


def test_label_without_positives_is_listed_and_left_out_of_map():
    report = evaluate_probabilities(Y, P, T, label_names=NAMES)
    assert report.labels_without_positives == ["none_yet"]
    assert json.loads(json.dumps(report.to_dict()))["labels_without_positives"] == ["none_yet"]
    with pytest.warns(UserWarning, match="No positive class found"):
        sklearn_macro = average_precision_score(Y, P, average="macro")  # counts none_yet as AP 0
    aps = [average_precision_score(Y[:, j], P[:, j]) for j in range(3)]
    assert sklearn_macro == pytest.approx(sum(aps) / 4)
    assert report.mAP == pytest.approx(sum(aps) / 3)
    pred = (P >= np.array(T)).astype(int)
    assert report.macro_f1 == pytest.approx(_sk_prf(Y, pred, "macro")[2])  # macro F1 is scikit-learn's
    assert report.warnings() and "none_yet" in report.warnings()[0]
    console = Console(record=True, width=300)
    render_metrics(report, console)
    assert "1 label(s) have no positive in this data (none_yet)" in console.export_text()
    assert evaluate_probabilities(Y[:, :3], P[:, :3], T[:3], label_names=NAMES[:3]).warnings() == []


def test_label_unknown_everywhere_has_no_value_and_is_left_out_of_macro():
    known = np.ones_like(Y, dtype=bool)
    known[:, 1] = False
    report = evaluate_probabilities(Y, P, T, label_names=NAMES, known=known)
    row = report.per_label[1]
    assert (row["ap"], row["precision"], row["recall"], row["f1"], row["support"]) == (None, None, None, None, 0)
    assert report.labels_without_positives == ["dog", "none_yet"]
    pred = (P >= np.array(T)).astype(int)
    others = [0, 2, 3]
    assert report.macro_f1 == pytest.approx(_sk_prf(Y[:, others], pred[:, others], "macro")[2])
    assert report.n_complete == 0 and report.exact_match is None
    with pytest.raises(DataError, match="every one of the 28 cells is unknown"):
        evaluate_probabilities(Y, P, T, label_names=NAMES, known=np.zeros_like(known))


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
def test_nan_and_inf_probabilities_are_a_data_error(value):
    p = P.copy()
    p[2, 1] = value
    with pytest.raises(DataError, match=r"probabilities row 3, label 'dog': .*expected finite numbers"):
        evaluate_probabilities(Y, p, T, label_names=NAMES)


def test_evaluation_file_without_a_label_is_aligned_as_negatives():
    from tagnet.data.label_table import LabelTable

    test = LabelTable.from_label_sets(["a", "b", "c"], [["cat"], ["dog", "cat"], []])
    with pytest.raises(DataError, match=r"missing \['fish'\], unexpected none"):
        test.aligned_to(["cat", "dog", "fish"])
    aligned = test.aligned_to(["fish", "cat", "dog"], missing_negative=True)
    assert aligned.label_names == ["fish", "cat", "dog"]
    assert aligned.targets.tolist() == [[0, 1, 0], [0, 1, 1], [0, 0, 0]] and aligned.known.all()
    assert aligned.meta["labels_added_as_negative"] == ["fish"]
    with pytest.raises(DataError, match=r"unexpected \['dog'\]"):
        test.aligned_to(["cat", "fish"], missing_negative=True)
    probs = np.array([[0.2, 0.9, 0.1], [0.3, 0.8, 0.7], [0.6, 0.1, 0.2]])
    report = evaluate_probabilities(aligned.targets, probs, [0.5] * 3, label_names=aligned.label_names)
    assert report.labels_without_positives == ["fish"]
    assert report.mAP == pytest.approx(np.mean([average_precision_score(aligned.targets[:, j], probs[:, j]) for j in (1, 2)]))
    assert report.per_label[0]["precision"] == 0.0  # the false positive on item c counts against fish
    assert report.micro_f1 == pytest.approx(_sk_prf(aligned.targets, (probs >= 0.5).astype(int), "micro")[2])


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_per_label_metrics_match_sklearn_with_ties_and_unknown_cells(seed, monkeypatch):
    from tagnet.evaluation import metrics

    monkeypatch.setattr(metrics, "AP_BLOCK_CELLS", 7 * 60)  # several blocks of labels
    rng = np.random.default_rng(seed)
    y = (rng.random((60, 25)) < 0.3).astype(int)
    p = np.round(np.clip(0.4 * y + 0.6 * rng.random(y.shape), 0, 1), 1)  # rounded: many tied scores
    known = rng.random(y.shape) > 0.15
    known[:, 3] = False  # a label with no known value
    y[:, 4] = 0  # a label without positives
    thresholds = rng.uniform(0.3, 0.7, 25)
    report = evaluate_probabilities(y, p, thresholds, label_names=[f"l{j}" for j in range(25)], known=known)
    pred = (p >= thresholds).astype(int)
    for j, row in enumerate(report.per_label):
        rows = known[:, j]
        if not rows.any():
            assert (row["ap"], row["precision"], row["recall"], row["f1"], row["support"]) == (None, None, None, None, 0)
            continue
        expected = precision_recall_fscore_support(y[rows, j], pred[rows, j], labels=[1], zero_division=0)
        assert (row["precision"], row["recall"], row["f1"]) == pytest.approx([v[0] for v in expected[:3]], abs=1e-12)
        assert row["support"] == y[rows, j].sum()
        if y[rows, j].any():
            assert row["ap"] == pytest.approx(average_precision_score(y[rows, j], p[rows, j]), abs=1e-12)
        else:
            assert row["ap"] is None


def test_f1_at_matches_the_report_at_one_threshold():
    rng = np.random.default_rng(3)
    y = rng.random((40, 5)) < 0.3
    y[:, 4] = False  # a label without positives: macro counts it as 0, as the report does
    p = rng.random((40, 5))
    known = rng.random((40, 5)) < 0.9
    known[:, 3] = False  # a label never known: left out of macro, as the report leaves it
    report = evaluate_probabilities(y, p, np.full(5, 0.5), label_names=list("abcde"), known=known)
    assert f1_at(y, p, known) == pytest.approx((report.micro_f1, report.macro_f1))
    assert f1_at(y, p, known)[0] == pytest.approx(_sk_prf(y[known], (p >= 0.5)[known], "binary")[2])
