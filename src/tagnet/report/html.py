"""One self-contained HTML page about a run: curves, per-label PR curves, F1 and thresholds, co-occurrence, worst items."""

from __future__ import annotations

import base64
import html
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator
from PIL import Image
from sklearn.metrics import average_precision_score, precision_recall_curve

from tagnet import modalities
from tagnet.config.source import DataSource
from tagnet.inference.artifact import META_FILE
from tagnet.decisions.calibration import TemperatureScaling, reliability
from tagnet.data.images import resolve_image_paths
from tagnet.errors import ArtifactError, TagnetError
from tagnet.training.run_folder import (ARTIFACT_DIR, CONFIG_FILE, METRICS_FILE, PREDICTIONS_FILE, RUN_FILE, read_epochs, read_json_file,
                        read_validation_predictions)
from tagnet.decisions.chain import calibrated_probabilities, decided
from tagnet.decisions.thresholds import Thresholds
from tagnet.hierarchy.tree import Tree

THUMBNAIL_PX = 160
ANNOTATE_MAX_LABELS = 15


@dataclass
class RunData:
    """What a report shows, read from a run folder."""

    run_dir: Path
    label_names: list[str]
    items: list[str]
    truths: np.ndarray  # (n, L) int: 1, 0, or -1 for unknown
    probs: np.ndarray  # (n, L) float
    thresholds: Thresholds
    epochs: list[dict[str, Any]]
    metrics: dict[str, Any]
    config: dict[str, Any]
    run: dict[str, Any]
    calibration: TemperatureScaling | None = None  # from `tagnet calibrate`: applied before the thresholds
    hierarchy: Tree | None = None  # the labels' tree (--hierarchy): a label is predicted only with its parent


def load_run(run_dir: str | Path) -> RunData:
    """Read a run folder: val_predictions.csv, metrics.json, metrics.csv, config.json, run.json and the thresholds.

    Raises:
        ArtifactError: val_predictions.csv or metrics.json is missing or malformed.
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise ArtifactError(f"{run_dir}: not a folder; expected a run folder written by `tagnet train`")
    names, items, truths, probs = read_validation_predictions(run_dir / PREDICTIONS_FILE)
    metrics = read_json_file(run_dir / METRICS_FILE, required=True)
    epochs = read_epochs(run_dir)
    per_label = metrics.get("validation", {}).get("per_label") or []
    if [row.get("label") for row in per_label] != names:
        raise ArtifactError(f"{run_dir / 'metrics.json'}: validation.per_label does not list the labels of "
                            f"val_predictions.csv ({len(names)} labels)")
    config = read_json_file(run_dir / CONFIG_FILE, required=False)
    meta = read_json_file(run_dir / ARTIFACT_DIR / META_FILE, required=False)
    if "thresholds" in meta:
        thresholds = Thresholds.from_dict(meta["thresholds"], num_labels=len(names), source=str(run_dir / ARTIFACT_DIR / META_FILE))
    else:  # a run folder without its artifact: the per-label thresholds recorded with the metrics
        thresholds = Thresholds(metrics["validation"].get("threshold_mode", "per-label"),
                                [float(row["threshold"]) for row in per_label], int(config.get("top_k", 1)))
    calibration = None if meta.get("calibration") is None else TemperatureScaling.from_dict(
        meta["calibration"], num_labels=len(names), source=str(run_dir / ARTIFACT_DIR / META_FILE))
    hierarchy = None if meta.get("hierarchy") is None else Tree.from_dict(
        meta["hierarchy"], num_labels=len(names), source=str(run_dir / ARTIFACT_DIR / META_FILE))
    return RunData(run_dir, names, items, truths, probs, thresholds, epochs, metrics, config,
                   read_json_file(run_dir / RUN_FILE, required=False), calibration, hierarchy)


def item_losses(truths: np.ndarray, probs: np.ndarray) -> np.ndarray:
    """Mean binary cross-entropy of each item over its known labels (truth -1 = unknown); NaN if none is known."""
    p = np.clip(probs, 1e-7, 1 - 1e-7)
    known = truths >= 0
    cells = -(truths * np.log(p) + (1 - truths) * np.log(1 - p))
    counts = known.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(counts > 0, np.where(known, cells, 0.0).sum(axis=1) / counts, np.nan)


def cooccurrence(targets: np.ndarray) -> np.ndarray:
    """(L, L) counts of items carrying both labels; the diagonal holds each label's count."""
    y = (np.asarray(targets) == 1).astype(np.int64)
    return y.T @ y


