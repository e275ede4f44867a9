"""The F-beta objective: recall weighted beta times as much as precision."""

from __future__ import annotations

import re

import numpy as np

from tagnet.decisions.objectives.base import NUMBER, Objective


class FBeta(Objective):
    """fbeta:B (B > 0): each label's threshold with the best F-beta."""

    name = "fbeta"
    syntax = "fbeta:B (B > 0)"

    def __str__(self) -> str:
        return f"fbeta:{self.value:g}"

    @classmethod
    def parse(cls, spec: str) -> Objective | None:
        """"fbeta:B" with B > 0."""
        match = re.fullmatch("fbeta:" + NUMBER, spec)
        return cls(cls.name, float(match.group(1))) if match and float(match.group(1)) > 0 else None

    def score(self, tp: np.ndarray, predicted: np.ndarray, positives: np.ndarray) -> np.ndarray:
        """F-beta of every rule."""
        b2 = self.value ** 2
        return (1 + b2) * tp / (predicted + b2 * positives)
