"""The recall target: the highest threshold with recall >= R, optionally guaranteed (fixed-sequence testing)."""

from __future__ import annotations

import numpy as np

from tagnet.decisions.objectives.base import GRID, Target, upper_bound


class Recall(Target):
    """recall>=R: the fewest predicted items reaching R."""

    name = "recall"
    letter = "R"
    safe = "predicted for every item"

    def choose(self, tp: np.ndarray, predicted: np.ndarray, positives: np.ndarray,
               valid: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Each label's first rule reaching R (predicting every item always does)."""
        return np.argmax(valid & (tp >= self.value * positives - 1e-9), axis=0), np.full(tp.shape[1], np.nan)

    def certify(self, y: np.ndarray, scores: np.ndarray, delta: float) -> tuple[float, float | None]:
        """The highest grid threshold whose miss rate (1 - recall) is certified <= 1 - R with
        probability >= 1 - delta (fixed-sequence testing from the lowest threshold up: the miss rate only
        grows with the threshold), or (0, the best certified recall) when none is."""
        grid = GRID[::-1]
        missed = (scores[None, :] < grid[:, None])[:, y].sum(axis=1)
        bound = upper_bound(missed, np.full(len(grid), y.sum()), delta)
        fail = np.flatnonzero(bound > 1 - self.value + 1e-12)
        last = (fail[0] if len(fail) else len(grid)) - 1
        if last >= 0:
            return float(grid[last]), None
        return 0.0, float(1 - bound[0])
