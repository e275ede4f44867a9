"""Calibrated probabilities: per-label temperature and Platt scaling, the pooled Platt threshold, expected calibration
error, reliability diagrams."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.special import expit

from tagnet.decisions.arrays import float_scores, row_blocks
from tagnet.errors import ArtifactError, ConfigError, DataError

TEMPERATURE_BOUNDS = (0.05, 20.0)
_EPS = 1e-12
PLATT_CLIP = 1e-4  # probabilities clipped to [PLATT_CLIP, 1 - PLATT_CLIP] before the Platt fit (a forest's vote shares
# reach 0 and 1 exactly: a positive at p = 0 would weigh as an infinite logit)
PLATT_STEPS = 50  # Newton steps at most (a 2-parameter convex problem: a few suffice)


def _logits(probs: np.ndarray) -> np.ndarray:
    p = np.clip(np.asarray(probs, dtype=np.float64), _EPS, 1 - _EPS)
    return np.log(p) - np.log1p(-p)


def _platt_logits(probs: np.ndarray) -> np.ndarray:
    """Logits of `probs` clipped to [PLATT_CLIP, 1 - PLATT_CLIP], the inputs of every Platt fit and map."""
    return _logits(np.clip(probs, PLATT_CLIP, 1 - PLATT_CLIP))


def _label_columns(probs: np.ndarray, labels: int) -> np.ndarray:
    """`probs` as float64 (items, `labels`); raises ConfigError for another shape."""
    p = np.asarray(probs, dtype=np.float64)
    if p.ndim != 2 or p.shape[1] != labels:
        raise ConfigError(f"probabilities of shape {p.shape}: expected (items, {labels})")
    return p


def _checked(targets: np.ndarray, probs: np.ndarray, known: np.ndarray | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Targets (bool), probabilities and known mask of one shape (items, labels).

    Raises:
        DataError: the shapes disagree or a probability is outside [0, 1].
    """
    y = np.asarray(targets).astype(bool, copy=False)
    p = float_scores(probs)
    mask = np.ones(y.shape, dtype=bool) if known is None else np.asarray(known, dtype=bool)
    if y.ndim != 2 or p.shape != y.shape or mask.shape != y.shape:
        raise DataError(f"targets {y.shape}, probabilities {p.shape} and known {mask.shape} must all have shape (items, labels)")
    bad = ~((p >= 0) & (p <= 1))
    if bad.any():
        i, j = map(int, np.argwhere(bad)[0])
        raise DataError(f"probability [{i}, {j}] = {float(p[i, j])!r} is not a number from 0 to 1")
    return y, p, mask


