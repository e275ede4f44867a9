"""Multi-label metrics: one function from (targets, probabilities, thresholds) to a report."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
from rich.console import Console
from rich.table import Table
from sklearn.metrics import (
    accuracy_score,
    coverage_error,
    hamming_loss,
    label_ranking_loss,
    precision_recall_fscore_support,
)

from tagnet.decisions.calibration import ece as calibration_error
from tagnet.errors import DataError
from tagnet.decisions.thresholds import Thresholds, apply_thresholds, as_thresholds


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

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict of every field."""
        return dataclasses.asdict(self)

    def warnings(self) -> list[str]:
        """Lines a reader of the numbers should see: the labels without positives, which mAP leaves out."""
        if not self.labels_without_positives:
            return []
        return [f"{len(self.labels_without_positives)} label(s) have no positive in this data "
                f"({', '.join(self.labels_without_positives)}): mAP is the mean AP of the other labels; in the macro "
                "averages their precision, recall and F1 count as 0 (as in scikit-learn), unless no value of the "
                "label is known"]

    def summary(self) -> dict[str, float | None]:
        """The headline numbers: mAP, micro/macro/samples F1, Hamming loss, exact match."""
        return {"mAP": self.mAP, "micro_f1": self.micro_f1, "macro_f1": self.macro_f1,
                "samples_f1": self.samples_f1, "hamming_loss": self.hamming_loss,
                "exact_match": self.exact_match}


def _prf(y_true: np.ndarray, y_pred: np.ndarray, average: str | None) -> tuple[float, float, float]:
    """Precision, recall, F1 from scikit-learn with zero_division=0."""
    labels = [1] if average is None else None
    p, r, f, _ = precision_recall_fscore_support(y_true, y_pred, labels=labels, average=average, zero_division=0)
    if average is None:
        p, r, f = p[0], r[0], f[0]
    return float(p), float(r), float(f)


def _one_error(y_true: np.ndarray, scores: np.ndarray) -> float | None:
    """Share of items (with >= 1 true label) whose top-scored label is not one of their labels."""
    has_label = y_true.any(axis=1)
    if not has_label.any():
        return None
    top = np.argmax(scores[has_label], axis=1)
    return float(1.0 - y_true[has_label][np.arange(len(top)), top].mean())


def average_precisions(targets: np.ndarray, probs: np.ndarray, known: np.ndarray | None = None) -> np.ndarray:
    """Each label's average precision on its known rows, as scikit-learn's average_precision_score (precision at each
    distinct score, weighted by the recall it adds), for every label at once; NaN for a label without a known
    positive. Returns float64 (n_labels,)."""
    probs = np.asarray(probs, dtype=np.float64)
    known = np.ones(probs.shape, dtype=bool) if known is None else np.asarray(known, dtype=bool)
    scores = np.where(known, probs, -np.inf)  # unknown cells sort last and count for nothing
    order = np.argsort(-scores, axis=0, kind="stable")
    s = np.take_along_axis(scores, order, axis=0)
    y = np.take_along_axis((np.asarray(targets) > 0.5) & known, order, axis=0)
    k = np.take_along_axis(known, order, axis=0)
    tp, counted = np.cumsum(y, axis=0), np.cumsum(k, axis=0)
    last = k & np.vstack([s[1:] != s[:-1], np.ones((1, s.shape[1]), dtype=bool)])  # each distinct score's last row
    at_last = np.where(last, tp, 0)
    before = np.maximum.accumulate(np.vstack([np.zeros((1, s.shape[1]), dtype=tp.dtype), at_last[:-1]]), axis=0)
    gain = np.where(last, tp - before, 0)
    positives = y.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (gain * tp / np.maximum(counted, 1)).sum(axis=0) / np.where(positives > 0, positives, np.nan)


def mean_average_precision(targets: np.ndarray, probs: np.ndarray, known: np.ndarray | None = None) -> float:
    """Mean over labels with a known positive of average_precisions; NaN without any."""
    values = average_precisions(targets, probs, known)
    values = values[np.isfinite(values)]
    return float(values.mean()) if len(values) else float("nan")


