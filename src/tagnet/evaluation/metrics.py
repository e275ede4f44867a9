"""Multi-label metrics: one function from (targets, probabilities, thresholds) to a report."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
from tagnet.decisions.arrays import float_scores, row_blocks
from tagnet.decisions.calibration import reliability
from tagnet.errors import DataError
from tagnet.decisions.chain import decided
from tagnet.decisions.thresholds import Thresholds, as_thresholds
from tagnet.hierarchy.metrics import hierarchy_scores
from tagnet.hierarchy.tree import Tree


NAMED_LABELS = 10  # labels a warning names before it says how many more (thousands of labels stay one readable line)


@dataclass
class MetricsReport:
    """Every metric of one evaluation; None where a metric is undefined (e.g. no item qualifies).

    Label-based metrics (per_label, mAP, micro, macro, hamming_loss) use every known cell.
    Example-based and ranking metrics (samples_*, exact_match, ranking_loss, coverage, one_error)
    use the `n_complete` items whose labels are all known. `labels_without_positives` lists the labels
    with no known positive in the evaluated data: they have no AP and are left out of mAP. `ece` (and
    per-label "ece") is the expected calibration error (15 bins), None for scores that are not probabilities.
    """

    label_names: list[str]
    threshold_mode: str
    n_items: int
    n_complete: int
    mAP: float | None
    per_label: list[dict[str, Any]]
    micro_precision: float
    micro_recall: float
    micro_f1: float
    macro_precision: float
    macro_recall: float
    macro_f1: float
    samples_precision: float | None
    samples_recall: float | None
    samples_f1: float | None
    hamming_loss: float
    exact_match: float | None
    ranking_loss: float | None
    coverage: float | None
    one_error: float | None
    labels_without_positives: list[str] = dataclasses.field(default_factory=list)
    ece: float | None = None  # expected calibration error over every known cell (per label: per_label "ece")
    # under a label hierarchy (tagnet.hierarchy.metrics.hierarchy_scores): hierarchical precision, recall, f1
    # (ancestors included), inconsistent decisions (a label without its parent) and per_depth scores
    hierarchy: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict of every field."""
        return dataclasses.asdict(self)

    def warnings(self) -> list[str]:
        """Lines a reader of the numbers should see: the labels without positives, which mAP leaves out."""
        if not self.labels_without_positives:
            return []
        names = self.labels_without_positives
        listed = ", ".join(names[:NAMED_LABELS]) + (f" and {len(names) - NAMED_LABELS} more, listed in the JSON report's "
                                                    "labels_without_positives" if len(names) > NAMED_LABELS else "")
        return [f"{len(names)} label(s) have no positive in this data ({listed}): mAP is the mean AP of the other "
                "labels; in the macro averages their precision, recall and F1 count as 0 (as in scikit-learn), unless no value of the "
                "label is known"]

    def summary(self) -> dict[str, float | None]:
        """The headline numbers: mAP, micro/macro/samples F1, Hamming loss, exact match."""
        return {"mAP": self.mAP, "micro_f1": self.micro_f1, "macro_f1": self.macro_f1,
                "samples_f1": self.samples_f1, "hamming_loss": self.hamming_loss,
                "exact_match": self.exact_match,
                **({"hierarchical_f1": self.hierarchy["f1"]} if self.hierarchy is not None else {})}