def _png(fig: Figure) -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90, bbox_inches="tight")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _img(data: str, alt: str, mime: str = "image/png") -> str:
    return f'<img alt="{html.escape(alt)}" src="data:{mime};base64,{data}">'


def _curves_figure(epochs: list[dict[str, Any]]) -> Figure | None:
    """Losses and validation metrics per epoch; phases (head, finetune) follow each other on one axis."""
    if not epochs:
        return None
    fig = Figure(figsize=(11, 3.8))
    loss_ax, score_ax = fig.subplots(1, 2)
    x = np.arange(1, len(epochs) + 1)

    def column(name: str) -> np.ndarray:
        return np.array([float(row[name]) if row.get(name) not in (None, "") else np.nan for row in epochs])

    for name, style in (("train_loss", "-"), ("val_loss", "--")):
        loss_ax.plot(x, column(name), style, marker="o", ms=3, label=name.replace("_", " "))
    for name in ("val_mAP", "val_micro_f1", "val_macro_f1"):
        label = "mAP" if name == "val_mAP" else name[4:].replace("_", " ") + " (at 0.5)"
        score_ax.plot(x, column(name), marker="o", ms=3, label=label)
    phases = [row.get("phase", "") for row in epochs]
    for i in range(1, len(phases)):
        if phases[i] != phases[i - 1]:
            for ax in (loss_ax, score_ax):
                ax.axvline(i + 0.5, color="grey", ls=":")
                ax.text(i + 0.6, 0.02, phases[i], transform=ax.get_xaxis_transform(), color="grey")
    loss_ax.set(title="loss", xlabel="epoch")
    score_ax.set(title="validation", xlabel="epoch")
    for ax in (loss_ax, score_ax):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    return fig


def _shown_labels(data: RunData, limit: int) -> list[int]:
    """Label columns to plot: all, or the `limit` with most known validation positives."""
    support = (data.truths == 1).sum(axis=0)
    order = np.argsort(-support, kind="stable")
    return sorted(order[:limit].tolist())


def _label_grid(labels: list[int]) -> tuple[Figure, np.ndarray]:
    """A figure of small plots, one per label (four a row), its unused cells hidden; returns (figure, axes)."""
    cols = min(4, len(labels))
    rows = int(np.ceil(len(labels) / cols))
    width, height = 3.0 * cols, 2.7 * rows
    fig = Figure(figsize=(width, height))
    # one scale for every plot (tick labels on the outer plots only) and fixed margins in inches: the constrained
    # layout of 40 plots' texts was a third of `tagnet report`'s time at 1,000 labels
    axes = np.atleast_1d(fig.subplots(rows, cols, squeeze=False, sharex=True, sharey=True, gridspec_kw={
        "hspace": 0.35, "wspace": 0.12, "left": 0.85 / width, "right": 1 - 0.1 / width, "bottom": 0.55 / height,
        "top": 1 - 0.3 / height})).ravel()
    for ax in axes[len(labels):]:
        ax.set_axis_off()
    return fig, axes


def _style(ax, title: str, *, xlim: tuple[float, float], ylim: tuple[float, float]) -> None:
    """One label's small plot: its title, limits, small ticks and a light grid."""
    ax.set_title(title, fontsize=9)
    ax.set(xlim=xlim, ylim=ylim)
    ax.tick_params(labelsize=7)
    ax.grid(alpha=0.3)