def evaluate_probabilities(
    targets: np.ndarray,
    probs: np.ndarray,
    thresholds: Thresholds | Sequence[float] | np.ndarray,
    *,
    label_names: Sequence[str],
    known: np.ndarray | None = None,
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
    Returns:
        MetricsReport.
    Raises:
        DataError: shapes disagree, there are no items or no known values, or a probability is NaN or infinite.
        ConfigError: the thresholds are for a different number of labels.
    """
    y = np.asarray(targets).astype(bool).astype(np.int8)
    p = np.asarray(probs, dtype=np.float64)
    mask = np.ones(y.shape, dtype=bool) if known is None else np.asarray(known, dtype=bool)
    names = list(label_names)
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
    th = as_thresholds(thresholds, num_labels=len(names))
    pred = apply_thresholds(p, th).astype(np.int8)
    probabilities = bool(((p >= 0) & (p <= 1)).all())
    ece = calibration_error(y, p, mask) if probabilities else np.full(len(names), np.nan)

    per_label, label_aps = [], average_precisions(y, p, mask)
    for j, name in enumerate(names):
        rows = mask[:, j]
        yj, pj = y[rows, j], pred[rows, j]
        precision, recall, f1 = _prf(yj, pj, None) if rows.any() else (None, None, None)
        ap = float(label_aps[j]) if np.isfinite(label_aps[j]) else None
        per_label.append({"label": name, "ap": ap, "precision": precision, "recall": recall, "f1": f1,
                          "support": int(yj.sum()), "threshold": float(th.values[j]),
                          "ece": None if np.isnan(ece[j]) else float(ece[j])})
    aps = [row["ap"] for row in per_label if row["ap"] is not None]

    micro = _prf(y[mask], pred[mask], "binary")
    macro = [float(np.mean([row[k] for row in per_label if row[k] is not None])) for k in ("precision", "recall", "f1")]

    complete = mask.all(axis=1)
    yc, pc, sc = y[complete], pred[complete], p[complete]
    if len(names) == 1:  # scikit-learn takes one column for a binary task: add a label nobody has, scored lowest
        yc, pc = np.hstack([yc, np.zeros_like(yc)]), np.hstack([pc, np.zeros_like(pc)])
        sc = np.hstack([sc, np.full_like(sc, sc.min() - 1.0 if len(sc) else 0.0)])
    if complete.any():
        samples: tuple[float | None, ...] = _prf(yc, pc, "samples")
        exact = float(accuracy_score(yc, pc))
        ranking, coverage = float(label_ranking_loss(yc, sc)), float(coverage_error(yc, sc))
    else:
        samples, exact, ranking, coverage = (None, None, None), None, None, None

    return MetricsReport(
        label_names=names, threshold_mode=th.mode, n_items=len(y), n_complete=int(complete.sum()),
        mAP=float(np.mean(aps)) if aps else None, per_label=per_label,
        micro_precision=micro[0], micro_recall=micro[1], micro_f1=micro[2],
        macro_precision=macro[0], macro_recall=macro[1], macro_f1=macro[2],
        samples_precision=samples[0], samples_recall=samples[1], samples_f1=samples[2],
        hamming_loss=float(hamming_loss(y[mask], pred[mask])), exact_match=exact,
        ranking_loss=ranking, coverage=coverage, one_error=_one_error(yc, sc) if complete.any() else None,
        labels_without_positives=[row["label"] for row in per_label if row["ap"] is None],
        ece=float(calibration_error(y[mask][:, None], p[mask][:, None])[0]) if probabilities else None)


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def render_metrics(report: MetricsReport, console: Console) -> None:
    """Print a per-label table (AP, precision, recall, F1, support, threshold) with averages, then the
    example-based and ranking metrics."""
    table = Table(title="Per-label metrics (precision, recall, F1 at fitted thresholds)",
                  caption=f"threshold mode: {report.threshold_mode}; a label is predicted when its probability >= "
                          "its threshold")
    for column in ("label", "AP", "precision", "recall", "F1", "support", "threshold", "ECE"):
        table.add_column(column, justify="left" if column == "label" else "right")
    for row in report.per_label:
        table.add_row(row["label"], _fmt(row["ap"]), _fmt(row["precision"]), _fmt(row["recall"]),
                      _fmt(row["f1"]), str(row["support"]), _fmt(row["threshold"]), _fmt(row.get("ece")))
    table.add_section()
    support = str(sum(row["support"] for row in report.per_label))
    table.add_row("micro avg (F1 at fitted thresholds)", "", _fmt(report.micro_precision), _fmt(report.micro_recall),
                  _fmt(report.micro_f1), support, "", _fmt(report.ece))
    table.add_row("macro avg (mAP)", _fmt(report.mAP), _fmt(report.macro_precision),
                  _fmt(report.macro_recall), _fmt(report.macro_f1), support, "", "")
    table.add_row("samples avg", "", _fmt(report.samples_precision), _fmt(report.samples_recall),
                  _fmt(report.samples_f1), "", "", "")
    console.print(table)

    overall = Table(title=f"Example-based metrics ({report.n_complete} of {report.n_items} items fully labelled)")
    overall.add_column("metric")
    overall.add_column("value", justify="right")
    overall.add_column("better", justify="center")
    for name, value, better in (("Hamming loss", report.hamming_loss, "lower"),
                                ("exact match", report.exact_match, "higher"),
                                ("ranking loss", report.ranking_loss, "lower"),
                                ("coverage error", report.coverage, "lower"),
                                ("one-error", report.one_error, "lower"),
                                ("calibration error (ECE)", report.ece, "lower")):
        overall.add_row(name, _fmt(value), better)
    console.print(overall)
    for line in report.warnings():
        console.print(f"[yellow]warning[/] {line}", soft_wrap=True)
