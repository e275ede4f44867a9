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
from tagnet.metrics import evaluate_probabilities, render_metrics
from tagnet.thresholds import Thresholds

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
