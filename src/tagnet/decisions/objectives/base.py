"""What every threshold objective declares, and the bounds the guaranteed (target) objectives share."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from tagnet.errors import ConfigError

NEVER = 2.0  # a threshold above every probability: the label is never predicted
NUMBER = r"([0-9]*\.?[0-9]+(?:e[-+]?[0-9]+)?)"


@dataclass(frozen=True)
class Objective:
    """What fitted thresholds optimise: a registered kind (tagnet.decisions.objectives.REGISTRY) and its number.

    Objective(kind, value) is an instance of the class registered for `kind`. A subclass declares its `syntax`
    (for the help), how it parses a spec (`parse`), its default threshold `mode`, the `modes` it applies to, the
    `metric` --select compares by default, `fallback` (the threshold of labels with too few positives; None: the
    global one) and how the best rule of every label is chosen (`score`, or `choose` for a rule that is not the
    best of a score).
    """

    kind: str
    value: float | None = None

    name: ClassVar[str]
    syntax: ClassVar[str]
    mode: ClassVar[str] = "per-label"
    modes: ClassVar[tuple[str, ...]] = ("per-label", "global")
    metric: ClassVar[str] = "mAP"
    fallback: ClassVar[float | None] = None

    def __new__(cls, kind: str = "", value: float | None = None) -> "Objective":
        """The registered objective class of `kind` when called as Objective(kind, value)."""
        if cls is Objective:
            from tagnet.decisions.objectives import REGISTRY

            if kind not in REGISTRY:
                raise ConfigError(f"objective kind {kind!r} is not one of {list(REGISTRY)}")
            cls = REGISTRY[kind]
        return super().__new__(cls)

    def __str__(self) -> str:
        return self.kind

    @classmethod
    def parse(cls, spec: str) -> "Objective | None":
        """The objective of a normalised spec (lower case, no spaces), or None when it is not this kind's."""
        return cls(cls.name) if spec == cls.name else None

    def choose(self, tp: np.ndarray, predicted: np.ndarray, positives: np.ndarray,
               valid: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Each label's rule and, for targets, the best value where the target is missed (NaN elsewhere).

        Rules are rows (0: predict none, then one per sorted item, highest score first; only `valid` rows are
        rules), labels columns: `tp` and `predicted` count true positives and predicted items, `positives` the
        positives of each label. Here: the best `score`, ties to the middle one of the tied rules.
        """
        score = np.where(valid, self.score(tp, predicted, positives), -np.inf)
        tied = score >= score.max(axis=0) - 1e-12
        k = np.argmax(tied & (np.cumsum(tied, axis=0) - 1 == tied.sum(axis=0) // 2), axis=0)
        return k, np.full(tp.shape[1], np.nan)

    def score(self, tp: np.ndarray, predicted: np.ndarray, positives: np.ndarray) -> np.ndarray:
        """The value (higher is better) of every rule of every label."""
        raise NotImplementedError(f"objective {self.kind} declares neither score nor choose")


class Target(Objective):
    """A rate to reach, "<name>>=<letter>" with the letter in (0, 1]; with a confidence it is guaranteed per label
    (`certify`), and a label that cannot reach it gets the `safe` rule."""

    letter: ClassVar[str]
    safe: ClassVar[str]  # what happens to a label whose target cannot be guaranteed

    def __str__(self) -> str:
        return f"{self.name}>={self.value:g}"

    @classmethod
    def parse(cls, spec: str) -> "Objective | None":
        """A target "<name>>=V" with 0 < V <= 1."""
        match = re.fullmatch(re.escape(cls.name) + ">=" + NUMBER, spec)
        return cls(cls.name, float(match.group(1))) if match and 0 < float(match.group(1)) <= 1 else None

    def certify(self, y: np.ndarray, scores: np.ndarray, known: np.ndarray,
                delta: float) -> tuple[np.ndarray, np.ndarray]:
        """Every label's threshold (each on its known rows) whose rate is certified >= the target with probability
        >= 1 - delta, and the best certified rate of the labels where none is (they get the safe threshold; NaN
        elsewhere)."""
        raise NotImplementedError(f"objective {self.kind} declares no guarantee")


# Guarantees: thresholds on a fixed grid, uniform in logit(p) from 8 to -8, highest first.
GRID_LOGITS = np.round(np.arange(8.0, -8.0 - 1e-9, -0.05), 2)
GRID = 1.0 / (1.0 + np.exp(-GRID_LOGITS))


def upper_bound(errors: np.ndarray, n: np.ndarray, delta: float) -> np.ndarray:
    """Clopper-Pearson upper confidence bounds (level 1 - delta) on a rate from `errors` out of `n`
    (1 where n = 0)."""
    from scipy.stats import beta

    errors, n = np.asarray(errors, dtype=np.float64), np.asarray(n, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        bound = beta.ppf(1 - delta, errors + 1, n - errors)
    return np.where(errors >= n, 1.0, bound)


def reaching(scores: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """(len(GRID), labels): for each GRID threshold (highest first) and label, the sum of `weights` (items,
    labels) over the items whose score is >= that threshold; every label at once (one histogram)."""
    ascending = GRID[::-1]
    reached = np.searchsorted(ascending, scores, side="right")  # how many grid thresholds each score reaches
    size = len(GRID) + 1
    cells = (np.arange(scores.shape[1])[None, :] * size + reached).ravel()
    counts = np.bincount(cells, weights=np.asarray(weights, dtype=np.float64).ravel(), minlength=scores.shape[1] * size)
    above = np.cumsum(counts.reshape(-1, size)[:, ::-1], axis=1)[:, ::-1][:, 1:]  # (labels, ascending grid)
    return np.rint(above[:, ::-1].T).astype(np.int64)
