"""Tests of threshold fitting, application and JSON round trips."""

import json
import re

import numpy as np
import pytest
from sklearn.metrics import f1_score, fbeta_score, hamming_loss, precision_score, recall_score

from tagnet.errors import ArtifactError, ConfigError
from tagnet.decisions.thresholds import (NEVER, Objective, Thresholds, apply_thresholds, decision_thresholds, fit_decisions,
                               fit_thresholds, parse_objective)


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


# ---- objectives ------------------------------------------------------------------------------
def _brute_force(y, p, score):
    """The best score(prediction) over every threshold that can change the prediction."""
    return max(score(y, p >= t) for t in np.r_[np.unique(p), np.inf])


@pytest.mark.parametrize("text, expected", [
    ("f1", Objective("f1")), (" Hamming ", Objective("hamming")), ("fbeta:0.5", Objective("fbeta", 0.5)),
    ("precision>=0.9", Objective("precision", 0.9)), ("recall >= 1", Objective("recall", 1.0)),
])
def test_parse_objective(text, expected):
    assert parse_objective(text) == expected
    assert parse_objective(str(expected)) == expected


@pytest.mark.parametrize("text", ["f2", "fbeta:0", "fbeta:", "precision>=1.5", "precision>0.9", "recall>=0", "", "accuracy"])
def test_bad_objective_names_the_string_and_the_choices(text):
    with pytest.raises(ConfigError, match=rf"objective {re.escape(repr(text))} is not one of f1, fbeta:B"):
        parse_objective(text)


@pytest.mark.parametrize("beta", [0.5, 2.0])
def test_fbeta_threshold_matches_brute_force(beta):
    rng = np.random.default_rng(3)
    y = (rng.random((90, 3)) < [0.2, 0.5, 0.7]).astype(np.uint8)
    p = np.clip(0.3 * y + rng.random((90, 3)) * 0.8, 0, 1).round(2)
    pred = apply_thresholds(p, fit_thresholds(y, p, objective=f"fbeta:{beta}"))
    for j in range(3):
        best = _brute_force(y[:, j], p[:, j], lambda a, b: fbeta_score(a, b, beta=beta, zero_division=0))
        assert fbeta_score(y[:, j], pred[:, j], beta=beta) == pytest.approx(best)


def test_hamming_threshold_minimises_each_labels_errors_and_thin_labels_get_half():
    rng = np.random.default_rng(4)
    y = (rng.random((70, 3)) < [0.1, 0.5, 0.3]).astype(np.uint8)
    y[:, 2] = 0
    y[:3, 2] = 1  # 3 positives < min_positives
    p = np.clip(0.35 * y + rng.random((70, 3)) * 0.7, 0, 1).round(2)
    th = fit_thresholds(y, p, objective="hamming", min_positives=5)
    assert th.fallback == [2] and th.values[2] == 0.5
    pred = apply_thresholds(p, th)
    for j in range(2):
        fewest = -_brute_force(y[:, j], p[:, j], lambda a, b: -(a != b).sum())
        assert (pred[:, j] != y[:, j]).sum() == fewest
    # a label never worth predicting: the threshold lies above its highest probability
    assert fit_thresholds(np.array([[1], [0], [0]]), np.array([[0.2], [0.4], [0.3]]), objective="hamming",
                          min_positives=1).values == pytest.approx([0.7])


Y6 = np.array([[1], [1], [0], [1], [0], [0]])
P6 = np.array([[0.9], [0.8], [0.7], [0.6], [0.5], [0.4]])


@pytest.mark.parametrize("objective, threshold", [
    ("precision>=0.75", 0.55),  # top 4: precision 3/4, recall 1 (the top 1 and 2 reach it with less recall)
    ("precision>=0.8", 0.75),   # top 2: precision 1, recall 2/3
    ("recall>=0.6", 0.75),      # top 2 reach recall 2/3
    ("recall>=1", 0.55),        # top 4
])
def test_precision_and_recall_targets_hand_case(objective, threshold):
    fit = fit_decisions(Y6, P6, objective=objective, min_positives=1)
    assert fit.thresholds.values == pytest.approx([threshold]) and fit.unreachable == {}


