"""Tests of thresholds fitted with a guarantee (precision>=P / recall>=R with a confidence)."""

import numpy as np
import pytest
from scipy.stats import binom

from tagnet.decisions.thresholds import NEVER, apply_thresholds, fit_decisions

STARTS = 9  # the precision tests start at every whole logit from 6 to -2, each at level (1 - confidence) / 9


def test_separated_label_is_certified_down_to_the_lowest_clean_grid_threshold():
    y = np.r_[np.ones(100), np.zeros(100)][:, None]
    p = np.r_[np.full(100, 0.9), np.full(100, 0.1)][:, None]
    fit = fit_decisions(y, p, objective="precision>=0.9", confidence=0.95)
    # 0 false of 100 predicted: the bound 1 - (0.05/17)^(1/100) = 0.057 <= 0.1 at every threshold in (0.1, 0.9];
    # the grid (steps of 0.05 in logit) is lowest there at logit -2.15, just above logit(0.1) = -2.197
    assert binom.cdf(0, 100, 0.1) <= 0.05 / STARTS
    assert fit.thresholds.values == pytest.approx([1 / (1 + np.exp(2.15))])
    assert fit.unreachable == {} and fit.thresholds.fallback == []


def test_too_few_items_cannot_be_certified_and_the_label_is_never_predicted():
    y = np.r_[np.ones(10), np.zeros(10)][:, None]
    p = np.r_[np.full(10, 0.9), np.full(10, 0.1)][:, None]
    fit = fit_decisions(y, p, objective="precision>=0.9", confidence=0.95)
    assert fit.thresholds.values == [NEVER]
    assert not apply_thresholds(np.ones((3, 1)), fit.thresholds).any()
    # the best certified precision: the Clopper-Pearson lower bound from 10 of 10, 1 - upper bound on 0 of 10
    best = fit.unreachable[0]
    assert best == pytest.approx((0.05 / STARTS) ** (1 / 10))
    assert binom.cdf(0, 10, 1 - best) == pytest.approx(0.05 / STARTS)
    assert fit.notes(["cat"]) == ["label 'cat': precision>=0.9 cannot be guaranteed with 95% confidence "
                                  f"(the best certified precision is {best:.3f}); never predicted"]


def test_recall_guarantee_and_its_safe_fallback():
    y = np.r_[np.ones(100), np.zeros(100)][:, None]
    p = np.r_[np.full(100, 0.9), np.full(100, 0.1)][:, None]
    fit = fit_decisions(y, p, objective="recall>=0.95", confidence=0.9)
    assert fit.thresholds.values == pytest.approx([1 / (1 + np.exp(-2.15))])  # the highest grid value <= 0.9
    few = fit_decisions(y[95:105], p[95:105], objective="recall>=0.95", confidence=0.9)
    assert few.thresholds.values == [0.0] and few.unreachable == {0: pytest.approx(0.1 ** (1 / 5))}
    assert "predicted for every item" in few.notes(["cat"])[0]


def _calibrated(rng, n):
    """Scores uniform on (0, 1) with P(y = 1 | p) = p: precision(t) = (1 + t) / 2, recall(t) = 1 - t^2."""
    p = rng.random(n)
    return (rng.random(n) < p), p


def test_guarantees_hold_on_new_data_in_at_least_the_confidence_share_of_draws():
    rng = np.random.default_rng(0)
    draws = [_calibrated(rng, 600) for _ in range(200)]
    precision_t = np.array([fit_decisions(y[:, None], p[:, None], objective="precision>=0.8", confidence=0.9)
                            .thresholds.values[0] for y, p in draws])
    recall_t = np.array([fit_decisions(y[:, None], p[:, None], objective="recall>=0.8", confidence=0.9)
                         .thresholds.values[0] for y, p in draws])
    assert ((1 + precision_t) / 2 >= 0.8).mean() >= 0.9  # the population precision of each chosen threshold
    assert (1 - recall_t ** 2 >= 0.8).mean() >= 0.9
    # and the thresholds are useful, not trivially safe: precision 0.8 needs t >= 0.6, recall 0.8 t <= 0.447
    assert (precision_t == NEVER).mean() <= 0.15 and np.median(precision_t) < 0.8
    assert (recall_t == 0).mean() == 0 and np.median(recall_t) > 0.3
