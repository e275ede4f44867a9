"""Decision thresholds that turn per-label probabilities into label sets, fitted on validation data.

Thresholds are fitted for an objective (tagnet.decisions.objectives: F1, F-beta, Hamming errors, a precision or a
recall target) and, for precision/recall targets, optionally with a statistical guarantee (`confidence`): a
Learn-then-Test procedure (Angelopoulos et al. 2021) with Clopper-Pearson bounds from scipy.stats.
MAPIE and crepes were considered and not used: both calibrate single-output conformal predictors
(prediction sets / intervals with a coverage guarantee), not a per-label threshold with a bound on
the false-discovery rate; the binomial test (each target objective's `certify`, in
tagnet.decisions.objectives) is the whole method, in a few lines, no new dependency.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from tagnet.decisions.arrays import float_scores
from tagnet.decisions.objectives import Objective, Target, confidence_problem, parse_objective
from tagnet.decisions.objectives.base import NEVER
from tagnet.decisions.shrinkage import choose_strength, parse_shrinkage, shrinkage_problem, shrunk
from tagnet.errors import ArtifactError, ConfigError

MODES = ("per-label", "global", "top-k", "fixed")
IF_EMPTY = ("none", "top1")
DEFAULT_THRESHOLD = 0.5


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _problem(mode: Any, values: Any, top_k: Any, min_labels: Any = 0, max_labels: Any = None,
             if_empty: Any = "none") -> str | None:
    """What is wrong with these threshold settings, or None."""
    if mode not in MODES:
        return f"mode={mode!r} is not one of {list(MODES)}"
    if not isinstance(values, (list, tuple)) or not values:
        return f"values must be a non-empty list of numbers (one per label), got {values!r}"
    for j, v in enumerate(values):
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not (0.0 <= v <= 1.0 or v == NEVER):
            return f"values[{j}]={v!r} is not a number between 0 and 1 (or {NEVER} = never predicted)"
    if not _is_int(top_k) or top_k < 1:
        return f"top_k={top_k!r} is not an integer >= 1"
    if not _is_int(min_labels) or not 0 <= min_labels <= len(values):
        return f"min_labels={min_labels!r} is not an integer from 0 to the number of labels ({len(values)})"
    if max_labels is not None and (not _is_int(max_labels) or max_labels < max(min_labels, 1)):
        return f"max_labels={max_labels!r} is not None or an integer >= max(1, min_labels={min_labels})"
    if if_empty not in IF_EMPTY:
        return f"if_empty={if_empty!r} is not one of {list(IF_EMPTY)}"
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
        values: one threshold in [0, 1] per label, in label order, or NEVER (2.0): never predicted.
        top_k: labels per item in "top-k" mode.
        fallback: labels whose threshold fell back to the global one (too few validation positives).
        min_labels: every item gets at least this many labels: the most probable labels that did not
            pass are added (never a label whose threshold is NEVER).
        max_labels: at most this many labels per item (the most probable of those passing); None: no limit.
        if_empty: what an item whose labels all fail gets: "none" (no label) or "top1" (its most
            probable label; the same as min_labels=1).
    """

    mode: str
    values: list[float]
    top_k: int = 1
    fallback: list[int] = field(default_factory=list)
    min_labels: int = 0
    max_labels: int | None = None
    if_empty: str = "none"

    def __post_init__(self) -> None:
        problem = _problem(self.mode, list(self.values), self.top_k, self.min_labels, self.max_labels, self.if_empty)
        if problem:
            raise ConfigError(f"thresholds: {problem}")

    @property
    def num_labels(self) -> int:
        return len(self.values)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict; from_dict reads it back. The label-set rules are written only when set
        (so thresholds without them read as before in older tagnet versions)."""
        data: dict[str, Any] = {"mode": self.mode, "values": [float(v) for v in self.values], "top_k": int(self.top_k),
                                "fallback": [int(j) for j in self.fallback]}
        if self.min_labels:
            data["min_labels"] = int(self.min_labels)
        if self.max_labels is not None:
            data["max_labels"] = int(self.max_labels)
        if self.if_empty != "none":
            data["if_empty"] = self.if_empty
        return data

    @classmethod
    def from_dict(cls, data: Any, *, num_labels: int | None = None, source: str = "thresholds") -> "Thresholds":
        """Read thresholds written by to_dict (keys added since, min_labels, max_labels, if_empty, may be absent).

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
        rules = (data.get("min_labels", 0), data.get("max_labels"), data.get("if_empty", "none"))
        problem = _problem(data["mode"], data["values"], top_k, *rules)
        if problem:
            raise ArtifactError(f"{source}: {problem}")
        if num_labels is not None and len(data["values"]) != num_labels:
            raise ArtifactError(f"{source}: {len(data['values'])} threshold values for {num_labels} labels")
        if not isinstance(fallback, list) or not all(
                isinstance(j, int) and 0 <= j < len(data["values"]) for j in fallback):
            raise ArtifactError(f"{source}: fallback={fallback!r} is not a list of label indices")
        return cls(str(data["mode"]), [float(v) for v in data["values"]], int(top_k), list(fallback), *rules)