def test_precision_target_gives_the_most_recall_reaching_it():
    rng = np.random.default_rng(5)
    y = (rng.random((120, 3)) < [0.3, 0.5, 0.6]).astype(np.uint8)
    p = np.clip(0.4 * y + rng.random((120, 3)) * 0.7, 0, 1).round(2)
    for target in (0.7, 0.85):
        fit = fit_decisions(y, p, objective=f"precision>={target}")
        assert fit.unreachable == {}
        pred = apply_thresholds(p, fit.thresholds)
        for j in range(3):
            assert precision_score(y[:, j], pred[:, j]) >= target
            best = max(recall_score(y[:, j], p[:, j] >= t) for t in np.unique(p[:, j])
                       if precision_score(y[:, j], p[:, j] >= t) >= target)
            assert recall_score(y[:, j], pred[:, j]) == pytest.approx(best)
        fit = fit_decisions(y, p, objective=f"recall>={target}")
        pred = apply_thresholds(p, fit.thresholds)
        for j in range(3):  # the highest threshold with that recall: the next higher score loses it
            assert recall_score(y[:, j], pred[:, j]) >= target
            lowest = p[pred[:, j], j].min()
            assert recall_score(y[:, j], p[:, j] > lowest) < target


def test_unreachable_precision_is_reported_with_what_the_label_reaches():
    y = np.array([[0, 1], [1, 1], [0, 1], [1, 0], [0, 1], [0, 0]])
    p = np.array([[0.9, 0.9], [0.8, 0.8], [0.7, 0.7], [0.6, 0.6], [0.1, 0.5], [0.2, 0.1]])
    fit = fit_decisions(y, p, objective="precision>=0.9", min_positives=1)
    # label a: precision 0, 1/2, 1/3, 1/2, 2/5 for the top 1..5: best 1/2, with the most recall at the top 4
    assert fit.unreachable == {0: pytest.approx(0.5)}
    assert fit.thresholds.values == pytest.approx([0.4, 0.65])  # a: middle of (0.2, 0.6]; b: the top 3, precision 1
    assert fit.notes(["a", "b"]) == ["label 'a': precision>=0.9 not reached on validation data; the best precision it reaches is 0.500"]


def test_few_positive_labels_use_the_pooled_threshold_for_the_objective():
    rng = np.random.default_rng(6)
    y = (rng.random((80, 3)) < 0.5).astype(np.uint8)
    y[:, 2] = 0
    y[[1, 5], 2] = 1
    p = np.clip(0.4 * y + rng.random((80, 3)) * 0.7, 0, 1)
    fit = fit_decisions(y, p, objective="precision>=0.8", min_positives=5)
    pooled = fit_decisions(y, p, objective="precision>=0.8", mode="global")
    assert fit.thresholds.fallback == [2] and pooled.thresholds.mode == "global"
    assert fit.thresholds.values[2] == pooled.thresholds.values[0]
    assert precision_score(y.ravel(), (p >= pooled.thresholds.values[0]).ravel()) >= 0.8
    # a pooled target no threshold reaches is reported for every label
    assert fit_decisions(y, 1 - p, objective="precision>=0.99", mode="global").unreachable.keys() == {0, 1, 2}


def test_objective_and_confidence_settings_are_checked():
    y, p = np.zeros((4, 2)), np.full((4, 2), 0.3)
    for options, message in [({"objective": "f3"}, "objective 'f3'"),
                             ({"objective": "f1", "confidence": 0.9}, "confidence=0.9"),
                             ({"objective": "precision>=0.9", "confidence": 1.0}, "confidence=1.0"),
                             ({"objective": "precision>=0.9", "confidence": 0.9, "mode": "global"}, "mode 'global'"),
                             ({"objective": "hamming", "mode": "top-k"}, "not to mode 'top-k'"),
                             ({"max_labels": 0}, "max_labels=0"), ({"if_empty": "all"}, "if_empty='all'")]:
        with pytest.raises(ConfigError, match=re.escape(message)):
            fit_decisions(y, p, **options)


# ---- label-set rules -------------------------------------------------------------------------
P4 = np.array([[0.9, 0.8, 0.7, 0.1], [0.2, 0.3, 0.1, 0.45], [0.6, 0.1, 0.6, 0.6], [0.1, 0.2, 0.3, 0.4]])


