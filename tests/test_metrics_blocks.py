"""The metrics report computed block by block (rows, labels) equals the one-shot report and scikit-learn's values."""

import numpy as np
import pytest
from sklearn.metrics import (
    accuracy_score,
    coverage_error,
    hamming_loss,
    label_ranking_loss,
    precision_recall_fscore_support,
)

import tagnet.decisions.arrays as arrays
import tagnet.evaluation.metrics as metrics
from tagnet.decisions.calibration import ece
from tagnet.decisions.thresholds import Thresholds
from tagnet.evaluation.metrics import evaluate_probabilities, evaluate_rules


def _data(seed: int, n: int = 40, width: int = 6) -> tuple[np.ndarray, np.ndarray]:
    """0/1 targets and scores rounded to 0.1 (many ties); label 4 has no positive, row 0 has every label, row 1 none."""
    rng = np.random.default_rng(seed)
    y = (rng.random((n, width)) < 0.3).astype(np.int8)
    y[:, 4] = 0
    y[0, :4], y[0, 5], y[1] = 1, 1, 0
    y[0, 4] = 1  # row 0: every label (so label 4 has one positive there only when it is kept below)
    p = np.round(rng.random((n, width)) * 0.7 + 0.3 * y, 1)
    return y, p


def test_edge_cases_match_sklearn():
    y, p = _data(0)
    y[0, 4] = 0  # label 4: no positive anywhere
    thresholds = [0.5, 0.5, 0.5, 1.0, 0.5, 0.3]  # label 3 is never predicted (scores < 1)
    pred = (p >= np.array(thresholds)).astype(int)
    assert not pred[:, 3].any()
    report = evaluate_probabilities(y, p, thresholds, label_names=list("abcdef"))
    for average in ("micro", "samples"):
        expected = precision_recall_fscore_support(y, pred, average=average, zero_division=0)[:3]
        assert [getattr(report, f"{average}_{k}") for k in ("precision", "recall", "f1")] == pytest.approx(expected)
    per = precision_recall_fscore_support(y, pred, average=None, zero_division=0)
    assert [row["f1"] for row in report.per_label] == pytest.approx(per[2].tolist())
    assert report.macro_f1 == pytest.approx(precision_recall_fscore_support(y, pred, average="macro",
                                                                            zero_division=0)[2])
    assert report.hamming_loss == pytest.approx(hamming_loss(y, pred))
    assert report.exact_match == pytest.approx(accuracy_score(y, pred))
    assert report.ranking_loss == pytest.approx(label_ranking_loss(y, p))
    assert report.coverage == pytest.approx(coverage_error(y, p))
    assert report.labels_without_positives == ["e"] and report.per_label[4]["ap"] is None


def test_ranking_loss_and_coverage_with_ties_and_full_rows():
    y = np.array([[1, 1, 1], [0, 0, 0], [1, 0, 0], [0, 1, 1], [1, 0, 1]])
    p = np.array([[0.2, 0.2, 0.2], [0.5, 0.1, 0.1], [0.4, 0.4, 0.1], [0.3, 0.3, 0.3], [0.1, 0.9, 0.1]])
    report = evaluate_probabilities(y, p, [0.5] * 3, label_names=["a", "b", "c"])
    # row 2: the false label b ties the true a (a wrong pair, 1 of 2); row 3: a ties b and c (2 of 2 pairs wrong);
    # row 4: b above a and c (2 of 2)
    assert report.ranking_loss == pytest.approx(label_ranking_loss(y, p)) == pytest.approx((0.5 + 1 + 1) / 5)
    assert report.coverage == pytest.approx(coverage_error(y, p)) == pytest.approx((3 + 0 + 2 + 3 + 3) / 5)


@pytest.mark.parametrize("seed", [1, 2])
def test_blocks_of_one_row_equal_the_one_shot_report(seed, monkeypatch):
    y, p = _data(seed)
    known = np.random.default_rng(seed).random(y.shape) > 0.1
    known[:8] = True  # some complete rows
    rules = [Thresholds("per-label", [0.4] * 6), Thresholds("top-k", [0.5] * 6, top_k=2),
             Thresholds("fixed", [0.5] * 6, min_labels=1)]
    one_shot = [r.to_dict() for r in evaluate_rules(y, p, rules, label_names=list("abcdef"), known=known)]
    monkeypatch.setattr(arrays, "ROW_BLOCK_CELLS", 1)  # decisions, rankings and calibration bins
    monkeypatch.setattr(metrics, "AP_BLOCK_CELLS", 1)
    blocks = [r.to_dict() for r in evaluate_rules(y, p, rules, label_names=list("abcdef"), known=known)]
    alone = [evaluate_probabilities(y, p, rule, label_names=list("abcdef"), known=known).to_dict() for rule in rules]
    assert _close(blocks, one_shot) and _close(alone, one_shot)
    assert [r["micro_f1"] for r in blocks] != [r["micro_f1"] for r in blocks[:1] * 3]  # the rules differ


def _close(a, b) -> bool:
    """Equal structures, floats to 1e-12 (summation order differs between blocks)."""
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(_close(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return isinstance(b, list) and len(a) == len(b) and all(_close(x, y) for x, y in zip(a, b))
    if isinstance(a, float) and isinstance(b, float):
        return a == pytest.approx(b, rel=1e-12, abs=1e-12)
    return a == b and type(a) is type(b)


def test_float32_probabilities_score_as_their_float64_values():
    y, p = _data(3)
    p32 = (p * 0.93).astype(np.float32)
    a = evaluate_probabilities(y, p32, [0.4] * 6, label_names=list("abcdef")).to_dict()
    b = evaluate_probabilities(y, p32.astype(np.float64), [0.4] * 6, label_names=list("abcdef")).to_dict()
    assert a == b


def test_pooled_ece_is_the_ece_of_every_known_cell_in_one_set_of_bins():
    y, p = _data(4)
    known = np.random.default_rng(4).random(y.shape) > 0.2
    report = evaluate_probabilities(y, p, [0.5] * 6, label_names=list("abcdef"), known=known)
    assert report.ece == pytest.approx(ece(y[known][:, None], p[known][:, None])[0], abs=1e-12)
    assert [row["ece"] for row in report.per_label] == pytest.approx(ece(y, p, known).tolist())