@dataclass(frozen=True)
class TemperatureScaling:
    """Per-label temperatures: calibrated p_j = sigmoid(logit(p_j) / temperatures[j])."""

    temperatures: list[float]

    def apply(self, probs: np.ndarray) -> np.ndarray:
        """Calibrated probabilities (float64, same shape as `probs` (items, labels)).

        Raises:
            ConfigError: `probs` has another number of labels.
        """
        return expit(_logits(_label_columns(probs, len(self.temperatures))) / np.asarray(self.temperatures))

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict; from_dict reads it back."""
        return {"method": "temperature", "temperatures": [float(t) for t in self.temperatures]}

    @classmethod
    def from_dict(cls, data: Any, *, num_labels: int | None = None, source: str = "calibration") -> "TemperatureScaling":
        """Read what to_dict wrote.

        Raises:
            ArtifactError: not a temperature object, or a temperature that is not a number > 0.
        """
        if not isinstance(data, dict) or data.get("method") != "temperature" or not isinstance(data.get("temperatures"), list):
            raise ArtifactError(f"{source}: expected {{\"method\": \"temperature\", \"temperatures\": [...]}}, got {data!r:.80}")
        values = data["temperatures"]
        for j, t in enumerate(values):
            if isinstance(t, bool) or not isinstance(t, (int, float)) or not (math.isfinite(t) and t > 0):
                raise ArtifactError(f"{source}: temperatures[{j}]={t!r} is not a number > 0")
        if num_labels is not None and len(values) != num_labels:
            raise ArtifactError(f"{source}: {len(values)} temperatures for {num_labels} labels")
        return cls([float(t) for t in values])


def fit_temperature(targets: np.ndarray, probs: np.ndarray, known: np.ndarray | None = None) -> TemperatureScaling:
    """Per label, the temperature in TEMPERATURE_BOUNDS minimising the negative log-likelihood of the
    known cells (a golden-section search over log T, every label at once, to 1e-6); 1 for labels without
    both a known positive and a known negative.

    Args:
        targets: (n_items, n_labels) 0/1; probs: validation (or out-of-fold) probabilities; known: False where unknown.
    Raises:
        DataError: the shapes disagree.
    """
    y, p, mask = _checked(targets, probs, known)
    signed = np.where(y, 1.0, -1.0) * _logits(p)
    both = (y & mask).any(axis=0) & (~y & mask).any(axis=0)

    def nll(log_t: np.ndarray) -> np.ndarray:  # each label's summed NLL of its known cells at temperature exp(log_t)
        return (np.logaddexp(0.0, -signed / np.exp(log_t)) * mask).sum(axis=0)

    low, high = (np.full(y.shape[1], math.log(b)) for b in TEMPERATURE_BOUNDS)
    ratio = (math.sqrt(5) - 1) / 2
    while (high - low).max() > 1e-6:
        a, b = high - ratio * (high - low), low + ratio * (high - low)
        left = nll(a) < nll(b)  # the minimum lies in [low, b], else in [a, high]
        high, low = np.where(left, b, high), np.where(left, low, a)
    temperatures = np.where(both, np.exp((low + high) / 2), 1.0).tolist()
    return TemperatureScaling(temperatures)


def platt_threshold(targets: np.ndarray, probs: np.ndarray, known: np.ndarray | None = None) -> float:
    """The probability at which one Platt map of every known cell pooled, calibrated p = sigmoid(a logit(p) + b) fitted by
    maximum likelihood (Platt 1999), crosses 0.5: the Hamming-loss threshold of these probabilities, estimated from
    every cell's likelihood rather than from where the step-shaped Hamming loss of a finite set happens to be lowest.
    0.5 when the fit has no positive slope (no positive and negative cells, or probabilities that do not rank them).

    Raises:
        DataError: the shapes disagree or a probability is outside [0, 1].
    """
    y, p, mask = _checked(targets, probs, known)
    y, z = y[mask].astype(np.float64), _platt_logits(p[mask])
    if y.size == 0 or y.min() == y.max():
        return 0.5
    (slope,), (intercept,) = _logistic_maps(z[:, None], y[:, None], np.ones((y.size, 1), dtype=bool))
    return float(expit(-intercept / slope)) if np.isfinite([slope, intercept]).all() and slope > 0 else 0.5


def _logistic_maps(z: np.ndarray, t: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per column j, the (slope a_j, intercept b_j) of sigmoid(a_j z + b_j) fitted to targets `t` (0/1 or in between)
    by maximum likelihood over the cells `mask` holds: Newton's method on every column at once from (1, 0), each
    column's step halved while it would raise that column's loss (a full Newton step can overshoot where few cells
    nearly separate), with a tiny ridge so that separable cells stay finite; at most PLATT_STEPS steps."""
    w = mask.astype(np.float64)

    def loss(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        s = a * z + b
        return ((np.logaddexp(0.0, s) - t * s) * w).sum(axis=0) + 5e-7 * (a * a + b * b)

    slope, intercept = np.ones(z.shape[1]), np.zeros(z.shape[1])
    for _ in range(PLATT_STEPS):
        q = expit(slope * z + intercept)
        r, h = (q - t) * w, q * (1 - q) * w
        g_a, g_b = (r * z).sum(axis=0) + 1e-6 * slope, r.sum(axis=0) + 1e-6 * intercept
        h_aa, h_ab, h_bb = (h * z * z).sum(axis=0) + 1e-6, (h * z).sum(axis=0), h.sum(axis=0) + 1e-6
        det = h_aa * h_bb - h_ab * h_ab
        step_a, step_b = (h_bb * g_a - h_ab * g_b) / det, (h_aa * g_b - h_ab * g_a) / det
        now, scale = loss(slope, intercept), np.ones_like(slope)
        for _ in range(30):
            worse = loss(slope - scale * step_a, intercept - scale * step_b) > now + 1e-12 * np.abs(now)
            if not worse.any():
                break
            scale = np.where(worse, scale / 2, scale)
        slope, intercept = slope - scale * step_a, intercept - scale * step_b
        if max(np.abs(scale * step_a).max(initial=0.0), np.abs(scale * step_b).max(initial=0.0)) < 1e-9:
            break
    return slope, intercept


@dataclass(frozen=True)
class PlattScaling:
    """Per-label Platt maps: calibrated p_j = sigmoid(slopes[j] logit(p_j) + intercepts[j]); every slope > 0, so each
    label's ranking is kept."""

    slopes: list[float]
    intercepts: list[float]

    def apply(self, probs: np.ndarray) -> np.ndarray:
        """Calibrated probabilities (float64, same shape as `probs` (items, labels)).

        Raises:
            ConfigError: `probs` has another number of labels.
        """
        z = _platt_logits(_label_columns(probs, len(self.slopes)))
        return expit(np.asarray(self.slopes) * z + np.asarray(self.intercepts))


def fit_platt(targets: np.ndarray, probs: np.ndarray, known: np.ndarray | None = None) -> PlattScaling:
    """Per label, the Platt map (Platt 1999) fitted by maximum likelihood to the known cells, with Platt's targets
    (N+ + 1) / (N+ + 2) for a positive and 1 / (N- + 2) for a negative, N+ and N- the label's known positives and
    negatives, so that a label with few positives is not mapped to certainty; every label at once (_logistic_maps).
    The identity (slope 1, intercept 0) for a label without both a known positive and a known negative, or whose fit
    has no positive slope (its ranking would turn).

    Raises:
        DataError: the shapes disagree or a probability is outside [0, 1].
    """
    y, p, mask = _checked(targets, probs, known)
    positives, negatives = (y & mask).sum(axis=0), (~y & mask).sum(axis=0)
    t = np.where(y, (positives + 1.0) / (positives + 2.0), 1.0 / (negatives + 2.0))
    slope, intercept = _logistic_maps(_platt_logits(p), t, mask)
    usable = (positives > 0) & (negatives > 0) & np.isfinite(slope) & np.isfinite(intercept) & (slope > 0)
    return PlattScaling(np.where(usable, slope, 1.0).tolist(), np.where(usable, intercept, 0.0).tolist())


@dataclass(frozen=True)
class Reliability:
    """Reliability-diagram data per label over equal-width probability bins.

    Attributes:
        edges: bins + 1 bin edges from 0 to 1 (bin b holds edges[b] <= p < edges[b + 1]; the last holds p = 1).
        count: (n_labels, bins) known cells per bin.
        mean_probability: (n_labels, bins) mean predicted probability per bin (NaN where empty).
        positive_rate: (n_labels, bins) share of positives per bin (NaN where empty).
    """

    edges: np.ndarray
    count: np.ndarray
    mean_probability: np.ndarray
    positive_rate: np.ndarray

    @property
    def ece(self) -> np.ndarray:
        """Expected calibration error per label: sum over bins of count share x |mean probability - positive rate|."""
        gap = np.nan_to_num(np.abs(self.mean_probability - self.positive_rate))
        total = self.count.sum(axis=1)
        return np.divide((self.count * gap).sum(axis=1), total, out=np.full(len(total), np.nan), where=total > 0)

    @property
    def pooled_ece(self) -> float:
        """Expected calibration error of every label's cells pooled in one set of bins (NaN without a cell)."""
        count = self.count.sum(axis=0)
        sum_p = np.nan_to_num(self.mean_probability * self.count).sum(axis=0)
        sum_y = np.nan_to_num(self.positive_rate * self.count).sum(axis=0)
        total = count.sum()
        if total == 0:
            return float("nan")
        with np.errstate(invalid="ignore", divide="ignore"):
            gap = np.nan_to_num(np.abs(sum_p / count - sum_y / count))
        return float((count * gap).sum() / total)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able lists (None for empty bins), for a report to draw."""
        def rows(a: np.ndarray) -> list[list[float | None]]:
            return [[None if np.isnan(v) else float(v) for v in row] for row in a]
        return {"edges": self.edges.tolist(), "count": self.count.tolist(), "mean_probability": rows(self.mean_probability),
                "positive_rate": rows(self.positive_rate), "ece": [None if np.isnan(v) else float(v) for v in self.ece]}


def reliability(targets: np.ndarray, probs: np.ndarray, known: np.ndarray | None = None, *, bins: int = 15) -> Reliability:
    """Reliability-diagram data of each label's probabilities on its known cells.

    Raises:
        ConfigError: bins < 1; DataError: the shapes disagree.
    """
    if isinstance(bins, bool) or not isinstance(bins, int) or bins < 1:
        raise ConfigError(f"bins={bins!r} is not an integer >= 1")
    y, p, mask = _checked(targets, probs, known)
    width = y.shape[1]
    count, sum_p, sum_y = (np.zeros(width * bins) for _ in range(3))
    for rows in row_blocks(len(y), width):  # the copies below are of one block of rows, all labels at once
        block, known_block = p[rows].astype(np.float64), mask[rows]
        index = np.minimum((block * bins).astype(np.int64), bins - 1)
        cell = (np.arange(width) * bins + index)[known_block]  # (label, bin) of every known cell
        count += np.bincount(cell, minlength=width * bins)
        sum_p += np.bincount(cell, weights=block[known_block], minlength=width * bins)
        sum_y += np.bincount(cell, weights=y[rows][known_block], minlength=width * bins)
    count, sum_p, sum_y = (a.reshape(width, bins) for a in (count, sum_p, sum_y))
    with np.errstate(invalid="ignore", divide="ignore"):
        return Reliability(np.linspace(0.0, 1.0, bins + 1), count.astype(np.int64), sum_p / count, sum_y / count)


def ece(targets: np.ndarray, probs: np.ndarray, known: np.ndarray | None = None, *, bins: int = 15) -> np.ndarray:
    """Expected calibration error per label (equal-width bins; NaN for a label with no known cell).

    Raises:
        ConfigError: bins < 1; DataError: the shapes disagree.
    """
    return reliability(targets, probs, known, bins=bins).ece