@pytest.mark.parametrize("rules, expected", [
    ({}, [[1, 1, 1, 0], [0, 0, 0, 0], [1, 0, 1, 1], [0, 0, 0, 0]]),
    ({"max_labels": 2}, [[1, 1, 0, 0], [0, 0, 0, 0], [1, 0, 1, 0], [0, 0, 0, 0]]),  # ties: lower index first
    ({"if_empty": "top1"}, [[1, 1, 1, 0], [0, 0, 0, 1], [1, 0, 1, 1], [0, 0, 0, 1]]),
    ({"min_labels": 1}, [[1, 1, 1, 0], [0, 0, 0, 1], [1, 0, 1, 1], [0, 0, 0, 1]]),
    ({"min_labels": 2, "max_labels": 2}, [[1, 1, 0, 0], [0, 1, 0, 1], [1, 0, 1, 0], [0, 0, 1, 1]]),
    ({"min_labels": 4}, [[1, 1, 1, 1]] * 4),
])
def test_label_set_rules(rules, expected):
    th = Thresholds("per-label", [0.5] * 4, **rules)
    assert apply_thresholds(P4, th).astype(int).tolist() == expected
    assert Thresholds.from_dict(json.loads(json.dumps(th.to_dict())), num_labels=4) == th
    assert decision_thresholds(th, 0.5) == Thresholds("fixed", [0.5] * 4, **rules)


def test_rules_with_top_k_and_never_predicted_labels():
    assert apply_thresholds(P4, Thresholds("top-k", [0.0] * 4, top_k=3, max_labels=2)).sum(axis=1).tolist() == [2] * 4
    never = Thresholds("per-label", [0.5, NEVER, 0.5, 0.5], min_labels=2)
    pred = apply_thresholds(np.ones((2, 4)) * [[1.0], [0.0]], never)
    assert pred.tolist() == [[True, False, True, True], [True, False, True, False]]


def test_old_thresholds_without_rules_still_load():
    th = Thresholds.from_dict({"mode": "per-label", "values": [0.3, 0.6], "top_k": 1, "fallback": [1]}, num_labels=2)
    assert (th.min_labels, th.max_labels, th.if_empty) == (0, None, "none")
    assert th.to_dict() == {"mode": "per-label", "values": [0.3, 0.6], "top_k": 1, "fallback": [1]}
    assert Thresholds.from_dict({"mode": "per-label", "values": [0.3, NEVER]}).values == [0.3, NEVER]


@pytest.mark.parametrize("rules, message", [
    ({"min_labels": 3}, "min_labels=3"), ({"min_labels": -1}, "min_labels=-1"), ({"min_labels": True}, "min_labels=True"),
    ({"max_labels": 0}, "max_labels=0"), ({"min_labels": 2, "max_labels": 1}, "max_labels=1"),
    ({"if_empty": "top2"}, "if_empty='top2'"),
])
def test_bad_rules_are_rejected(rules, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        Thresholds("per-label", [0.5, 0.5], **rules)
    with pytest.raises(ArtifactError, match=re.escape(message)):
        Thresholds.from_dict({"mode": "per-label", "values": [0.5, 0.5], **rules}, source="run/tagnet.json")
    with pytest.raises(ArtifactError, match=r"values\[0\]=1.5"):
        Thresholds.from_dict({"mode": "per-label", "values": [1.5, 0.5]})


def test_per_label_f1_thresholds_of_every_label_at_once_reach_each_labels_best_f1():
    rng = np.random.default_rng(7)
    y = rng.random((40, 30)) < 0.3
    p = np.round(rng.random((40, 30)), 1)  # many ties
    known = rng.random((40, 30)) < 0.9
    fitted = fit_decisions(y, p, objective="f1", min_positives=1, known=known).thresholds
    for j in range(30):
        rows = known[:, j]
        if not y[rows, j].any():
            continue
        cuts = np.r_[np.unique(p[rows, j]), 2.0]
        best = max(f1_score(y[rows, j], p[rows, j] >= t, zero_division=0) for t in cuts)
        assert f1_score(y[rows, j], p[rows, j] >= fitted.values[j], zero_division=0) == pytest.approx(best)
