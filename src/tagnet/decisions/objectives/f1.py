"""The F1 objective: the harmonic mean of precision and recall."""

from __future__ import annotations

import numpy as np

from tagnet.decisions.objectives.base import Objective


class F1(Objective):
    """f1: each label's threshold with the best F1; the only objective of top-k thresholds."""

    name = "f1"
    syntax = "f1"
    modes = ("per-label", "global", "top-k", "fixed")
    metric = "micro_f1"

    def score(self, tp: np.ndarray, predicted: np.ndarray, positives: np.ndarray) -> np.ndarray:
        """F1 of every rule."""
        return 2 * tp / (predicted + positives)
