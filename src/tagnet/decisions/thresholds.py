"""Decision thresholds that turn per-label probabilities into label sets, fitted on validation data.

Thresholds are fitted for an objective (F1, F-beta, Hamming errors, a precision or a recall target)
and, for precision/recall targets, optionally with a statistical guarantee (`confidence`): a
Learn-then-Test procedure (Angelopoulos et al. 2021) with Clopper-Pearson bounds from scipy.stats.
MAPIE and crepes were considered and not used: both calibrate single-output conformal predictors
(prediction sets / intervals with a coverage guarantee), not a per-label threshold with a bound on
the false-discovery rate; the binomial test below is the whole method, in a few lines, no new dependency.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from tagnet.errors import ArtifactError, ConfigError

MODES = ("per-label", "global", "top-k", "fixed")
IF_EMPTY = ("none", "top1")
DEFAULT_THRESHOLD = 0.5
NEVER = 2.0  # a threshold above every probability: the label is never predicted
OBJECTIVES = "f1, fbeta:B (B > 0), hamming, precision>=P or recall>=R (P, R in (0, 1])"


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
    probs = np.asarray(probs, dtype=np.float64)
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


# ---- objectives ------------------------------------------------------------------------------
@dataclass(frozen=True)
class Objective:
    """What a fitted threshold optimises: kind "f1", "fbeta" (value = beta), "hamming" (errors),
    "precision" or "recall" (value = the target to reach)."""

    kind: str
    value: float | None = None

    def __str__(self) -> str:
        prefix = {"fbeta": "fbeta:", "precision": "precision>=", "recall": "recall>="}
        return self.kind if self.value is None else f"{prefix[self.kind]}{self.value:g}"


def parse_objective(text: str) -> Objective:
    """The Objective of a string: f1 | fbeta:B | hamming | precision>=P | recall>=R.

    Raises:
        ConfigError: the string is none of these, or B <= 0, or P, R outside (0, 1].
    """
    spec = str(text).strip().lower().replace(" ", "")
    if spec in ("f1", "hamming"):
        return Objective(spec)
    match = re.fullmatch(r"(fbeta:|precision>=|recall>=)([0-9]*\.?[0-9]+(?:e[-+]?[0-9]+)?)", spec)
    if match:
        kind, value = match.group(1).rstrip(":>="), float(match.group(2))
        if (kind == "fbeta" and value > 0) or (kind != "fbeta" and 0 < value <= 1):
            return Objective(kind, value)
    raise ConfigError(f"objective {text!r} is not one of {OBJECTIVES}")


def decision_mode(objective: str) -> str:
    """The threshold rule an objective gets when no mode is given: "fixed" (p >= 0.5, which minimises the expected
    Hamming loss of calibrated probabilities; per-label thresholds fitted for errors or F1 raise it on unseen data)
    for hamming, "per-label" (with the few-positive fallback) for every other objective."""
    return "fixed" if parse_objective(objective).kind == "hamming" else "per-label"


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
    """

    thresholds: Thresholds
    objective: Objective
    confidence: float | None = None
    unreachable: dict[int, float] = field(default_factory=dict)

    def notes(self, label_names: Sequence[str]) -> list[str]:
        """One line per unreachable label, for the CLI to print."""
        kind = self.objective.kind
        lines = []
        for j, best in sorted(self.unreachable.items()):
            if self.confidence is None:
                lines.append(f"label {label_names[j]!r}: {self.objective} not reached on validation data; "
                             f"the best {kind} it reaches is {best:.3f}")
            else:
                safe = "never predicted" if kind == "precision" else "predicted for every item"
                lines.append(f"label {label_names[j]!r}: {self.objective} cannot be guaranteed with "
                             f"{self.confidence:.0%} confidence (the best certified {kind} is {best:.3f}); {safe}")
        return lines


