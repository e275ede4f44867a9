"""Tests of threshold fitting, application and JSON round trips."""

import json

import numpy as np
import pytest
from sklearn.metrics import f1_score, hamming_loss

from tagnet.errors import ArtifactError, ConfigError
from tagnet.thresholds import Thresholds, apply_thresholds, decision_thresholds, fit_thresholds


def _best_brute_force_f1(y, p):
    """Best F1 of (p >= t) over every threshold that can change the prediction."""
    candidates = np.r_[np.unique(p), np.inf]
    return max(f1_score(y, p >= t, zero_division=0) for t in candidates)


def test_per_label_threshold_hand_case():
    y = np.array([[1], [1], [0], [1], [0]])
    p = np.array([[0.9], [0.8], [0.7], [0.6], [0.1]])
    # predicting the top 4 gives F1 = 6/7, the best; the threshold is the middle of (0.1, 0.6]
    th = fit_thresholds(y, p, min_positives=1)
    assert th.mode == "per-label"
    assert th.values == pytest.approx([0.35])
    assert f1_score(y[:, 0], apply_thresholds(p, th)[:, 0]) == pytest.approx(6 / 7)


def test_per_label_threshold_matches_brute_force():
    rng = np.random.default_rng(0)
    y = (rng.random((80, 4)) < [0.2, 0.4, 0.6, 0.8]).astype(np.uint8)
    p = np.clip(0.3 * y + rng.random((80, 4)) * 0.8, 0, 1).round(2)  # rounding makes ties
    th = fit_thresholds(y, p, min_positives=5)
    assert th.fallback == []
    pred = apply_thresholds(p, th)
    for j in range(4):
        assert f1_score(y[:, j], pred[:, j]) == pytest.approx(_best_brute_force_f1(y[:, j], p[:, j]))


def test_rare_label_falls_back_to_global_threshold():
    rng = np.random.default_rng(1)
    y = (rng.random((60, 3)) < 0.5).astype(np.uint8)
    y[:, 2] = 0
    y[[3, 7], 2] = 1  # two positives < min_positives
    p = np.clip(0.4 * y + rng.random((60, 3)) * 0.7, 0, 1)
    th = fit_thresholds(y, p, min_positives=5)
    glob = fit_thresholds(y, p, mode="global")
    assert th.fallback == [2]
    assert th.values[2] == glob.values[0]
    assert th.values[0] != glob.values[0]
    # the global threshold maximises micro-F1 over all cells
    assert f1_score(y.ravel(), (p >= glob.values[0]).ravel()) == pytest.approx(_best_brute_force_f1(y.ravel(), p.ravel()))
    assert glob.mode == "global" and len(set(glob.values)) == 1


def test_no_positive_at_all_gives_default_threshold():
    th = fit_thresholds(np.zeros((4, 2)), np.full((4, 2), 0.3))
    assert th.values == [0.5, 0.5] and th.fallback == [0, 1]


def test_unknown_cells_are_ignored():
    rng = np.random.default_rng(2)
    y = (rng.random((50, 2)) < 0.5).astype(np.uint8)
    p = np.clip(0.4 * y + rng.random((50, 2)) * 0.7, 0, 1)
    known = rng.random((50, 2)) < 0.7
    th = fit_thresholds(y, p, known=known, min_positives=3)
    y2, p2 = y.copy(), p.copy()
    y2[~known] = 1 - y2[~known]
    p2[~known] = rng.random((~known).sum())
    assert fit_thresholds(y2, p2, known=known, min_positives=3) == th
    for j in range(2):
        rows = known[:, j]
        assert f1_score(y[rows, j], p[rows, j] >= th.values[j]) == pytest.approx(_best_brute_force_f1(y[rows, j], p[rows, j]))


def test_top_k_predicts_exactly_k_labels():
    p = np.array([[0.1, 0.9, 0.5], [0.3, 0.2, 0.1], [0.4, 0.4, 0.4]])
    th = fit_thresholds(np.zeros((3, 3)), p, mode="top-k", top_k=2)
    assert th.mode == "top-k" and th.top_k == 2
    pred = apply_thresholds(p, th)
    assert pred.tolist() == [[False, True, True], [True, True, False], [True, True, False]]
    assert apply_thresholds(p, Thresholds("top-k", [0.0] * 3, top_k=5)).all()


def test_fixed_mode_ignores_the_data_and_can_lower_hamming_loss():
    # one rare label scored low: F1-fitted thresholds predict it more often, p >= 0.5 errs less per cell
    y = np.array([[1, 0], [0, 1], [0, 0], [0, 0], [1, 0], [0, 0]])
    p = np.array([[0.9, 0.4], [0.2, 0.3], [0.1, 0.1], [0.4, 0.35], [0.8, 0.2], [0.3, 0.05]])
    fixed = fit_thresholds(y, p, mode="fixed")
    assert fixed == fit_thresholds(np.zeros_like(y), np.zeros_like(p), mode="fixed") == Thresholds("fixed", [0.5, 0.5])
    assert fit_thresholds(y, p, mode="fixed", fixed=0.3).values == [0.3, 0.3]
    assert apply_thresholds(p, fixed).tolist() == (p >= 0.5).tolist()
    per_label = fit_thresholds(y, p, min_positives=1)
    assert per_label.values == pytest.approx([0.6, 0.25])  # label 2: the 3 items >= 0.3 give the best F1, 0.5
    assert hamming_loss(y, apply_thresholds(p, fixed)) == pytest.approx(1 / 12)
    assert hamming_loss(y, apply_thresholds(p, per_label)) == pytest.approx(2 / 12)
    assert decision_thresholds(per_label, None) is per_label
    assert decision_thresholds(per_label, 0.25) == Thresholds("fixed", [0.25, 0.25])


def test_apply_with_plain_array_and_wrong_length():
    p = np.array([[0.2, 0.6], [0.5, 0.4]])
    assert apply_thresholds(p, [0.5, 0.5]).tolist() == [[False, True], [True, False]]
    with pytest.raises(ConfigError, match="3 values for 2 labels"):
        apply_thresholds(p, [0.5, 0.5, 0.5])


def test_json_round_trip():
    th = Thresholds("per-label", [0.25, 0.75], top_k=1, fallback=[1])
    assert Thresholds.from_dict(json.loads(json.dumps(th.to_dict())), num_labels=2) == th


@pytest.mark.parametrize("data, message", [
    ([0.5], "expected an object"),
    ({"values": [0.5]}, "missing key"),
    ({"mode": "best", "values": [0.5]}, "mode='best'"),
    ({"mode": "global", "values": [1.5]}, r"values\[0\]=1.5"),
    ({"mode": "global", "values": ["a"]}, r"values\[0\]='a'"),
    ({"mode": "top-k", "values": [0.0], "top_k": 0}, "top_k=0"),
    ({"mode": "global", "values": [0.5, 0.5]}, "2 threshold values for 3 labels"),
    ({"mode": "per-label", "values": [0.5, 0.5, 0.5], "fallback": [7]}, "fallback"),
])
def test_from_dict_rejects_bad_data(data, message):
    with pytest.raises(ArtifactError, match=message):
        Thresholds.from_dict(data, num_labels=3, source="run/tagnet.json")


def test_bad_settings_raise_config_error():
    with pytest.raises(ConfigError):
        Thresholds("median", [0.5])
    with pytest.raises(ConfigError, match="mode"):
        fit_thresholds(np.zeros((2, 1)), np.zeros((2, 1)), mode="median")
    with pytest.raises(ConfigError, match="shape"):
        fit_thresholds(np.zeros((2, 1)), np.zeros((3, 1)))