def decision_thresholds(fitted: Thresholds, threshold: float | None) -> Thresholds:
    """`fitted`, or when `threshold` is given, "fixed" thresholds of that value for as many labels
    (keeping the label-set rules min_labels, max_labels, if_empty)."""
    if threshold is None:
        return fitted
    return dataclasses.replace(fitted, mode="fixed", values=[float(threshold)] * fitted.num_labels, fallback=[])


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

    The threshold rule (and top-k) first; then max_labels keeps the most probable of the labels
    passing, and min_labels (or if_empty="top1") adds the most probable labels that did not pass.
    Ties between equal probabilities go to the lower label index.

    Raises:
        ConfigError: the thresholds are for a different number of labels.
    """
    probs = float_scores(probs)
    if probs.ndim != 2:
        raise ConfigError(f"probabilities: expected shape (items, labels), got {probs.shape}")
    th = as_thresholds(thresholds, num_labels=probs.shape[1])
    values = np.asarray(th.values)
    predicted = probs >= values[None, :]
    least = max(th.min_labels, 1 if th.if_empty == "top1" else 0)
    if th.mode != "top-k" and th.max_labels is None and not least:
        return predicted
    order = np.argsort(-probs, axis=1, kind="stable")
    ranked = np.take_along_axis(predicted, order, axis=1)  # predicted, most probable label first
    if th.mode == "top-k":
        ranked[:, th.top_k:] = False
    if th.max_labels is not None:
        ranked &= np.cumsum(ranked, axis=1) <= th.max_labels
    if least:
        addable = ~ranked & (values[order] <= 1.0)
        missing = np.maximum(least - ranked.sum(axis=1), 0)
        ranked |= addable & (np.cumsum(addable, axis=1) <= missing[:, None])
    chosen = np.zeros_like(predicted)
    np.put_along_axis(chosen, order, ranked, axis=1)
    return chosen


def decision_mode(objective: str) -> str:
    """The threshold rule an objective gets when no mode is given (its declared `mode`): "fixed" (p >= 0.5) for
    hamming, "per-label" (with the few-positive fallback) for every other built-in objective."""
    return parse_objective(objective).mode


@dataclass(frozen=True)
class ThresholdFit:
    """Fitted thresholds and what they reached.

    Attributes:
        thresholds: the Thresholds to save and apply.
        objective: what was optimised.
        confidence: the confidence of the guarantee (precision/recall targets), or None.
        unreachable: label index -> the best value it can reach, for labels whose threshold misses the
            target on the fitting data (without `confidence`: the best precision or recall over all
            thresholds; with it: the best precision or recall certified at that confidence, and the label
            gets the safe threshold: NEVER for precision, 0 for recall).
        shrinkage: the strength m the per-label thresholds were shrunk toward the global one with, or None.
    """

    thresholds: Thresholds
    objective: Objective
    confidence: float | None = None
    unreachable: dict[int, float] = field(default_factory=dict)
    shrinkage: float | None = None  # the strength per-label thresholds were shrunk with (None: not shrunk)

    def notes(self, label_names: Sequence[str]) -> list[str]:
        """One line per unreachable label, and one saying the shrinkage strength when shrunk, for the CLI to print."""
        kind = self.objective.kind
        safe = self.objective.safe if isinstance(self.objective, Target) else ""
        lines = []
        for j, best in sorted(self.unreachable.items()):
            if self.confidence is None:
                lines.append(f"label {label_names[j]!r}: {self.objective} not reached on validation data; "
                             f"the best {kind} it reaches is {best:.3f}")
            else:
                lines.append(f"label {label_names[j]!r}: {self.objective} cannot be guaranteed with "
                             f"{self.confidence:.0%} confidence (the best certified {kind} is {best:.3f}); {safe}")
        if self.shrinkage is not None:
            lines.append(f"per-label {self.objective} thresholds shrunk toward the global one with strength "
                         f"m={self.shrinkage:g} ((n t + m t_global) / (n + m), n a label's validation positives)")
        return lines


def _fit_columns(y: np.ndarray, scores: np.ndarray, known: np.ndarray,
                 objective: Objective) -> tuple[np.ndarray, np.ndarray]:
    """The threshold for `objective` of every column at once (each on its known rows, each with >= 1 known
    positive), and the best value of the columns missing a target (NaN elsewhere).

    The candidate rules of a column are "predict none", then "predict the items scoring >= u" for each distinct
    score u, highest first; the objective chooses one (Objective.choose) and the threshold is the middle of the
    interval of thresholds giving that rule (NEVER above a score of 1; the upper end for adjacent floats).
    """
    s = np.where(known, scores, -np.inf)
    order = np.argsort(-s, axis=0, kind="stable")
    s, yy = np.take_along_axis(s, order, 0), np.take_along_axis(y & known, order, 0)
    nxt = np.r_[s[1:], np.full((1, s.shape[1]), -np.inf)]
    last = (s > -np.inf) & (nxt != s)  # last position of each distinct score
    tp = np.cumsum(yy, axis=0, dtype=np.int64)
    predicted = np.broadcast_to(np.arange(1, len(s) + 1)[:, None], tp.shape)
    none = np.zeros((1, s.shape[1]), dtype=np.int64)  # rule 0 "predict none", then one per distinct score
    k, best = objective.choose(np.r_[none, tp], np.r_[none, predicted], tp[-1],
                               np.r_[np.ones((1, s.shape[1]), dtype=bool), last])
    columns = np.arange(s.shape[1])
    at = np.maximum(k - 1, 0)
    upper = np.where(k == 0, np.inf, s[at, columns])
    below = np.where(k == 0, s[0], nxt[at, columns])
    lower = np.where(below > -np.inf, below, 0.0)
    with np.errstate(invalid="ignore"):
        middle = np.where(k == 0, (lower + 1) / 2, (upper + lower) / 2)
    return np.where(middle > lower, middle, np.where(k == 0, NEVER, upper)), best


def fit_decisions(
    targets: np.ndarray,
    probs: np.ndarray,
    *,
    objective: str = "f1",
    confidence: float | None = None,
    mode: str = "per-label",
    min_positives: int = 5,
    top_k: int = 1,
    fixed: float = DEFAULT_THRESHOLD,
    known: np.ndarray | None = None,
    min_labels: int = 0,
    max_labels: int | None = None,
    if_empty: str = "none",
    shrinkage: float | str | None = None,
) -> ThresholdFit:
    """Choose thresholds on validation (or out-of-fold) probabilities for an objective.

    "global": the single threshold best for `objective` over every known cell pooled.
    "per-label": each label's threshold best for `objective` on its known rows; labels with fewer than
    `min_positives` known positives use the global threshold instead (listed in Thresholds.fallback),
    or 0.5 for "hamming" (p >= 0.5 minimises the expected errors of calibrated probabilities).
    "top-k": the k most probable labels per item (values 0). "fixed": `fixed` for every label.
    With no known positive at all, the global threshold is 0.5. Objectives: "f1", "fbeta:B",
    "hamming" (fewest errors), "precision>=P" (the most recall with precision >= P), "recall>=R" (the
    highest threshold with recall >= R).

    With `confidence` (precision/recall targets, per-label mode) each label's threshold comes with a
    guarantee: with probability >= `confidence` over the fitting data, the precision (recall) of the
    threshold rule on new data from the same distribution is >= the target. Every label is tested on
    its own rows (no pooled fallback: a pooled threshold certifies nothing about one label); a label
    that cannot be certified gets the safe threshold, NEVER for precision and 0 for recall, and is
    listed in `unreachable`. The guarantee is per label (for all L labels at once, pass confidence
    1 - (1 - c) / L) and covers the threshold rule: labels added by min_labels / if_empty are not covered.

    Args:
        targets: (n_items, n_labels) 0/1 matrix.
        probs: (n_items, n_labels) probabilities.
        known: (n_items, n_labels) bool, False for cells whose value is unknown (ignored).
        min_labels, max_labels, if_empty: the label-set rules stored in the Thresholds (see there).
        shrinkage: per-label mode with f1 or fbeta only: each label's threshold pulled toward the global one by
            its positive count n, (n t + m t_global) / (n + m), strength m a number >= 0 or "auto" (chosen by
            cross-fitting on these rows; tagnet.decisions.shrinkage); None: per-label thresholds as fitted.
    Returns:
        ThresholdFit: the Thresholds (one value per label) and the labels missing a target.
    Raises:
        ConfigError: a bad objective, confidence, mode, min_positives, top_k or rule, or shapes that disagree.
    """
    goal = _checked(objective, confidence, mode, min_positives, shrinkage)
    y = np.asarray(targets).astype(bool)
    p = np.asarray(probs, dtype=np.float64)
    mask = np.ones_like(y) if known is None else np.asarray(known, dtype=bool)
    if y.ndim != 2 or y.shape != p.shape or mask.shape != y.shape:
        raise ConfigError(f"targets {y.shape}, probabilities {p.shape} and known {mask.shape} "
                          "must all have shape (items, labels)")
    n_labels = y.shape[1]
    rules = {"min_labels": min_labels, "max_labels": max_labels, "if_empty": if_empty}

    def result(values: Sequence[float], fallback: Sequence[int] = (),
               unreachable: dict[int, float] | None = None) -> ThresholdFit:
        thresholds = Thresholds(mode, np.asarray(values, dtype=np.float64).tolist(), top_k, list(fallback), **rules)
        return ThresholdFit(thresholds, goal, confidence, unreachable or {})

    if mode in ("top-k", "fixed"):
        return result([0.0 if mode == "top-k" else float(fixed)] * n_labels)
    if confidence is not None:
        values, best = goal.certify(y, p, mask, 1 - confidence)
        return result(values, (), _missed(best))
    if mode == "global":
        global_t, global_best = _global_fit(y, p, mask, goal)
        return result([global_t] * n_labels, (), _missed(np.full(n_labels, global_best)))
    values, best, few, global_t = _per_label_fit(y, p, mask, goal, min_positives)
    strength = None if shrinkage is None else _strength(y, p, mask, goal, min_positives, shrinkage)
    if strength is not None:
        values = shrunk(values, global_t, (y & mask).sum(axis=0), strength)
    return dataclasses.replace(result(values, np.flatnonzero(few).tolist(), _missed(best)), shrinkage=strength)


def _strength(y: np.ndarray, p: np.ndarray, mask: np.ndarray, goal: Objective, min_positives: int,
              shrinkage: float | str) -> float:
    """The shrinkage strength: the number given, or for "auto" the one tagnet.decisions.shrinkage.choose_strength
    cross-fits on these rows with the same per-label fit."""
    strength = parse_shrinkage(shrinkage)
    if strength != "auto":
        return float(strength)

    def fit(*part: np.ndarray) -> tuple[np.ndarray, float]:
        fitted = _per_label_fit(*part, goal, min_positives)
        return fitted[0], fitted[3]

    return choose_strength(y, p, mask, goal, fit)


def _global_fit(y: np.ndarray, p: np.ndarray, mask: np.ndarray, goal: Objective) -> tuple[float, float]:
    """The one threshold best for `goal` over every known cell pooled, and its value (0.5 and NaN without a known
    positive)."""
    if not (y & mask).any():
        return DEFAULT_THRESHOLD, np.nan
    pooled = np.ones((int(mask.sum()), 1), dtype=bool)
    (global_t,), (global_best,) = _fit_columns(y[mask][:, None], p[mask][:, None], pooled, goal)
    return float(global_t), float(global_best)


def _per_label_fit(y: np.ndarray, p: np.ndarray, mask: np.ndarray, goal: Objective,
                   min_positives: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """Each label's threshold best for `goal` (labels with fewer than `min_positives` known positives: the global
    one, or the objective's fallback); (values, best value where a target is missed, the few-positive labels, the
    global threshold)."""
    global_t, global_best = _global_fit(y, p, mask, goal)
    few = (y & mask).sum(axis=0) < max(min_positives, 1)
    values = np.full(y.shape[1], global_t if goal.fallback is None else goal.fallback)
    best = np.where(few, global_best, np.nan)
    values[~few], best[~few] = _fit_columns(y[:, ~few], p[:, ~few], mask[:, ~few], goal)
    return values, best, few, global_t


def _checked(objective: str, confidence: float | None, mode: str, min_positives: int,
             shrinkage: float | str | None = None) -> Objective:
    """The Objective of `objective`, once the settings of fit_decisions agree with it.

    Raises:
        ConfigError: a bad objective, confidence, mode, min_positives or shrinkage.
    """
    goal = parse_objective(objective)
    if mode not in MODES:
        raise ConfigError(f"threshold mode {mode!r} is not one of {list(MODES)}")
    if min_positives < 0:
        raise ConfigError(f"min_positives must be >= 0, got {min_positives}")
    problem = confidence_problem(goal, mode, confidence)
    if problem is not None:
        raise ConfigError(problem)
    if mode not in goal.modes:
        raise ConfigError(f"objective {goal} applies to per-label and global thresholds, not to mode {mode!r}")
    problem = shrinkage_problem(shrinkage, goal, mode, confidence)
    if problem:
        raise ConfigError(problem)
    return goal


def _missed(best: np.ndarray) -> dict[int, float]:
    """Label index -> best value reached, for the labels (not NaN) missing a target."""
    return {int(j): float(best[j]) for j in np.flatnonzero(~np.isnan(best))}


def side_rules(targets: np.ndarray, probs: np.ndarray, *, known: np.ndarray | None = None, min_positives: int = 5,
               min_labels: int = 0, max_labels: int | None = None, if_empty: str = "none") -> dict[str, Thresholds]:
    """The two rules reported beside a model's own thresholds: "f1", per-label thresholds maximising F1 on these
    (validation) probabilities with the few-positive fallback, and "p>=0.5", the Hamming-loss rule; each with the
    given label-set rules."""
    rules = {"min_labels": min_labels, "max_labels": max_labels, "if_empty": if_empty}
    return {"f1": fit_thresholds(targets, probs, objective="f1", mode="per-label", min_positives=min_positives,
                                 known=known, **rules),
            "p>=0.5": fit_thresholds(targets, probs, objective="hamming", mode="fixed", fixed=DEFAULT_THRESHOLD,
                                     known=known, **rules)}


def fit_thresholds(targets: np.ndarray, probs: np.ndarray, **options: Any) -> Thresholds:
    """The Thresholds of fit_decisions(targets, probs, **options) (same options and errors)."""
    return fit_decisions(targets, probs, **options).thresholds
