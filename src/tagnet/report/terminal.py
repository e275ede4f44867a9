"""Terminal output of the commands (rich): metrics, splits, predictions, exports, audits; core modules return data only."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from rich.console import Console
from rich.markup import escape
from rich.table import Column, Table

from tagnet.data.label_table import LabelTable
from tagnet.evaluation.metrics import MetricsReport
from tagnet.inference.artifact import META_FILE
from tagnet.inference.predictor import PredictionResults


MAX_LABEL_ROWS = 40  # per-label rows of the metrics table before it shows a selection
MAX_LABEL_COLUMNS = 12  # label columns of the predictions table before it shows each input's top labels
TOP_PROBABILITIES = 5


def render_predictions(results: PredictionResults, console: Console, *, max_rows: int = 50,
                       total: int | None = None) -> None:
    """Print a table: source, predicted labels, each label's probability (beyond MAX_LABEL_COLUMNS labels: the
    TOP_PROBABILITIES most probable labels of each input instead); then unreadable inputs. `total`: how many
    predictions there are when `results` holds only the first ones (a streamed prediction)."""
    wide = len(results.label_names) > MAX_LABEL_COLUMNS
    columns = [Column("most probable", overflow="fold")] if wide else [
        Column(name, justify="right", no_wrap=True) for name in results.label_names]
    table = Table(Column("source", overflow="fold"), Column("labels", overflow="fold"), *columns)
    for p in results.predictions[:max_rows]:
        if wide:
            top = sorted(p.probabilities.items(), key=lambda item: -item[1])[:TOP_PROBABILITIES]
            cells = [" ".join(f"{name} {value:.3f}" for name, value in top)]
        else:
            cells = [f"{p.probabilities[n]:.3f}" for n in results.label_names]
        table.add_row(p.source, " ".join(p.labels) or "-", *cells)
    console.print(table)
    total = len(results.predictions) if total is None else total
    if total > max_rows:
        console.print(f"... {total - max_rows} more rows (use --output to write them all)")
    for reason in results.errors.values():
        console.print(f"[yellow]skipped[/yellow] {reason}")



def render_export(report, console: Console) -> None:
    """Print what an export (tagnet.inference.export.ExportReport) wrote and its checks, one line each."""
    from tagnet.inference.export import PARITY_TOLERANCE

    console.print(f"wrote {report.onnx_path} ({report.size_bytes / 1e6:.1f} MB); onnx.checker passed; parity with "
                  f"PyTorch on {report.parity_samples} sample inputs: max |diff| {report.parity_max_abs_diff:.1e} "
                  f"(limit {PARITY_TOLERANCE:.0e})")
    if report.tokenizer_path is not None:
        console.print(f"wrote {report.tokenizer_path} (the tokenizer that makes the model's input_ids)")
    if report.int8_path is not None:
        console.print(f"wrote {report.int8_path} ({report.int8_size_bytes / 1e6:.1f} MB, int8 dynamic); "
                      f"max |diff| from PyTorch {report.int8_max_abs_diff:.1e}")
    if report.val_map is not None:
        shown = {name: "n/a" if value is None else f"{value:+.4f}" if name == "change" else f"{value:.4f}"
                 for name, value in report.val_map.items()}
        console.print("validation mAP: " + ", ".join(f"{name} {value}" for name, value in shown.items()))
    elif report.int8_path is not None:
        console.print("mAP change from quantisation not measured: pass --val LABELS (and --images DIR for images)")


def render_issues(result, console: Console, *, top: int = 10) -> None:
    """Print the `top` likely errors of a tagnet.curation.workflow.AuditResult and where the full list went."""
    table = Table("item", "label", "issue", "given", "probability", "score",
                  title=f"{len(result.issues)} likely label errors in {result.items} inputs (top {min(top, len(result.issues))})")
    for issue in result.issues[:top]:
        table.add_row(issue.item, issue.label, issue.issue, str(issue.given), f"{issue.probability:.3f}", f"{issue.score:.3f}")
    console.print(table)
    for reason in list(result.skipped.values())[:5]:
        console.print(f"[yellow]skipped[/yellow] {reason}")
    for what, path in (("issues", result.output), ("page", result.page)):
        if path is not None:
            console.print(f"{what} written to {path}", soft_wrap=True)


def render_calibration(result, console: Console) -> None:
    """Print each label (of a tagnet.decisions.refit.CalibrationResult)'s temperature, new threshold and calibration error before and after, then the notes."""
    table = Table("label", "temperature", "threshold", "ECE before", "ECE after",
                  title=f"Calibrated on {result.items} labelled inputs")
    temps = result.calibration.temperatures if result.calibration else [1.0] * len(result.label_names)
    shown = largest(np.nan_to_num(np.asarray(result.ece_before, dtype=float), nan=-np.inf), MAX_LABEL_ROWS)
    for j in shown:
        table.add_row(result.label_names[j], f"{temps[j]:.3f}", f"{result.fit.thresholds.values[j]:.3f}",
                      *("-" if np.isnan(v) else f"{v:.3f}" for v in (result.ece_before[j], result.ece_after[j])))
    console.print(table)
    if len(shown) < len(result.label_names):
        console.print(f"{len(shown)} of {len(result.label_names)} labels shown: those with the largest calibration "
                      f"error before; every label's values are in {result.artifact_dir / META_FILE}", soft_wrap=True)
    for reason in result.skipped.values():
        console.print(f"[yellow]skipped[/yellow] {reason}")
    for line in result.notes:
        console.print(f"[yellow]note[/yellow] {line}", soft_wrap=True)
    console.print(f"thresholds{' and temperatures' if result.calibration else ''} written to "
                  f"{result.artifact_dir / META_FILE}; the former file is {result.previous} (move it back to undo)",
                  soft_wrap=True)