def _pr_figure(data: RunData, labels: list[int], predicted: np.ndarray) -> Figure:
    """One precision-recall curve per label with its operating point (the fitted threshold)."""
    fig, axes = _label_grid(labels)
    for ax, j in zip(axes, labels):
        known = data.truths[:, j] >= 0
        y, p = data.truths[known, j], data.probs[known, j]
        name = data.label_names[j]
        if y.sum() == 0:
            ax.text(0.5, 0.5, "no validation positives", ha="center", va="center", fontsize=8)
        else:
            precision, recall, _ = precision_recall_curve(y, p)
            ap = float(average_precision_score(y, p))
            ax.step(recall, precision, where="post")
            hit = predicted[known, j]
            tp = int((hit & (y == 1)).sum())
            op_p, op_r = (tp / hit.sum() if hit.sum() else 0.0), tp / y.sum()
            ax.plot([op_r], [op_p], "o", color="crimson", label=f"threshold {data.thresholds.values[j]:.2f}")
            ax.legend(fontsize=7, loc="lower left")
            name = f"{name} (AP {ap:.3f})"
        _style(ax, name, xlim=(0, 1.02), ylim=(0, 1.05))
    fig.supxlabel("recall", fontsize=9)
    fig.supylabel("precision", fontsize=9)
    return fig


def _reliability_figure(data: RunData, labels: list[int]) -> Figure:
    """One reliability diagram per label: the share of positives against the mean probability per bin (10 bins) of
    the validation probabilities, and of the calibrated ones when the run was calibrated."""
    known = data.truths >= 0
    curves = {"model": reliability(data.truths == 1, data.probs, known, bins=10)}
    if data.calibration is not None:
        curves["calibrated"] = reliability(data.truths == 1, data.calibration.apply(data.probs), known, bins=10)
    fig, axes = _label_grid(labels)
    for ax, j in zip(axes, labels):
        ax.plot([0, 1], [0, 1], color="grey", lw=0.8, ls="--")
        for name, curve in curves.items():
            ax.plot(curve.mean_probability[j], curve.positive_rate[j], "o-", ms=3, label=f"{name} ECE {curve.ece[j]:.3f}")
        ax.legend(fontsize=7, loc="upper left")
        _style(ax, data.label_names[j], xlim=(0, 1), ylim=(0, 1.02))
    fig.supxlabel("mean predicted probability", fontsize=9)
    fig.supylabel("share of positives", fontsize=9)
    return fig


def _bars_figure(names: list[str], f1: np.ndarray, thresholds: np.ndarray, support: np.ndarray) -> Figure:
    """Per-label F1 and threshold as horizontal bars, labels sorted by F1."""
    order = np.argsort(f1, kind="stable")
    fig = Figure(figsize=(10, 1.0 + 0.28 * len(names)), layout="constrained")
    f1_ax, th_ax = fig.subplots(1, 2, sharey=True)
    ypos = np.arange(len(names))
    f1_ax.barh(ypos, f1[order], color="tab:blue")
    for y, j in zip(ypos, order):
        f1_ax.text(f1[j] + 0.01, y, f"{f1[j]:.2f} (n={support[j]})", va="center", fontsize=7)
    f1_ax.set_yticks(ypos, [names[j] for j in order], fontsize=8)
    f1_ax.set(xlim=(0, 1.2), title="F1 at the fitted threshold (n = validation positives)")
    th_ax.barh(ypos, thresholds[order], color="tab:orange")
    th_ax.axvline(0.5, color="grey", ls=":")
    th_ax.set(xlim=(0, 1), title="threshold")
    for ax in (f1_ax, th_ax):
        ax.grid(axis="x", alpha=0.3)
    return fig


