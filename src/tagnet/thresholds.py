"""Decision thresholds that turn per-label probabilities into label sets, fitted on validation data."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from tagnet.errors import ArtifactError, ConfigError

MODES = ("per-label", "global", "top-k", "fixed")
DEFAULT_THRESHOLD = 0.5


def _problem(mode: Any, values: Any, top_k: Any) -> str | None:
    """What is wrong with these threshold settings, or None."""
    if mode not in MODES:
        return f"mode={mode!r} is not one of {list(MODES)}"
    if not isinstance(values, (list, tuple)) or not values:
        return f"values must be a non-empty list of numbers (one per label), got {values!r}"
    for j, v in enumerate(values):
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0.0 <= v <= 1.0:
            return f"values[{j}]={v!r} is not a number between 0 and 1"
    if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1:
        return f"top_k={top_k!r} is not an integer >= 1"
    return None


@dataclass(frozen=True)
class Thresholds:
    """How probabilities become predicted labels.

    Attributes:
        mode: "per-label" (label j is predicted when p_j >= values[j]), "global" (the same rule;
            every value is the one global threshold) or "top-k" (the `top_k` most probable labels
            of each item, keeping only those with p_j >= values[j]; fit_thresholds sets values to
            0 so exactly `top_k` labels are predicted) or "fixed" (the per-label rule with one value
            chosen by the user, not fitted: 0.5 minimises the expected Hamming loss).
        values: one threshold in [0, 1] per label, in label order.
        top_k: labels per item in "top-k" mode.
    """

    mode: str
    values: list[float]
    top_k: int = 1
    # Labels whose threshold fell back to the global one (too few validation positives).
    fallback: list[int] = field(default_factory=list)

    def __post_init__(self) -> None:
        problem = _problem(self.mode, list(self.values), self.top_k)
        if problem:
            raise ConfigError(f"thresholds: {problem}")

    @property
    def num_labels(self) -> int:
        return len(self.values)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict; from_dict reads it back."""
        return {"mode": self.mode, "values": [float(v) for v in self.values], "top_k": int(self.top_k),
                "fallback": [int(j) for j in self.fallback]}

    @classmethod
    def from_dict(cls, data: Any, *, num_labels: int | None = None, source: str = "thresholds") -> "Thresholds":
        """Read thresholds written by to_dict.

        Args:
            data: the dict from JSON.
            num_labels: when given, the number of values the thresholds must have.
            source: names the file or key in error messages.
        Raises:
            ArtifactError: a key is missing or a value is invalid.
        """
        if not isinstance(data, dict):
            raise ArtifactError(f"{source}: expected an object with mode, values, top_k, got {type(data).__name__}")
        missing = [k for k in ("mode", "values") if k not in data]
        if missing:
            raise ArtifactError(f"{source}: missing key(s) {missing}; expected mode, values, top_k")
        top_k = data.get("top_k", 1)
        fallback = data.get("fallback", [])
        problem = _problem(data["mode"], data["values"], top_k)
        if problem:
            raise ArtifactError(f"{source}: {problem}")
        if num_labels is not None and len(data["values"]) != num_labels:
            raise ArtifactError(f"{source}: {len(data['values'])} threshold values for {num_labels} labels")
        if not isinstance(fallback, list) or not all(
                isinstance(j, int) and 0 <= j < len(data["values"]) for j in fallback):
            raise ArtifactError(f"{source}: fallback={fallback!r} is not a list of label indices")
        return cls(str(data["mode"]), [float(v) for v in data["values"]], int(top_k), list(fallback))


def decision_thresholds(fitted: Thresholds, threshold: float | None) -> Thresholds:
    """`fitted`, or when `threshold` is given, "fixed" thresholds of that value for as many labels."""
    return fitted if threshold is None else Thresholds("fixed", [float(threshold)] * fitted.num_labels, fitted.top_k)


def as_thresholds(thresholds: Thresholds | Sequence[float] | np.ndarray, *, num_labels: int) -> Thresholds:
    """A Thresholds object from a Thresholds or one threshold per label; checks the label count.

    Raises:
        ConfigError: the number of thresholds differs from `num_labels`.
    """
    if not isinstance(thresholds, Thresholds):
        values = np.asarray(thresholds, dtype=np.float64).reshape(-1)
        thresholds = Thresholds("per-label", values.tolist())
    if thresholds.num_labels != num_labels:
        raise ConfigError(f"thresholds: {thresholds.num_labels} values for {num_labels} labels")
    return thresholds