def _checked_inputs(targets: np.ndarray, probs: np.ndarray, known: np.ndarray | None,
                    names: list[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(bool targets, float32 or float64 probabilities as given (other types as float64), bool known mask); DataError
    for shapes, emptiness or NaN."""
    y = np.asarray(targets).astype(bool, copy=False)
    p = float_scores(probs)
    mask = np.ones(y.shape, dtype=bool) if known is None else np.asarray(known, dtype=bool)
    if y.ndim != 2 or y.shape != p.shape or mask.shape != y.shape or y.shape[1] != len(names):
        raise DataError(f"targets {y.shape}, probabilities {p.shape} and known {mask.shape} must all "
                        f"have shape (items, labels) with one column per label name ({len(names)} names)")
    if len(y) == 0:
        raise DataError("no items to evaluate")
    if not mask.any():
        raise DataError(f"no known label values to evaluate: every one of the {y.size} cells is unknown")
    if not (np.isfinite(p.min()) and np.isfinite(p.max())):  # NaN propagates to both
        bad = ~np.isfinite(p)
        i, j = map(int, np.argwhere(bad)[0])
        raise DataError(f"probabilities row {i + 1}, label {names[j]!r}: {p[i, j]} ({int(bad.sum())} such value(s)); "
                        "expected finite numbers (a model that diverged gives NaN)")
    return y, p, mask


def _label_counts(y: np.ndarray, pred: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-label true positives, false positives and false negatives over the known cells."""
    truth, said = y.astype(bool), pred.astype(bool) & mask
    return (truth & said).sum(axis=0), (~truth & said).sum(axis=0), (truth & mask & ~said).sum(axis=0)


def _prf_of_counts(tp: np.ndarray, fp: np.ndarray, fn: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Precision, recall and F1 of counts (arrays, or 1-element arrays of sums), as scikit-learn's with
    zero_division=0."""
    return _ratio(tp, tp + fp), _ratio(tp, tp + fn), _ratio(2 * tp, 2 * tp + fp + fn)


def _ratio(top: np.ndarray, bottom: np.ndarray) -> np.ndarray:
    return np.divide(top, bottom, out=np.zeros(len(top)), where=bottom > 0)


def _floats(values: np.ndarray, keep: np.ndarray) -> list[float | None]:
    return [float(v) if k else None for v, k in zip(values.tolist(), keep.tolist())]


AP_BLOCK_CELLS = 1 << 22  # cells (items x labels) of the sorted copies average_precision holds at once


def average_precision(y: np.ndarray, p: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Per-label average precision over the known cells, as scikit-learn's average_precision_score (tied scores are
    one threshold); NaN for a label without a known positive. Columns are sorted together, in blocks of labels."""
    n, width = y.shape
    out = np.full(width, np.nan)
    block = max(1, AP_BLOCK_CELLS // max(n, 1))
    rows = np.arange(n)[:, None]
    for start in range(0, width, block):
        cols = slice(start, start + block)
        score = np.where(mask[:, cols], p[:, cols], -np.inf)  # unknown cells sort last and are never positive
        order = np.argsort(-score, axis=0, kind="stable")
        ranked = np.take_along_axis(score, order, axis=0)
        hit = np.take_along_axis(y[:, cols].astype(bool) & mask[:, cols], order, axis=0)
        precision = np.cumsum(hit, axis=0) / (rows + 1.0)
        last = np.ones(ranked.shape, bool)  # the last item of each group of tied scores: where precision is taken
        last[:-1] = ranked[1:] != ranked[:-1]
        group_end = np.minimum.accumulate(np.where(last, rows, n)[::-1], axis=0)[::-1]
        positives = hit.sum(axis=0)
        total = (hit * np.take_along_axis(precision, group_end, axis=0)).sum(axis=0)
        out[cols] = np.where(positives > 0, total / np.maximum(positives, 1), np.nan)
    return out


def mean_average_precision(targets: np.ndarray, probs: np.ndarray, known: np.ndarray) -> float:
    """Mean of average_precision over the labels with a known positive (what validation mAP is); NaN without any."""
    values = average_precision(np.asarray(targets), float_scores(probs), np.asarray(known, dtype=bool))
    values = values[np.isfinite(values)]
    return float(values.mean()) if len(values) else float("nan")


def f1_at(targets: np.ndarray, probs: np.ndarray, known: np.ndarray, threshold: float = 0.5) -> tuple[float, float]:
    """(micro-F1, macro-F1) of `probs` >= `threshold` over the known cells, as evaluate_probabilities gives them (macro:
    over the labels with a known cell)."""
    y, mask = np.asarray(targets).astype(bool), np.asarray(known, dtype=bool)
    counts = _label_counts(y, np.asarray(probs) >= threshold, mask)
    micro = _prf_of_counts(*(np.array([c.sum()]) for c in counts))[2][0]
    macro = _prf_of_counts(*counts)[2][mask.any(axis=0)]
    return float(micro), float(macro.mean()) if len(macro) else float("nan")


def _per_label(names: list[str], counts: tuple[np.ndarray, ...], scores: dict[str, Any],
               thresholds: np.ndarray) -> list[dict[str, Any]]:
    """One row per label: AP, precision, recall, F1 on the rows where it is known (from its (tp, fp, fn) `counts`),
    support, threshold, ECE."""
    precision, recall, f1 = _prf_of_counts(*counts)
    ap, ece, seen = scores["ap"], scores["ece"], scores["seen"]
    columns = {"label": names, "ap": _floats(ap, ~np.isnan(ap)), "precision": _floats(precision, seen),
               "recall": _floats(recall, seen), "f1": _floats(f1, seen), "support": scores["support"].tolist(),
               "threshold": np.asarray(thresholds, dtype=np.float64).tolist(), "ece": _floats(ece, ~np.isnan(ece))}
    return [dict(zip(columns, row)) for row in zip(*columns.values())]


def _ranking_sums(yc: np.ndarray, sc: np.ndarray) -> tuple[float, float, int, int]:
    """(summed label ranking loss, summed coverage error, one-errors, items with a label) of fully labelled rows, as
    scikit-learn's label_ranking_loss and coverage_error define them per row (a label scored as high as a true one
    ranks above it)."""
    n, width = sc.shape
    positives = yc.sum(axis=1)
    lowest_true = np.where(yc, sc, np.inf).min(axis=1)
    coverage = np.where(positives > 0, (sc >= lowest_true[:, None]).sum(axis=1), 0)
    order = np.argsort(sc, axis=1, kind="stable")  # ascending: a false label pairs with every true one at or below
    ranked, hit = np.take_along_axis(sc, order, axis=1), np.take_along_axis(yc, order, axis=1)
    last = np.ones(ranked.shape, bool)  # the last label of each group of tied scores
    last[:, :-1] = ranked[:, 1:] != ranked[:, :-1]
    cols = np.arange(width)
    group_end = np.minimum.accumulate(np.where(last, cols, width)[:, ::-1], axis=1)[:, ::-1]
    below = np.take_along_axis(np.cumsum(hit, axis=1), group_end, axis=1)  # true labels scored <= each label
    wrong = np.where(hit, 0, below).sum(axis=1)
    pairs = positives * (width - positives)
    loss = np.divide(wrong, pairs, out=np.zeros(n), where=pairs > 0)
    has_label = positives > 0
    top = np.argmax(sc[has_label], axis=1)
    one_errors = int((~yc[has_label][np.arange(len(top)), top]).sum())
    return float(loss.sum()), float(coverage.sum()), one_errors, int(has_label.sum())


def _rule_free_scores(y: np.ndarray, p: np.ndarray, mask: np.ndarray, complete: np.ndarray) -> dict[str, Any]:
    """What does not depend on the decisions: per-label AP, support and ECE, the pooled ECE, and the ranking metrics
    of the fully labelled items (ranking loss, coverage error, one-error; None without such items)."""
    probabilities = bool(p.min() >= 0 and p.max() <= 1)
    calibration = reliability(y, p, mask) if probabilities else None
    sums = np.zeros(4)
    for rows in row_blocks(len(y), y.shape[1]):
        full = complete[rows]
        if full.any():
            sums += _ranking_sums(y[rows][full], p[rows][full])
    n_complete = int(complete.sum())
    return {"ap": average_precision(y, p, mask), "support": (y & mask).sum(axis=0), "seen": mask.any(axis=0),
            "ece": calibration.ece if probabilities else np.full(y.shape[1], np.nan),
            "pooled_ece": calibration.pooled_ece if probabilities else None,
            "ranking_loss": float(sums[0] / n_complete) if n_complete else None,
            "coverage": float(sums[1] / n_complete) if n_complete else None,
            "one_error": float(1.0 - (sums[3] - sums[2]) / sums[3]) if sums[3] else None}


def _decisions(y: np.ndarray, p: np.ndarray, mask: np.ndarray, complete: np.ndarray, th: Thresholds,
               hierarchy: Tree | None) -> dict[str, Any]:
    """One rule's decisions, block of rows by block: per-label (tp, fp, fn) over the known cells, samples P/R/F1 and
    exact match of the fully labelled items (None without any), and under a hierarchy every gated decision."""
    width = y.shape[1]
    counts = [np.zeros(width, np.int64) for _ in range(3)]
    sums, parts = np.zeros(4), []
    for rows in row_blocks(len(y), width):
        said = decided(p[rows], th, hierarchy)
        if hierarchy is not None:
            parts.append(said)
        for total, cells in zip(counts, _label_counts(y[rows], said, mask[rows])):
            total += cells
        full = complete[rows]
        truth, said_full = y[rows][full], said[full]
        hits, made, true = (truth & said_full).sum(axis=1), said_full.sum(axis=1), truth.sum(axis=1)
        sums += [_ratio(hits, made).sum(), _ratio(hits, true).sum(), _ratio(2 * hits, made + true).sum(),
                 (truth == said_full).all(axis=1).sum()]
    n_complete = int(complete.sum())
    samples = (sums / n_complete).tolist() if n_complete else [None] * 4
    return {"counts": tuple(counts), "samples": samples[:3], "exact": samples[3],
            "pred": np.concatenate(parts) if hierarchy is not None else None}


def evaluate_probabilities(
    targets: np.ndarray,
    probs: np.ndarray,
    thresholds: Thresholds | Sequence[float] | np.ndarray,
    *,
    label_names: Sequence[str],
    known: np.ndarray | None = None,
    hierarchy: Tree | None = None,
) -> MetricsReport:
    """Score probabilities against targets (the report of evaluate_rules with one rule).

    Unknown cells (known=False) are excluded: per-label metrics use the rows where that label is
    known; micro averages and Hamming loss count known cells only; macro averages are the mean of
    the per-label values; example-based metrics (samples P/R/F1, exact match) and ranking metrics
    (ranking loss, coverage error, one-error) use only items whose labels are all known. With
    every cell known all values equal scikit-learn's on the full matrices, except mAP: it is the mean
    average precision over labels with >= 1 known positive (per-label AP is None for the others, which
    are listed in `labels_without_positives`), while scikit-learn's average_precision_score(average=
    "macro") counts such a label as AP 0. Macro precision/recall/F1 are scikit-learn's (zero_division=0:
    a label without positives scores 0), except that a label with no known value at all has None there
    and is left out of them. A single label (one column) is scored as multi-label data with one label.
    One-error counts items with >= 1 label.

    Args:
        targets: (n_items, n_labels) 0/1 matrix.
        probs: (n_items, n_labels) probabilities (or any scores; higher = more likely); float32 is used as it is.
        thresholds: a Thresholds object or one threshold per label.
        label_names: the label of each column.
        known: (n_items, n_labels) bool mask, or None when every value is known.
        hierarchy: the labels' tree (aligned to label_names): a label is predicted only when its parent is
            (Tree.gate), and the report adds hierarchical and per-depth scores (MetricsReport.hierarchy).
    Returns:
        MetricsReport.
    Raises:
        DataError: shapes disagree, there are no items or no known values, or a probability is NaN or infinite.
        ConfigError: the thresholds are for a different number of labels.
    """
    return evaluate_rules(targets, probs, [thresholds], label_names=label_names, known=known, hierarchy=hierarchy)[0]


def evaluate_rules(targets: np.ndarray, probs: np.ndarray, rules: Sequence[Thresholds | Sequence[float] | np.ndarray],
                   *, label_names: Sequence[str], known: np.ndarray | None = None,
                   hierarchy: Tree | None = None) -> list[MetricsReport]:
    """One MetricsReport per decision rule in `rules` (as evaluate_probabilities gives it), the metrics that do not
    depend on the decisions (AP, ECE, ranking) computed once, the decisions block of rows by block (no copy of the
    whole probabilities).

    Raises:
        DataError, ConfigError: as evaluate_probabilities.
    """
    names = list(label_names)
    y, p, mask = _checked_inputs(targets, probs, known, names)
    rules = [as_thresholds(rule, num_labels=len(names)) for rule in rules]
    complete = mask.all(axis=1)
    scores = _rule_free_scores(y, p, mask, complete)
    return [_report(names, y, mask, complete, scores, th, _decisions(y, p, mask, complete, th, hierarchy), hierarchy)
            for th in rules]


def _report(names: list[str], y: np.ndarray, mask: np.ndarray, complete: np.ndarray, scores: dict[str, Any],
            th: Thresholds, decisions: dict[str, Any], hierarchy: Tree | None) -> MetricsReport:
    """The MetricsReport of one rule's decisions and the rule-free scores."""
    counts = decisions["counts"]
    per_label = _per_label(names, counts, scores, th.values)
    seen, ap = scores["seen"], scores["ap"]
    found = ap[~np.isnan(ap)]
    micro = [float(v[0]) for v in _prf_of_counts(*(np.array([c.sum()]) for c in counts))]
    macro = [float(values[seen].mean()) for values in _prf_of_counts(*counts)]
    samples = decisions["samples"]
    return MetricsReport(
        label_names=names, threshold_mode=th.mode, n_items=len(y), n_complete=int(complete.sum()),
        mAP=float(np.mean(found)) if len(found) else None, per_label=per_label,
        micro_precision=micro[0], micro_recall=micro[1], micro_f1=micro[2],
        macro_precision=macro[0], macro_recall=macro[1], macro_f1=macro[2],
        samples_precision=samples[0], samples_recall=samples[1], samples_f1=samples[2],
        hamming_loss=float((counts[1].sum() + counts[2].sum()) / mask.sum()), exact_match=decisions["exact"],
        ranking_loss=scores["ranking_loss"], coverage=scores["coverage"], one_error=scores["one_error"],
        labels_without_positives=[name for name, value in zip(names, ap.tolist()) if np.isnan(value)],
        ece=scores["pooled_ece"],
        hierarchy=None if hierarchy is None else hierarchy_scores(
            y.view(np.int8), decisions["pred"].view(np.int8), ap, hierarchy, mask))