def _cooccurrence_figure(names: list[str], counts: np.ndarray) -> Figure:
    """Heatmap of P(column label | row label) = co-occurrence count / row label count."""
    diag = np.diag(counts).astype(float)
    with np.errstate(invalid="ignore", divide="ignore"):
        share = np.where(diag[:, None] > 0, counts / diag[:, None], 0.0)
    size = max(4.5, 0.45 * len(names) + 2)
    fig = Figure(figsize=(size + 1, size), layout="constrained")
    ax = fig.subplots()
    image = ax.imshow(share, cmap="viridis", vmin=0, vmax=1)
    ticks = np.arange(len(names))
    ax.set_xticks(ticks, names, rotation=60, ha="right", fontsize=8)
    ax.set_yticks(ticks, [f"{n} ({int(c)})" for n, c in zip(names, diag)], fontsize=8)
    if len(names) <= ANNOTATE_MAX_LABELS:
        for i in range(len(names)):
            for j in range(len(names)):
                ax.text(j, i, int(counts[i, j]), ha="center", va="center", fontsize=7,
                        color="black" if share[i, j] > 0.6 else "white")
    ax.set_title("share of row-label items that also carry the column label\n(numbers are item counts)", fontsize=9)
    fig.colorbar(image, ax=ax, shrink=0.8)
    return fig


def _label_table_for_cooccurrence(data: RunData, shown: list[int]) -> tuple[np.ndarray, str]:
    """Targets of the run's label file (aligned to the run's labels) in the `shown` label columns, or the validation
    truths if it cannot be read."""
    labels = data.run.get("labels")
    if labels:
        options = data.run.get("read_options") or {}
        try:  # read as the run read it (no images are decoded: only the labels are needed)
            source = DataSource(labels, images_dir=data.run.get("images_dir"), text_column=data.run.get("text_column"),
                                read_options=options)
            table = modalities.get(data.run.get("modality", "image")).read(source).table
            table = table.aligned_to(data.label_names, what=labels)
            return (np.where(table.known[:, shown], table.targets[:, shown], -1),
                    f"{len(table)} items of the label file {Path(labels).name}")
        except (TagnetError, OSError):
            pass
    return data.truths[:, shown], f"{len(data.items)} validation items (the label file could not be read)"


def _thumbnail(path: Path) -> str | None:
    """Base64 JPEG thumbnail of an image file, or None when it cannot be read."""
    try:
        with Image.open(path) as image:
            image.draft("RGB", (THUMBNAIL_PX * 2, THUMBNAIL_PX * 2))
            thumb = image.convert("RGB")
            thumb.thumbnail((THUMBNAIL_PX, THUMBNAIL_PX))
    except (OSError, ValueError, Image.DecompressionBombError):
        return None
    buffer = io.BytesIO()
    thumb.save(buffer, format="JPEG", quality=80)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


TAG_KINDS = {(1, True): "ok", (1, False): "missed", (0, True): "wrong", (-1, True): "unknown"}  # (truth, predicted)


def _worst_items_html(data: RunData, predicted: np.ndarray, count: int) -> str:
    """Cards of the validation items with the highest loss: thumbnail (images) or id, true and predicted labels."""
    losses = item_losses(data.truths, data.probs)
    order = [i for i in np.argsort(-np.nan_to_num(losses, nan=-1.0), kind="stable") if not np.isnan(losses[i])][:count]
    images = modalities.spec(data.run.get("modality", "image")).thumbnails
    paths = resolve_image_paths([data.items[i] for i in order], data.run.get("images_dir")) if images else []
    cards = []
    for k, i in enumerate(order):
        truth, hit = data.truths[i], predicted[i].astype(bool)
        tags = [f'<span class="tag {TAG_KINDS[(int(truth[j]), bool(hit[j]))]}" title="p={data.probs[i, j]:.2f}">'
                f'{html.escape(data.label_names[j])} {data.probs[i, j]:.2f}</span>'
                for j in np.flatnonzero(hit | (truth == 1))]  # the item's tagged labels only, not every label
        thumb = _thumbnail(paths[k]) if images else None
        picture = _img(thumb, data.items[i], "image/jpeg") if thumb else (
            '<div class="noimg">image not found</div>' if images else "")
        cards.append(f'<div class="card">{picture}<div class="item">{html.escape(data.items[i])}</div>'
                     f'<div>loss {losses[i]:.3f}</div><div>{"".join(tags) or "<i>no labels</i>"}</div></div>')
    legend = ('<p><span class="tag ok">correct</span> <span class="tag missed">missed (true, not predicted)</span> '
              '<span class="tag wrong">wrong (predicted, not true)</span> <span class="tag unknown">predicted, truth unknown</span> '
              '— the number is the predicted probability.</p>')
    return legend + f'<div class="cards">{"".join(cards)}</div>'


