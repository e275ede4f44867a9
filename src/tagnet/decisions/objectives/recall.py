"""The recall target: the highest threshold with recall >= R, optionally guaranteed (fixed-sequence testing)."""

from __future__ import annotations

import numpy as np

from tagnet.decisions.objectives.base import GRID, Target, reaching, upper_bound


class Recall(Target):
    """recall>=R: the fewest predicted items reaching R."""

    name = "recall"
    letter = "R"
    safe = "predicted for every item"

    def choose(self, tp: np.ndarray, predicted: np.ndarray, positives: np.ndarray,
               valid: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Each label's first rule reaching R (predicting every item always does)."""
        return np.argmax(valid & (tp >= self.value * positives - 1e-9), axis=0), np.full(tp.shape[1], np.nan)

    def certify(self, y: np.ndarray, scores: np.ndarray, known: np.ndarray,
                delta: float) -> tuple[np.ndarray, np.ndarray]:
        """Each label's highest grid threshold whose miss rate (1 - recall) is certified <= 1 - R with
        probability >= 1 - delta (fixed-sequence testing from the lowest threshold up: the miss rate only
        grows with the threshold), or 0 and the best certified recall (NaN elsewhere) when none is."""
        found = reaching(scores, known & y)[::-1]  # positives reaching each threshold, lowest threshold first
        positives = (known & y).sum(axis=0)
        bound = upper_bound(positives - found, np.broadcast_to(positives, found.shape), delta)
        fail = bound > 1 - self.value + 1e-12
        last = np.where(fail.any(axis=0), np.argmax(fail, axis=0), len(GRID)) - 1
        return np.where(last >= 0, GRID[::-1][np.maximum(last, 0)], 0.0), np.where(last >= 0, np.nan, 1 - bound[0])