def _rules(y: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The candidate rules "predict the items scoring >= u_k", one per distinct score u_1 > u_2 > ...,
    after rule 0 "predict none": true positives, predicted counts and the interval (lower, upper] of
    thresholds giving each rule."""
    order = np.argsort(-scores, kind="stable")
    s, yy = scores[order], y[order].astype(np.int64)
    last = np.r_[s[1:] != s[:-1], True]  # last position of each distinct score
    tp = np.r_[0, np.cumsum(yy)[last]]
    predicted = np.r_[0, np.flatnonzero(last) + 1]
    distinct = s[last]
    return tp, predicted, np.r_[distinct, 0.0], np.r_[np.inf, distinct]


def _rule_threshold(lower: float, upper: float) -> float:
    """The middle of the threshold interval (lower, upper] of a rule (NEVER above a score of 1)."""
    if upper == np.inf:
        return (lower + 1) / 2 if (lower + 1) / 2 > lower else NEVER
    middle = (upper + lower) / 2
    return float(middle if middle > lower else upper)  # adjacent floats: no room in between


def _fit_one(y: np.ndarray, scores: np.ndarray, objective: Objective) -> tuple[float, float | None]:
    """The threshold for `objective` on y (>= 1 positive) and scores, and the best value reachable
    when the target (precision/recall) is not reached (else None).

    F-beta and Hamming: the best rule; ties go to the middle one of the tied rules. precision>=P: of
    the rules reaching P (or, when none does, of those with the best precision), the one with the most
    true positives, the fewest predicted among those. recall>=R: the fewest predicted reaching R.
    """
    tp, predicted, lower, upper = _rules(y, scores)
    positives = int(y.sum())
    best_value = None
    if objective.kind in ("f1", "fbeta", "hamming"):
        if objective.kind == "hamming":
            score = -((predicted - tp) + (positives - tp)).astype(np.float64)
        else:
            b2 = 1.0 if objective.kind == "f1" else objective.value ** 2
            score = (1 + b2) * tp / (predicted + b2 * positives)
        tied = np.flatnonzero(score >= score.max() - 1e-12)
        k = int(tied[len(tied) // 2])
    elif objective.kind == "precision":
        precision = np.r_[0.0, tp[1:] / predicted[1:]]
        ok = precision >= objective.value - 1e-12
        if not ok.any():
            best_value = float(precision.max())
            ok = precision >= best_value - 1e-12
        k = int(np.flatnonzero(ok & (tp == tp[ok].max()))[0])
    else:
        k = int(np.flatnonzero(tp >= objective.value * positives - 1e-9)[0])
    return _rule_threshold(lower[k], upper[k]), best_value


def _fit_columns(y: np.ndarray, scores: np.ndarray, known: np.ndarray, objective: Objective) -> np.ndarray:
    """_fit_one's threshold for an F-beta or Hamming `objective` of every column at once (each on its known rows,
    each with >= 1 known positive): the same rules, scores and ties, as array operations over labels."""
    s = np.where(known, scores, -np.inf)
    order = np.argsort(-s, axis=0, kind="stable")
    s, yy = np.take_along_axis(s, order, 0), np.take_along_axis(y & known, order, 0)
    nxt = np.r_[s[1:], np.full((1, s.shape[1]), -np.inf)]
    last = (s > -np.inf) & (nxt != s)  # last position of each distinct score
    tp = np.cumsum(yy, axis=0, dtype=np.int64)
    predicted = np.arange(1, len(s) + 1)[:, None]
    positives = tp[-1]
    if objective.kind == "hamming":
        score = -((predicted - tp) + (positives - tp)).astype(np.float64)
        none = -positives.astype(np.float64)
    else:
        b2 = 1.0 if objective.kind == "f1" else objective.value ** 2
        score = (1 + b2) * tp / (predicted + b2 * positives)
        none = np.zeros(s.shape[1])
    score = np.r_[none[None], np.where(last, score, -np.inf)]  # rule 0 "predict none", then one per distinct score
    tied = score >= score.max(axis=0) - 1e-12
    k = np.argmax(tied & (np.cumsum(tied, axis=0) - 1 == tied.sum(axis=0) // 2), axis=0)
    columns = np.arange(s.shape[1])
    at = np.maximum(k - 1, 0)
    upper = np.where(k == 0, np.inf, s[at, columns])
    below = np.where(k == 0, s[0], nxt[at, columns])
    lower = np.where(below > -np.inf, below, 0.0)
    with np.errstate(invalid="ignore"):
        middle = np.where(k == 0, (lower + 1) / 2, (upper + lower) / 2)
    return np.where(middle > lower, middle, np.where(k == 0, NEVER, upper))


# Guarantees: thresholds on a fixed grid, uniform in logit(p) from 8 to -8, highest first. The
# precision tests start at each whole logit from 6 to -2 (p from 0.998 to 0.12), where the thresholds
# for precision targets of calibrated probabilities lie; 1 - confidence is split evenly between them.
_GRID_LOGITS = np.round(np.arange(8.0, -8.0 - 1e-9, -0.05), 2)
_GRID = 1.0 / (1.0 + np.exp(-_GRID_LOGITS))
_STARTS = np.flatnonzero(np.isin(_GRID_LOGITS, np.arange(6.0, -3.0, -1.0)))


def _upper_bound(errors: np.ndarray, n: np.ndarray, delta: float) -> np.ndarray:
    """Clopper-Pearson upper confidence bounds (level 1 - delta) on a rate from `errors` out of `n`
    (1 where n = 0)."""
    from scipy.stats import beta

    errors, n = np.asarray(errors, dtype=np.float64), np.asarray(n, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        bound = beta.ppf(1 - delta, errors + 1, n - errors)
    return np.where(errors >= n, 1.0, bound)


def _certify_precision(y: np.ndarray, scores: np.ndarray, target: float, delta: float) -> tuple[float, float | None]:
    """The lowest grid threshold whose false-discovery rate is certified <= 1 - target with probability
    >= 1 - delta, or (NEVER, the best precision certified at one start's level) when none is.

    Learn-then-Test with the fallback procedure (Wiens 2003): thresholds are tested from high to low,
    each start of _STARTS brings delta / len(_STARTS); a threshold is certified when the Clopper-Pearson
    bound on its false-discovery rate at the level it holds is <= 1 - target, and a certified threshold
    passes its level on to the next one. One start at the top alone would stop at once: with few
    predicted items no bound is small."""
    predicted = (scores[None, :] >= _GRID[:, None]).sum(axis=1)
    false = ((scores[None, :] >= _GRID[:, None]) & ~y[None, :]).sum(axis=1)
    share = delta / len(_STARTS)
    passes = {1: _upper_bound(false, predicted, share) <= 1 - target + 1e-12}  # by the number of starts' levels held
    weight = np.isin(np.arange(len(_GRID)), _STARTS).astype(int)
    certified = np.zeros(len(_GRID), dtype=bool)
    held = 0
    for i in range(len(_GRID)):
        held = (held if i and certified[i - 1] else 0) + weight[i]
        if held:
            if held not in passes:
                passes[held] = _upper_bound(false, predicted, held * share) <= 1 - target + 1e-12
            certified[i] = passes[held][i]
    if certified.any():
        return float(_GRID[np.flatnonzero(certified)[-1]]), None
    return NEVER, float(max(0.0, 1 - _upper_bound(false, predicted, share).min()))


def _certify_recall(y: np.ndarray, scores: np.ndarray, target: float, delta: float) -> tuple[float, float | None]:
    """The highest grid threshold whose miss rate (1 - recall) is certified <= 1 - target with
    probability >= 1 - delta (fixed-sequence testing from the lowest threshold up: the miss rate only
    grows with the threshold), or (0, the best certified recall) when none is."""
    grid = _GRID[::-1]
    missed = (scores[None, :] < grid[:, None])[:, y].sum(axis=1)
    bound = _upper_bound(missed, np.full(len(grid), y.sum()), delta)
    fail = np.flatnonzero(bound > 1 - target + 1e-12)
    last = (fail[0] if len(fail) else len(grid)) - 1
    if last >= 0:
        return float(grid[last]), None
    return 0.0, float(1 - bound[0])


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
    Returns:
        ThresholdFit: the Thresholds (one value per label) and the labels missing a target.
    Raises:
        ConfigError: a bad objective, confidence, mode, min_positives, top_k or rule, or shapes that disagree.
    """
    goal = parse_objective(objective)
    if mode not in MODES:
        raise ConfigError(f"threshold mode {mode!r} is not one of {list(MODES)}")
    if min_positives < 0:
        raise ConfigError(f"min_positives must be >= 0, got {min_positives}")
    if confidence is not None and not (0 < confidence < 1 and goal.kind in ("precision", "recall") and mode == "per-label"):
        raise ConfigError(f"confidence={confidence!r}: expected a number in (0, 1) with a precision>=P or recall>=R "
                          f"objective and per-label thresholds (got objective {goal}, mode {mode!r})")
    if (mode == "top-k" and goal.kind != "f1") or (mode == "fixed" and goal.kind not in ("f1", "hamming")):
        raise ConfigError(f"objective {goal} applies to per-label and global thresholds, not to mode {mode!r}")
    y = np.asarray(targets).astype(bool)
    p = np.asarray(probs, dtype=np.float64)
    mask = np.ones_like(y) if known is None else np.asarray(known, dtype=bool)
    if y.ndim != 2 or y.shape != p.shape or mask.shape != y.shape:
        raise ConfigError(f"targets {y.shape}, probabilities {p.shape} and known {mask.shape} "
                          "must all have shape (items, labels)")
    n_labels = y.shape[1]
    rules = {"min_labels": min_labels, "max_labels": max_labels, "if_empty": if_empty}

    def result(values: list[float], fallback: Sequence[int] = (), unreachable: dict[int, float] | None = None) -> ThresholdFit:
        return ThresholdFit(Thresholds(mode, values, top_k, list(fallback), **rules), goal, confidence, unreachable or {})

    if mode == "top-k":
        return result([0.0] * n_labels)
    if mode == "fixed":
        return result([float(fixed)] * n_labels)
    if confidence is not None:
        certify = _certify_precision if goal.kind == "precision" else _certify_recall
        values, unreachable = [], {}
        for j in range(n_labels):
            rows = mask[:, j]
            t, best = certify(y[rows, j], p[rows, j], goal.value, 1 - confidence)
            values.append(t)
            if best is not None:
                unreachable[j] = best
        return result(values, (), unreachable)
    global_t, global_best = (_fit_one(y[mask], p[mask], goal) if (y & mask).any() else (DEFAULT_THRESHOLD, None))
    if mode == "global":
        return result([global_t] * n_labels, (), None if global_best is None else dict.fromkeys(range(n_labels), global_best))
    few = (y & mask).sum(axis=0) < max(min_positives, 1)
    values = np.full(n_labels, DEFAULT_THRESHOLD if goal.kind == "hamming" else global_t)
    fitted = np.flatnonzero(~few)
    unreachable = {} if global_best is None or goal.kind == "hamming" else dict.fromkeys(np.flatnonzero(few).tolist(),
                                                                                          global_best)
    if goal.kind in ("f1", "fbeta", "hamming"):
        values[fitted] = _fit_columns(y[:, fitted], p[:, fitted], mask[:, fitted], goal)
    else:
        for j in fitted:
            rows = mask[:, j]
            values[j], best = _fit_one(y[rows, j], p[rows, j], goal)
            if best is not None:
                unreachable[int(j)] = best
    return result([float(v) for v in values], np.flatnonzero(few).tolist(), dict(sorted(unreachable.items())))


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