# filters the per-label table's rows by the text typed in its search box (inline: the page stays self-contained)
LABEL_SEARCH_SCRIPT = """<script>
document.getElementById('label-search').addEventListener('input', function (event) {
  var text = event.target.value.toLowerCase();
  document.querySelectorAll('#per-label-table tr[data-label]').forEach(function (row) {
    row.style.display = row.dataset.label.indexOf(text) >= 0 ? '' : 'none';
  });
});
</script>"""


def _per_label_table(per_label: list[dict[str, Any]]) -> str:
    """Every label's AP, precision, recall, F1, support and threshold, most supported first, behind a search box that
    filters the rows by label name (readable at thousands of labels)."""
    rows = sorted(per_label, key=lambda r: -(r.get("support") or 0))
    header = "".join(f"<th>{h}</th>" for h in ("label", "AP", "precision", "recall", "F1", "support", "threshold"))
    body = "".join(f'<tr data-label="{html.escape(str(r["label"]).lower())}">' + "".join(
        f"<td>{_cell(r.get(k))}</td>" for k in ("label", "ap", "precision", "recall", "f1", "support", "threshold"))
        + "</tr>" for r in rows)
    return (f"<details><summary>per-label table ({len(rows)} labels, most validation positives first)</summary>"
            f"<p><input type='search' id='label-search' placeholder='search {len(rows)} labels' "
            f"aria-label='search labels'></p><table id='per-label-table'><tr>{header}</tr>{body}</table>"
            f"</details>{LABEL_SEARCH_SCRIPT}")


def _cell(v: Any) -> str:
    if v is None:
        return "-"
    return f"{v:.3f}" if isinstance(v, float) else html.escape(str(v))


