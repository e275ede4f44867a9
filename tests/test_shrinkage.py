"""Tests of per-label thresholds shrunk toward the global one (tagnet.decisions.shrinkage)."""

import numpy as np
import pytest
from sklearn.metrics import f1_score, fbeta_score
from sklearn.model_selection import KFold

from tagnet.config.settings import TrainConfig
from tagnet.decisions.objectives import parse_objective
from tagnet.decisions.shrinkage import STRENGTHS, choose_strength, micro_macro, parse_shrinkage, shrunk
from tagnet.decisions.thresholds import NEVER, fit_decisions
from tagnet.errors import ConfigError


def _imbalanced(seed=0, rows=400):
    """One common label and three rare ones whose scores are weak: per-label F1 thresholds of the rare ones drop low."""
    rng = np.random.default_rng(seed)
    y = (rng.random((rows, 4)) < [0.5, 0.04, 0.04, 0.04]).astype(np.uint8)
    p = np.clip(0.45 * y + rng.random((rows, 4)) * [0.6, 0.8, 0.8, 0.8], 0, 1)
    return y, p


def test_shrunk_hand_case():
    # n t + m g over n + m: (30 * 0.2 + 10 * 0.6) / 40 = 0.3; n = 0 gives g; NEVER stays; m = inf gives g
    values = shrunk(np.array([0.2, 0.8, NEVER]), 0.6, np.array([30, 0, 5]), 10.0)
    assert values == pytest.approx([0.3, 0.6, NEVER])
    assert shrunk(np.array([0.2, 0.8]), 0.6, np.array([30, 7]), np.inf) == pytest.approx([0.6, 0.6])
    assert shrunk(np.array([0.2, 0.8]), 0.6, np.array([30, 7]), 0.0) == pytest.approx([0.2, 0.8])


def test_fit_with_strengths_zero_and_inf_is_per_label_and_global():
    y, p = _imbalanced()
    per_label = fit_decisions(y, p, min_positives=1)
    glob = fit_decisions(y, p, mode="global")
    assert fit_decisions(y, p, min_positives=1, shrinkage=0).thresholds.values == per_label.thresholds.values
    inf = fit_decisions(y, p, min_positives=1, shrinkage="inf")
    assert inf.thresholds.values == pytest.approx(glob.thresholds.values)
    assert inf.thresholds.mode == "per-label" and inf.shrinkage == np.inf and per_label.shrinkage is None
    m = fit_decisions(y, p, min_positives=1, shrinkage=50).thresholds.values
    n = y.sum(axis=0)
    expected = (n * np.array(per_label.thresholds.values) + 50 * glob.thresholds.values[0]) / (n + 50)
    assert m == pytest.approx(expected)


def test_micro_macro_matches_scikit_learn():
    y, p = _imbalanced(1)
    pred = p >= 0.5
    known = np.ones_like(pred)
    f1 = micro_macro(parse_objective("f1"), y, pred, known)
    assert f1 == pytest.approx((f1_score(y, pred, average="micro"), f1_score(y, pred, average="macro")))
    f2 = micro_macro(parse_objective("fbeta:2"), y, pred, known)
    assert f2 == pytest.approx((fbeta_score(y, pred, beta=2, average="micro"),
                                fbeta_score(y, pred, beta=2, average="macro")))
    known[:200, 0] = False  # unknown cells count nowhere
    assert micro_macro(parse_objective("f1"), y, pred, known)[0] == pytest.approx(
        f1_score(np.r_[y[200:, 0], y[:, 1:].ravel()], np.r_[pred[200:, 0], pred[:, 1:].ravel()]))


def test_auto_picks_the_strength_with_the_best_cross_fitted_mean_of_micro_and_macro_f1():
    y, p = _imbalanced(2, rows=600)
    known = np.ones(y.shape, dtype=bool)

    def fit(t, q, k):
        return (np.array(fit_decisions(t, q, known=k, min_positives=1).thresholds.values),
                fit_decisions(t, q, known=k, mode="global").thresholds.values[0])

    chosen = choose_strength(y, p, known, parse_objective("f1"), fit)
    scores = []  # the same cross-fitting, scored by scikit-learn
    for strength in STRENGTHS:
        pred = np.zeros(y.shape, dtype=bool)
        for train, held in KFold(5, shuffle=True, random_state=0).split(p):
            per_label, glob = fit(y[train], p[train], known[train])
            pred[held] = p[held] >= shrunk(per_label, glob, y[train].sum(axis=0), strength)
        scores.append((f1_score(y, pred, average="micro") + f1_score(y, pred, average="macro")) / 2)
    assert chosen == STRENGTHS[int(np.argmax(scores))]
    assert chosen > 0 and max(scores) > scores[0] + 0.01  # the rare labels' low per-label thresholds lose out of fold
    fitted = fit_decisions(y, p, min_positives=1, shrinkage="auto")
    assert fitted.shrinkage == chosen
    assert fitted.notes(["a", "b", "c", "d"]) == [
        f"per-label f1 thresholds shrunk toward the global one with strength m={chosen:g} ((n t + m t_global) / "
        "(n + m), n a label's validation positives)"]


def test_shrinkage_settings_are_checked():
    assert parse_shrinkage("auto") == "auto" and parse_shrinkage("100") == 100.0 and parse_shrinkage(0) == 0.0
    for bad in ("-1", "many", True, None, -0.5):
        with pytest.raises(ConfigError, match="threshold_shrinkage"):
            parse_shrinkage(bad)
    y, p = _imbalanced()
    with pytest.raises(ConfigError, match="per-label thresholds of objective f1 or fbeta"):
        fit_decisions(y, p, mode="global", shrinkage=10)
    with pytest.raises(ConfigError, match="per-label thresholds of objective f1 or fbeta"):
        fit_decisions(y, p, objective="hamming", mode="per-label", shrinkage=10)
    with pytest.raises(ConfigError, match="threshold_shrinkage"):
        TrainConfig(threshold_shrinkage="auto", objective="hamming").validate()
    TrainConfig(threshold_shrinkage="auto").validate()