RULE_KEYS = ("hamming_loss", "micro_f1", "macro_f1", "exact_match")
RULE_NAMES = {"p>=0.5": "p >= 0.5 for every label (minimises expected Hamming loss)",
              "f1": "per-label F1 thresholds (fitted on validation)"}


def render_rules(report, others: dict, console: Console) -> None:
    """One row per decision rule, side by side: the model's own thresholds (`report`), then `others`
    ({"p>=0.5" | "f1": MetricsReport}): Hamming loss, micro/macro-F1, exact match."""
    table = Table(title="Decision rules side by side (the same probabilities)")
    for column in ("rule", "Hamming loss", "micro-F1", "macro-F1", "exact match"):
        table.add_column(column, justify="left" if column == "rule" else "right")
    rows = [(f"the model's thresholds ({report.threshold_mode})", report)]
    rows += [(RULE_NAMES.get(name, name), other) for name, other in others.items()]
    for name, row in rows:
        table.add_row(name, *("-" if getattr(row, key) is None else f"{getattr(row, key):.4f}" for key in RULE_KEYS))
    console.print(table)


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def shown_labels(per_label: list[dict], limit: int) -> tuple[list[dict], str]:
    """The per-label rows a terminal table shows: all of them up to `limit`; beyond it the limit/2 labels with the
    most support and the limit/2 with the lowest F1 among the rest (in label order), and a line saying so."""
    if len(per_label) <= limit:
        return per_label, ""
    support = np.array([row["support"] for row in per_label])
    f1 = np.array([np.nan if row["f1"] is None else row["f1"] for row in per_label], dtype=float)
    frequent = np.argsort(-support, kind="stable")[:limit // 2]
    rest = np.setdiff1d(np.arange(len(per_label)), frequent)
    worst = rest[np.argsort(np.nan_to_num(f1[rest], nan=np.inf), kind="stable")[:limit - len(frequent)]]
    rows = [per_label[j] for j in np.sort(np.concatenate([frequent, worst]))]
    return rows, (f"{len(rows)} of {len(per_label)} labels shown: the {len(frequent)} with the most support and the "
                  f"{len(worst)} with the lowest F1; every label is in the JSON report (--json)")


def largest(values: np.ndarray, limit: int) -> np.ndarray:
    """The indices of a terminal table's per-label rows: every label up to `limit`, else the `limit` with the largest
    `values` (in label order)."""
    if len(values) <= limit:
        return np.arange(len(values))
    return np.sort(np.argsort(-values, kind="stable")[:limit])


def render_metrics(report: MetricsReport, console: Console, *, max_labels: int = MAX_LABEL_ROWS) -> None:
    """Print a per-label table (AP, precision, recall, F1, support, threshold) with averages, then the
    example-based and ranking metrics. Beyond `max_labels` labels the table shows a selection (shown_labels)."""
    rows, shown = shown_labels(report.per_label, max_labels)
    table = Table(title="Per-label metrics (precision, recall, F1 at fitted thresholds)",
                  caption=f"threshold mode: {report.threshold_mode}; a label is predicted when its probability >= "
                          "its threshold" + (f"; {shown}" if shown else ""))
    for column in ("label", "AP", "precision", "recall", "F1", "support", "threshold", "ECE"):
        table.add_column(column, justify="left" if column == "label" else "right")
    for row in rows:
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
    if report.hierarchy is not None:
        render_hierarchy(report.hierarchy, console)
    for line in report.warnings():
        console.print(f"[yellow]warning[/] {line}", soft_wrap=True)


def render_hierarchy(scores: dict, console: Console) -> None:
    """The hierarchical scores of a report (MetricsReport.hierarchy): precision, recall and F1 with ancestors included,
    the decisions that break the tree, and micro-F1 and mAP per depth."""
    table = Table(title="Hierarchy (true and predicted label sets with their ancestors; Kiritchenko et al. 2005)")
    for column in ("depth", "labels", "precision", "recall", "F1", "mAP"):
        table.add_column(column, justify="left" if column == "depth" else "right")
    for row in scores["per_depth"]:
        table.add_row(str(row["depth"]), str(row["labels"]), _fmt(row["micro_precision"]), _fmt(row["micro_recall"]),
                      _fmt(row["micro_f1"]), _fmt(row["mAP"]))
    table.add_section()
    table.add_row("hierarchical", "", _fmt(scores["precision"]), _fmt(scores["recall"]), _fmt(scores["f1"]), "")
    console.print(table)
    console.print(f"inconsistent decisions (a label without its parent): {scores['inconsistent']}")


def render_split(parts: dict[str, LabelTable], console: Console, *, paths: dict[str, Path] | None = None) -> None:
    """Print item counts and each label's share per part, and the largest share gap."""
    table = Table(box=None, padding=(0, 2))
    table.add_column("label")
    for name in parts:
        table.add_column(name, justify="right")
    table.add_row("[bold]items[/bold]", *(str(len(p)) for p in parts.values()))
    labels = next(iter(parts.values())).label_names
    counts = np.stack([part.label_counts() for part in parts.values()])  # (parts, labels)
    shares = counts / np.array([len(part) for part in parts.values()])[:, None]
    gaps = shares.max(axis=0) - shares.min(axis=0) if labels else np.zeros(0)
    shown = largest(gaps, MAX_LABEL_ROWS)
    for j in shown:
        table.add_row(escape(labels[j]), *(f"{c} ({s:.1%})" for c, s in zip(counts[:, j], shares[:, j])))
    gap = float(gaps.max()) if labels else 0.0
    console.print(table)
    if len(shown) < len(labels):
        console.print(f"{len(shown)} of {len(labels)} labels shown: those whose share differs most between parts")
    console.print(f"largest difference of a label's share between parts: {gap * 100:.1f} points")
    for name, path in (paths or {}).items():
        console.print(f"wrote {name}: {escape(str(path))}", soft_wrap=True)