def _table(header: list[str], rows: list[list[Any]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{_cell(v)}</td>" for v in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


CSS = """
body{font-family:system-ui,sans-serif;margin:1.5em auto;max-width:1200px;color:#222;padding:0 1em}
h1{font-size:1.5em}h2{border-bottom:1px solid #ccc;padding-bottom:.2em;margin-top:1.6em}
table{border-collapse:collapse;margin:.5em 0;font-size:.9em}td,th{border:1px solid #ddd;padding:.25em .6em;text-align:right}
th{background:#f3f3f3}td:first-child,th:first-child{text-align:left}img{max-width:100%}
.cards{display:flex;flex-wrap:wrap;gap:.8em}.card{width:180px;border:1px solid #ddd;border-radius:6px;padding:.5em;font-size:.8em}
.card img{display:block;margin:0 auto .3em}.item{font-weight:600;word-break:break-all}
.noimg{height:60px;background:#eee;text-align:center;line-height:60px;color:#888}
.tag{display:inline-block;border-radius:4px;padding:0 .3em;margin:.1em;font-size:.95em}
.ok{background:#c8f0c8}.missed{background:#ffd8a8}.wrong{background:#ffc0c0}.unknown{background:#e0e0e0}
.note{color:#666;font-size:.9em}
"""


def render_page(data: RunData, *, max_images: int = 12, max_labels: int = 40) -> str:
    """The report page as one HTML string with every image embedded (no network access needed)."""
    scored = calibrated_probabilities(data.probs, data.calibration, data.hierarchy)
    predicted = decided(scored, data.thresholds, data.hierarchy)
    validation = data.metrics.get("validation", {})
    per_label = validation.get("per_label") or []
    title = f"tagnet run {data.run_dir.resolve().name}"
    parts = [f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
             f"<style>{CSS}</style></head><body><h1>{html.escape(title)}</h1>"]
    facts = [["backbone", data.config.get("backbone", "?")], ["loss", data.config.get("loss", "?")],
             ["validation items", len(data.items)], ["labels", len(data.label_names)],
             ["threshold mode", data.thresholds.mode], ["best epoch", data.metrics.get("best_epoch")],
             ["training seconds", str(data.metrics.get("seconds"))]]
    privacy = data.metrics.get("privacy")
    if privacy:  # a --dp-epsilon run: what it spent and what the budget leaves out (the model card has the details)
        facts += [["differential privacy", f"ε = {privacy['epsilon']:.3g}, δ = {privacy['delta']:.2g} (the head)"],
                  *[["not covered by ε", line] for line in privacy["not_covered"]]]
    headline = [[name.replace("_", " "), validation.get(name)] for name in
                ("mAP", "micro_f1", "macro_f1", "samples_f1", "hamming_loss", "exact_match")]
    parts.append("<h2 id='summary'>Summary</h2>" + _table(["run", ""], facts) + _table(["validation metric", "value"], headline))

    parts.append("<h2 id='curves'>Training curves</h2>")
    curves = _curves_figure(data.epochs)
    parts.append(_img(_png(curves), "training curves") if curves else "<p class='note'>no metrics.csv in this run</p>")

    shown = _shown_labels(data, max_labels)
    note = (f"<p class='note'>showing the {len(shown)} labels with most validation positives of "
            f"{len(data.label_names)}</p>" if len(shown) < len(data.label_names) else "")
    parts.append("<h2 id='pr-curves'>Precision-recall curves per label</h2>" + note
                 + "<p class='note'>the red dot is the operating point at the fitted threshold</p>"
                 + _img(_png(_pr_figure(data, shown, predicted)), "precision-recall curves"))

    calibrated = ("; the calibrated curve applies the temperatures fitted by tagnet calibrate"
                  if data.calibration is not None else "")
    parts.append("<h2 id='reliability'>Reliability diagrams per label</h2>" + note
                 + f"<p class='note'>on the validation probabilities: close to the diagonal = calibrated{calibrated}</p>"
                 + _img(_png(_reliability_figure(data, shown)), "reliability diagrams"))

    f1 = np.array([row["f1"] for row in per_label], dtype=float)
    support = np.array([row["support"] for row in per_label])
    values = np.array(data.thresholds.values)
    parts.append("<h2 id='f1-thresholds'>F1 and threshold per label</h2>" + note
                 + _img(_png(_bars_figure([data.label_names[j] for j in shown], f1[shown], values[shown], support[shown])),
                        "per-label F1 and thresholds"))
    parts.append(_per_label_table(per_label))

    targets, source = _label_table_for_cooccurrence(data, shown)
    counts = cooccurrence(targets)  # only the labels shown: L x L counts at 10,000 labels would be 800 MB
    parts.append(f"<h2 id='cooccurrence'>Label co-occurrence</h2>{note}<p class='note'>counted on the {html.escape(source)}</p>"
                 + _img(_png(_cooccurrence_figure([data.label_names[j] for j in shown], counts)), "label co-occurrence"))

    parts.append("<h2 id='worst'>Highest-loss validation items</h2><p class='note'>mean binary cross-entropy over each "
                 "item's known labels; predictions use the fitted thresholds</p>" + _worst_items_html(data, predicted, max_images))
    if data.config:
        parts.append("<h2 id='settings'>Settings</h2><details><summary>training settings</summary>"
                     + _table(["setting", "value"], [[k, v] for k, v in data.config.items()]) + "</details>")
    parts.append("</body></html>")
    return "\n".join(parts)


def write_report(run_dir: str | Path, *, out: str | Path | None = None, max_images: int = 12, max_labels: int = 40) -> Path:
    """Write the HTML report of a run folder.

    Args:
        run_dir: a run folder written by `tagnet train` (or a tune study's best_run).
        out: the HTML file; default RUN/report.html.
        max_images: how many highest-loss validation items to show.
        max_labels: plot at most this many labels (those with most validation positives).
    Returns:
        The path of the written file.
    Raises:
        ArtifactError: the run folder lacks val_predictions.csv or metrics.json, or they are malformed.
    """
    data = load_run(run_dir)
    path = Path(out) if out is not None else Path(run_dir) / "report.html"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(render_page(data, max_images=max_images, max_labels=max_labels), encoding="utf-8")
    return path
