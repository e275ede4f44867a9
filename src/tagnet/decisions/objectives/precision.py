"""The precision target: the most recall with precision >= P, optionally guaranteed (Learn-then-Test)."""

from __future__ import annotations

import numpy as np

from tagnet.decisions.objectives.base import GRID, GRID_LOGITS, NEVER, Target, reaching, upper_bound

# The precision tests start at each whole logit from 6 to -2 (p from 0.998 to 0.12), where the thresholds for
# precision targets of calibrated probabilities lie; 1 - confidence is split evenly between them.
STARTS = np.flatnonzero(np.isin(GRID_LOGITS, np.arange(6.0, -3.0, -1.0)))


class Precision(Target):
    """precision>=P: of the rules reaching P (or, when none does, of those with the best precision), the one with the
    most true positives, the fewest predicted among those."""

    name = "precision"
    letter = "P"
    safe = "never predicted"

    def choose(self, tp: np.ndarray, predicted: np.ndarray, positives: np.ndarray,
               valid: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Each label's rule, and its best precision where P is missed (NaN elsewhere)."""
        with np.errstate(invalid="ignore", divide="ignore"):
            precision = np.where(valid, tp / predicted, -np.inf)
        precision[0] = np.where(valid[0], 0.0, -np.inf)
        ok = precision >= self.value - 1e-12
        reached = ok.any(axis=0)
        best = precision.max(axis=0)
        ok = np.where(reached, ok, precision >= best - 1e-12)
        most = np.where(ok, tp, -1).max(axis=0)
        return np.argmax(ok & (tp == most), axis=0), np.where(reached, np.nan, best)

    def certify(self, y: np.ndarray, scores: np.ndarray, known: np.ndarray,
                delta: float) -> tuple[np.ndarray, np.ndarray]:
        """Each label's lowest grid threshold whose false-discovery rate is certified <= 1 - P with probability
        >= 1 - delta, or NEVER and the best precision certified at one start's level (NaN elsewhere) when none is.

        Learn-then-Test with the fallback procedure (Wiens 2003): thresholds are tested from high to low,
        each start of STARTS brings delta / len(STARTS); a threshold is certified when the Clopper-Pearson
        bound on its false-discovery rate at the level it holds is <= 1 - P, and a certified threshold
        passes its level on to the next one. One start at the top alone would stop at once: with few
        predicted items no bound is small. Every label at once, one grid threshold after another."""
        predicted, false = reaching(scores, known), reaching(scores, known & ~y)
        share = delta / len(STARTS)
        weight = np.isin(np.arange(len(GRID)), STARTS).astype(int)
        certified = np.zeros(predicted.shape, dtype=bool)
        held = np.zeros(predicted.shape[1], dtype=int)  # the number of starts' levels each label holds
        for i in range(len(GRID)):
            held = np.where(certified[i - 1], held, 0) + weight[i] if i else np.full_like(held, weight[0])
            on = np.flatnonzero(held)
            certified[i, on] = upper_bound(false[i, on], predicted[i, on], held[on] * share) <= 1 - self.value + 1e-12
        some = certified.any(axis=0)
        lowest = len(GRID) - 1 - np.argmax(certified[::-1], axis=0)
        best = np.full(len(some), np.nan)
        best[~some] = np.maximum(0.0, 1 - upper_bound(false[:, ~some], predicted[:, ~some], share).min(axis=0))
        return np.where(some, GRID[lowest], NEVER), best
