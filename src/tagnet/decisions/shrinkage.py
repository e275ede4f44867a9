"""Per-label thresholds shrunk toward the one global threshold, each label by its count of positives.

A label's F-optimal threshold is fitted on its own positives only; with few of them (or a flat F curve) it is noisy,
and per-label F1 thresholds of rare labels drop low: they serve macro-F1 and cost micro-F1. The global threshold
(the best for the pooled, micro, score) is fitted on every cell. Shrinkage weighs the two as an empirical-Bayes
estimate would: t_j = (n_j t_j + m t_global) / (n_j + m), n_j the label's known positives, m the strength
(0: per-label, inf: global). "auto" chooses m from STRENGTHS by cross-fitting on the fitting rows themselves (the
thresholds of each fold fitted on the other folds), scored by the mean of the objective's micro and macro value, so
neither average is given up for the other.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from tagnet.decisions.objectives import Objective
from tagnet.errors import ConfigError

STRENGTHS = (0.0, 10.0, 30.0, 100.0, 300.0, 1000.0, np.inf)  # fixed a priori (powers of ~3), not fitted to a set
FOLDS = 5
SHRINKABLE = ("f1", "fbeta")  # objectives scored per rule from counts (tp, predicted, positives)
Fit = Callable[[np.ndarray, np.ndarray, np.ndarray], tuple[np.ndarray, float]]  # (per-label values, global one)


def shrinkage_problem(shrinkage: object, goal: Objective, mode: str, confidence: float | None) -> str | None:
    """Why `shrinkage` cannot apply to thresholds of objective `goal` in `mode` with `confidence`, or None: it shrinks
    per-label thresholds of SHRINKABLE objectives without confidence only."""
    if shrinkage is None or (mode == "per-label" and goal.kind in SHRINKABLE and confidence is None):
        return None
    return (f"threshold_shrinkage={shrinkage!r} applies to per-label thresholds of objective "
            f"{' or '.join(SHRINKABLE)} without confidence (got objective {goal}, mode {mode!r})")


def parse_shrinkage(value: object, *, source: str = "threshold_shrinkage") -> float | str:
    """A shrinkage strength: a number >= 0 (inf allowed; also as text, e.g. from --set) or "auto". Raises ConfigError
    otherwise."""
    if isinstance(value, str) and value.strip().lower() == "auto":
        return "auto"
    try:
        strength = float(value) if isinstance(value, (str, int, float)) and not isinstance(value, bool) else np.nan
    except ValueError:
        strength = np.nan
    if not strength >= 0:
        raise ConfigError(f"{source}={value!r}: expected a number >= 0 (0: per-label, inf: global) or auto")
    return strength


def shrunk(per_label: np.ndarray, global_t: float, positives: np.ndarray, strength: float) -> np.ndarray:
    """(n_j t_j + m t_global) / (n_j + m) per label; m = inf gives the global threshold, a label with no positive
    (n_j = 0) the global one too. Thresholds above 1 (never predicted) stay as they are."""
    per_label = np.asarray(per_label, dtype=np.float64)
    n = np.asarray(positives, dtype=np.float64)
    if np.isinf(strength):
        weight = np.zeros_like(n)
    else:
        with np.errstate(invalid="ignore"):
            weight = np.where(n + strength > 0, n / np.maximum(n + strength, 1e-300), 0.0)
    return np.where(per_label > 1.0, per_label, weight * per_label + (1 - weight) * global_t)


def micro_macro(objective: Objective, targets: np.ndarray, predicted: np.ndarray,
                known: np.ndarray) -> tuple[float, float]:
    """The objective's value pooled over every known cell (micro) and averaged over labels with a known positive or
    prediction (macro)."""
    y, pred = targets.astype(bool) & known, predicted.astype(bool) & known
    tp, count, positives = (pred & y).sum(0), pred.sum(0), y.sum(0)
    micro = float(objective.score(np.array([tp.sum()]), np.array([count.sum()]), np.array([positives.sum()]))[0])
    seen = (count + positives) > 0
    with np.errstate(invalid="ignore", divide="ignore"):
        macro = objective.score(tp[seen], count[seen], positives[seen])
    return micro, float(np.mean(macro)) if seen.any() else 0.0


def choose_strength(targets: np.ndarray, probs: np.ndarray, known: np.ndarray, objective: Objective,
                    fit: Fit) -> float:
    """The strength of STRENGTHS whose cross-fitted predictions (FOLDS folds of the rows, each fold's thresholds from
    `fit` on the others) score best by the mean of micro and macro objective; ties go to the weaker shrinkage."""
    from sklearn.model_selection import KFold  # here: scikit-learn would add 1.5 s to every command's start

    y = targets.astype(bool)
    if len(y) < 2 * FOLDS:
        return 0.0
    predicted = np.zeros((len(STRENGTHS),) + y.shape, dtype=bool)
    for train, held in KFold(FOLDS, shuffle=True, random_state=0).split(probs):
        per_label, global_t = fit(targets[train], probs[train], known[train])
        positives = (y[train] & known[train]).sum(0)
        for s, strength in enumerate(STRENGTHS):
            predicted[s, held] = probs[held] >= shrunk(per_label, global_t, positives, strength)[None, :]
    scores = [np.mean(micro_macro(objective, y, predicted[s], known)) for s in range(len(STRENGTHS))]
    return STRENGTHS[int(np.argmax(scores))]
