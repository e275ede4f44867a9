"""Terminal rendering of a dataset check (tagnet data check): steps, the reading chosen, samples, labels, problems."""

from __future__ import annotations

from collections import defaultdict

import numpy as np
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from tagnet.data.check import DatasetReport, Problem
from tagnet.report.terminal import MAX_LABEL_ROWS

SHOWN_PER_KIND = 10  # render_report lists this many problems of one kind, then a count


def render_report(report: DatasetReport, console: Console) -> None:
    """Print `report` as a step table, label statistics and the list of problems."""
    style = {"ok": "green", "warning": "yellow", "failed": "bold red", "skipped": "dim"}
    console.print(f"[bold]Dataset check[/bold]: {escape(report.source)}", soft_wrap=True)
    steps = Table(show_header=True, header_style="bold", box=None, padding=(0, 2))
    steps.add_column("step")
    steps.add_column("status")
    steps.add_column("detail", overflow="fold")
    for k, step in enumerate(report.steps, start=1):
        steps.add_row(f"{k}. {step.name}", f"[{style[step.status]}]{step.status}[/]", escape(step.detail))
    console.print(steps)
    _render_reading(report, console)
    for note in report.notes:
        console.print(f"[cyan]note[/] {escape(note)}", soft_wrap=True)
    if report.labels:
        labels = Table(title="Labels", title_justify="left", box=None, padding=(0, 2))
        for name, justify in (("label", "left"), ("items", "right"), ("share", "right"), ("unknown", "right")):
            labels.add_column(name, justify=justify)
        names, shown = _shown_labels(report)
        for name in names:
            count = report.label_counts[name]
            share = count / report.items if report.items else 0.0
            labels.add_row(escape(name), str(count), f"{share:.1%}", str(report.unknown_counts[name]))
        console.print(labels)
        if shown:
            console.print(shown)
        hist = report.labels_per_item["histogram"]
        console.print(f"Labels per item: mean {report.labels_per_item['mean']:.2f}; "
                      + ", ".join(f"{k}: {v}" for k, v in hist.items()))
        if report.top_pairs:
            console.print("Most frequent label pairs: " + ", ".join(
                f"{escape(a)} + {escape(b)} ({n})" for a, b, n in report.top_pairs))
    _render_problems(report, console)
    if report.usable:
        console.print("\n[bold green]usable[/bold green]" + (" (see the warnings above)" if report.problems else ""))
    else:
        console.print("\n[bold red]not usable[/bold red]: fix the errors above and run the check again")


def _render_reading(report: DatasetReport, console: Console) -> None:
    """The reading chosen and the runner-up, and the first items as read."""
    if report.reading is not None:
        chosen = report.reading
        console.print(f"[bold]Read as[/bold] {escape(chosen['format'])}: {escape(chosen['reason'])}", soft_wrap=True)
    if report.runner_up is not None:
        other = report.runner_up
        console.print(f"  runner-up {escape(other['format'])} (score {other['score']:.2f}): {escape(other['reason'])}; "
                      f"pick it with {escape(other['pick'])}", soft_wrap=True)
    elif report.reading is not None and report.reading.get("reason") != "given with --format":
        console.print("  runner-up: none (no other format fits this file at all)")
    for sample in report.samples:
        console.print(f"  {escape(sample['item'])} -> {escape(', '.join(sample['labels']) or '(no labels)')}",
                      soft_wrap=True)


def _render_problems(report: DatasetReport, console: Console) -> None:
    if report.problems:
        errors, warnings = len(report.errors()), len(report.warnings())
        console.print(f"\n[bold]Problems[/bold]: {errors} error(s), {warnings} warning(s)")
        by_kind: dict[str, list[Problem]] = defaultdict(list)
        for p in report.problems:
            by_kind[p.kind].append(p)
        for kind, found in sorted(by_kind.items(), key=lambda kv: kv[1][0].severity != "error"):
            for p in found[:SHOWN_PER_KIND]:
                colour = "red" if p.severity == "error" else "yellow"
                where = "" if p.where in p.message else f"{escape(p.where)}: "
                console.print(f"  [{colour}]{p.severity}[/] {where}{escape(p.message)}", soft_wrap=True)
            if len(found) > SHOWN_PER_KIND:
                console.print(f"  ... and {len(found) - SHOWN_PER_KIND} more {kind} problem(s)")


def _shown_labels(report: DatasetReport) -> tuple[list[str], str]:
    """Every label up to MAX_LABEL_ROWS; beyond, the most frequent and the rarest halves (in label order) and a line
    saying so."""
    if len(report.labels) <= MAX_LABEL_ROWS:
        return list(report.labels), ""
    counts = np.array([report.label_counts[name] for name in report.labels])
    order = np.argsort(-counts, kind="stable")
    half = MAX_LABEL_ROWS // 2
    picked = np.sort(np.concatenate([order[:half], order[-half:]]))
    return ([report.labels[j] for j in picked],
            f"{len(picked)} of {len(report.labels)} labels shown: the {half} most frequent and the {half} rarest; "
            "every label is in --json")
