"""The Hamming objective: the fewest errors (false positives plus false negatives)."""

from __future__ import annotations

import numpy as np

from tagnet.decisions.objectives.base import Objective


class Hamming(Objective):
    """hamming: the fewest errors; by default the fixed p >= 0.5, which minimises the expected Hamming loss of
    calibrated probabilities (per-label thresholds fitted for errors raise it on unseen data)."""

    name = "hamming"
    syntax = "hamming"
    mode = "fixed"
    modes = ("per-label", "global", "fixed")
    metric = "hamming_loss"
    fallback = 0.5

    def score(self, tp: np.ndarray, predicted: np.ndarray, positives: np.ndarray) -> np.ndarray:
        """Minus the errors of every rule."""
        return -((predicted - tp) + (positives - tp)).astype(np.float64)
