"""The objectives registry drives parsing, the help and the fit: a toy objective registered in a test is accepted."""

import numpy as np
import pytest
from sklearn.metrics import jaccard_score

from tagnet.decisions.objectives import REGISTRY, Objective, modes_help, objectives_help, parse_objective, targets_help
from tagnet.decisions.thresholds import decision_mode, fit_decisions
from tagnet.errors import ConfigError


class Jaccard(Objective):
    """A toy objective: each label's threshold with the best Jaccard index tp / (tp + fp + fn)."""

    name = "jaccard"
    syntax = "jaccard"
    modes = ("per-label", "global", "fixed")

    def score(self, tp, predicted, positives):
        return tp / (predicted + positives - tp)


def test_the_built_in_help_is_read_from_the_registry():
    assert objectives_help() == "f1, fbeta:B (B > 0), hamming, precision>=P or recall>=R (P, R in (0, 1])"
    assert targets_help() == "precision>=P or recall>=R"
    assert (modes_help("top-k"), modes_help("fixed")) == ("f1", "f1 or hamming")


def test_a_registered_objective_is_parsed_listed_and_fitted(monkeypatch):
    with pytest.raises(ConfigError, match="'jaccard' is not one of f1, fbeta:B"):
        parse_objective("jaccard")
    monkeypatch.setitem(REGISTRY, "jaccard", Jaccard)
    assert parse_objective(" Jaccard ") == Objective("jaccard") == Jaccard("jaccard")
    assert isinstance(Objective("jaccard"), Jaccard) and str(parse_objective("jaccard")) == "jaccard"
    assert objectives_help() == "f1, fbeta:B (B > 0), hamming, jaccard, precision>=P or recall>=R (P, R in (0, 1])"
    assert modes_help("fixed") == "f1 or hamming or jaccard" and decision_mode("jaccard") == "per-label"
    rng = np.random.default_rng(3)
    y = rng.random((40, 3)) < 0.4
    p = np.clip(y * 0.3 + rng.random((40, 3)) * 0.7, 0, 1)
    fit = fit_decisions(y, p, objective="jaccard", min_positives=1)
    for j in range(3):
        best = max(jaccard_score(y[:, j], p[:, j] >= t) for t in np.r_[np.unique(p[:, j]), np.inf])
        assert jaccard_score(y[:, j], p[:, j] >= fit.thresholds.values[j]) == pytest.approx(best)
    with pytest.raises(ConfigError, match="objective jaccard applies to per-label and global thresholds, not to mode 'top-k'"):
        fit_decisions(y, p, objective="jaccard", mode="top-k")
    monkeypatch.delitem(REGISTRY, "jaccard")
    with pytest.raises(ConfigError, match="is not one of"):
        parse_objective("jaccard")
