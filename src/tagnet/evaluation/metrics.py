"""Multi-label metrics: one function from (targets, probabilities, thresholds) to a report."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
from sklearn.metrics import (
    accuracy_score,
    coverage_error,
    label_ranking_loss,
    precision_recall_fscore_support,
)

from tagnet.decisions.calibration import ece as calibration_error
from tagnet.errors import DataError
from tagnet.decisions.thresholds import Thresholds, apply_thresholds, as_thresholds
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


def _prf(y_true: np.ndarray, y_pred: np.ndarray, average: str) -> tuple[float, float, float]:
    """Precision, recall, F1 from scikit-learn with zero_division=0."""
    p, r, f, _ = precision_recall_fscore_support(y_true, y_pred, average=average, zero_division=0)
    return float(p), float(r), float(f)


def _one_error(y_true: np.ndarray, scores: np.ndarray) -> float | None:
    """Share of items (with >= 1 true label) whose top-scored label is not one of their labels."""
    has_label = y_true.any(axis=1)
    if not has_label.any():
        return None
    top = np.argmax(scores[has_label], axis=1)
    return float(1.0 - y_true[has_label][np.arange(len(top)), top].mean())


def _checked_inputs(targets: np.ndarray, probs: np.ndarray, known: np.ndarray | None,
                    names: list[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(0/1 int8 targets, float64 probabilities, bool known mask); DataError for shapes, emptiness or NaN."""
    y = np.asarray(targets).astype(bool).astype(np.int8)
    p = np.asarray(probs, dtype=np.float64)
    mask = np.ones(y.shape, dtype=bool) if known is None else np.asarray(known, dtype=bool)
    if y.ndim != 2 or y.shape != p.shape or mask.shape != y.shape or y.shape[1] != len(names):
        raise DataError(f"targets {y.shape}, probabilities {p.shape} and known {mask.shape} must all "
                        f"have shape (items, labels) with one column per label name ({len(names)} names)")
    if len(y) == 0:
        raise DataError("no items to evaluate")
    if not mask.any():
        raise DataError(f"no known label values to evaluate: every one of the {y.size} cells is unknown")
    bad = ~np.isfinite(p)
    if bad.any():
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


AP_BLOCK_CELLS = 1 << 24  # cells (items x labels) of the sorted copies average_precision holds at once


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
    values = average_precision(np.asarray(targets), np.asarray(probs, dtype=np.float64), np.asarray(known, dtype=bool))
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


def _per_label(y: np.ndarray, p: np.ndarray, counts: tuple[np.ndarray, ...], mask: np.ndarray, names: list[str],
               thresholds: np.ndarray, ece: np.ndarray) -> list[dict[str, Any]]:
    """One row per label: AP, precision, recall, F1 on the rows where it is known (from its (tp, fp, fn) `counts`),
    support, threshold, ECE."""
    precision, recall, f1 = _prf_of_counts(*counts)
    ap, support, seen = average_precision(y, p, mask), (y.astype(bool) & mask).sum(axis=0), mask.any(axis=0)
    columns = {"label": names, "ap": _floats(ap, ~np.isnan(ap)), "precision": _floats(precision, seen),
               "recall": _floats(recall, seen), "f1": _floats(f1, seen), "support": support.tolist(),
               "threshold": np.asarray(thresholds, dtype=np.float64).tolist(), "ece": _floats(ece, ~np.isnan(ece))}
    return [dict(zip(columns, row)) for row in zip(*columns.values())]


def _example_based(yc: np.ndarray, pc: np.ndarray, sc: np.ndarray) -> tuple[Any, ...]:
    """(samples P/R/F1, exact match, ranking loss, coverage error, one-error) of the fully labelled items; Nones
    when there are none."""
    if not len(yc):
        return (None, None, None), None, None, None, None
    if yc.shape[1] == 1:  # scikit-learn takes one column for a binary task: add a label nobody has, scored lowest
        yc, pc = np.hstack([yc, np.zeros_like(yc)]), np.hstack([pc, np.zeros_like(pc)])
        sc = np.hstack([sc, np.full_like(sc, sc.min() - 1.0)])
    return (_prf(yc, pc, "samples"), float(accuracy_score(yc, pc)), float(label_ranking_loss(yc, sc)),
            float(coverage_error(yc, sc)), _one_error(yc, sc))


def evaluate_probabilities(
    targets: np.ndarray,
    probs: np.ndarray,
    thresholds: Thresholds | Sequence[float] | np.ndarray,
    *,
    label_names: Sequence[str],
    known: np.ndarray | None = None,
    hierarchy: Tree | None = None,
) -> MetricsReport:
    """Score probabilities against targets with scikit-learn's metrics.

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
        probs: (n_items, n_labels) probabilities (or any scores; higher = more likely).
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
    names = list(label_names)
    y, p, mask = _checked_inputs(targets, probs, known, names)
    th = as_thresholds(thresholds, num_labels=len(names))
    chosen = apply_thresholds(p, th)
    pred = (chosen if hierarchy is None else hierarchy.gate(chosen)).astype(np.int8)
    probabilities = bool(((p >= 0) & (p <= 1)).all())
    counts = _label_counts(y, pred, mask)
    per_label = _per_label(y, p, counts, mask, names, th.values,
                           calibration_error(y, p, mask) if probabilities else np.full(len(names), np.nan))
    aps = [row["ap"] for row in per_label if row["ap"] is not None]
    micro = [float(v[0]) for v in _prf_of_counts(*(np.array([c.sum()]) for c in counts))]
    macro = [float(np.mean([row[k] for row in per_label if row[k] is not None])) for k in ("precision", "recall", "f1")]
    complete = mask.all(axis=1)
    samples, exact, ranking, coverage, one_error = _example_based(y[complete], pred[complete], p[complete])

    return MetricsReport(
        label_names=names, threshold_mode=th.mode, n_items=len(y), n_complete=int(complete.sum()),
        mAP=float(np.mean(aps)) if aps else None, per_label=per_label,
        micro_precision=micro[0], micro_recall=micro[1], micro_f1=micro[2],
        macro_precision=macro[0], macro_recall=macro[1], macro_f1=macro[2],
        samples_precision=samples[0], samples_recall=samples[1], samples_f1=samples[2],
        hamming_loss=float((counts[1].sum() + counts[2].sum()) / mask.sum()), exact_match=exact,
        ranking_loss=ranking, coverage=coverage, one_error=one_error,
        labels_without_positives=[row["label"] for row in per_label if row["ap"] is None],
        ece=float(calibration_error(y[mask][:, None], p[mask][:, None])[0]) if probabilities else None,
        hierarchy=None if hierarchy is None else hierarchy_scores(
            y, pred, np.array([np.nan if row["ap"] is None else row["ap"] for row in per_label]), hierarchy, mask))