def apply_thresholds(probs: np.ndarray, thresholds: Thresholds | Sequence[float] | np.ndarray) -> np.ndarray:
    """Predicted labels (bool array, same shape as `probs` (n_items, n_labels)) under `thresholds`.

    Raises:
        ConfigError: the thresholds are for a different number of labels.
    """
    probs = np.asarray(probs, dtype=np.float64)
    if probs.ndim != 2:
        raise ConfigError(f"probabilities: expected shape (items, labels), got {probs.shape}")
    th = as_thresholds(thresholds, num_labels=probs.shape[1])
    predicted = probs >= np.asarray(th.values)[None, :]
    if th.mode == "top-k":
        k = min(th.top_k, probs.shape[1])
        top = np.argsort(-probs, axis=1, kind="stable")[:, :k]
        in_top = np.zeros_like(predicted)
        np.put_along_axis(in_top, top, True, axis=1)
        predicted &= in_top
    return predicted


def _best_f1_threshold(y_true: np.ndarray, scores: np.ndarray) -> float:
    """The threshold t maximising F1 of (scores >= t) against y_true (which has >= 1 positive).

    Every distinct score u_k defines one candidate rule "predict the items scoring >= u_k"; that
    rule holds for any t in (u_{k+1}, u_k], and the middle of that interval is returned. Ties in
    F1 between rules go to the middle one of the tied rules.
    """
    order = np.argsort(-scores, kind="stable")
    s, y = scores[order], y_true[order].astype(np.int64)
    last = np.r_[s[1:] != s[:-1], True]  # last position of each distinct score
    tp = np.cumsum(y)[last]
    predicted = np.flatnonzero(last) + 1
    f1 = 2 * tp / (predicted + y.sum())
    best = np.flatnonzero(f1 >= f1.max() - 1e-12)
    k = best[len(best) // 2]
    upper = s[last]
    lower = upper[k + 1] if k + 1 < len(upper) else 0.0
    middle = (upper[k] + lower) / 2
    return float(middle if middle > lower else upper[k])  # adjacent floats: no room in between


def fit_thresholds(
    targets: np.ndarray,
    probs: np.ndarray,
    *,
    mode: str = "per-label",
    min_positives: int = 5,
    top_k: int = 1,
    fixed: float = DEFAULT_THRESHOLD,
    known: np.ndarray | None = None,
) -> Thresholds:
    """Choose thresholds on validation data.

    "global": the single threshold maximising micro-F1 over every known cell.
    "per-label": for each label, the threshold maximising that label's F1 on its known rows;
    labels with fewer than `min_positives` known positives use the global threshold instead
    (listed in Thresholds.fallback). "top-k": the k most probable labels per item (values 0).
    "fixed": `fixed` for every label, whatever the data (p >= 0.5 minimises the expected Hamming
    loss of calibrated probabilities; F1-fitted thresholds predict more labels and raise it).
    With no known positive at all, the global threshold is 0.5.

    Args:
        targets: (n_items, n_labels) 0/1 matrix.
        probs: (n_items, n_labels) probabilities.
        known: (n_items, n_labels) bool, False for cells whose value is unknown (ignored).
    Returns:
        Thresholds with one value per label.
    Raises:
        ConfigError: bad mode, min_positives or top_k, or shapes that disagree.
    """
    if mode not in MODES:
        raise ConfigError(f"threshold mode {mode!r} is not one of {list(MODES)}")
    if min_positives < 0:
        raise ConfigError(f"min_positives must be >= 0, got {min_positives}")
    y = np.asarray(targets).astype(bool)
    p = np.asarray(probs, dtype=np.float64)
    mask = np.ones_like(y) if known is None else np.asarray(known, dtype=bool)
    if y.ndim != 2 or y.shape != p.shape or mask.shape != y.shape:
        raise ConfigError(f"targets {y.shape}, probabilities {p.shape} and known {mask.shape} "
                          "must all have shape (items, labels)")
    n_labels = y.shape[1]
    if mode == "top-k":
        return Thresholds("top-k", [0.0] * n_labels, top_k)
    if mode == "fixed":
        return Thresholds("fixed", [float(fixed)] * n_labels, top_k)
    global_t = _best_f1_threshold(y[mask], p[mask]) if (y & mask).any() else DEFAULT_THRESHOLD
    if mode == "global":
        return Thresholds("global", [global_t] * n_labels, top_k)
    values, fallback = [], []
    for j in range(n_labels):
        rows = mask[:, j]
        if y[rows, j].sum() < max(min_positives, 1):
            values.append(global_t)
            fallback.append(j)
        else:
            values.append(_best_f1_threshold(y[rows, j], p[rows, j]))
    return Thresholds("per-label", values, top_k, fallback)
