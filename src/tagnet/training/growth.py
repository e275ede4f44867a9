"""Growing a trained run's label space (`tagnet train NEW_LABELS --from RUN`): heads for new and changed labels only."""

from __future__ import annotations

import dataclasses
import hashlib
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp
import torch
from rich.console import Console
from torch import nn

from tagnet.config.settings import TrainConfig
from tagnet.config.source import DataSource
from tagnet.data.label_table import LabelTable
from tagnet.decisions.thresholds import Thresholds
from tagnet.errors import ConfigError, DataError
from tagnet.evaluation.metrics import evaluate_probabilities
from tagnet.inference.artifact import META_FILE, WEIGHTS_FILE, Artifact, load_artifact, save_artifact
from tagnet.modalities.base import HeadInputs, LabeledInputs, Modality
from tagnet.models import GrownHead, TagnetModel, make_head
from tagnet.models.trees import ForestHead
from tagnet.training import stages
from tagnet.training.budget import TimeBudget
from tagnet.training.plan import RunPlan, resolve_modality
from tagnet.training.run_folder import (ARTIFACT_DIR, METRICS_FILE, RUN_FILE, read_run_start, start_run,
                                        write_run_end, write_run_start)
from tagnet.training.selection import Selection, select_head
from tagnet.training.stages import Callbacks, Run
from tagnet.training.validation import merged_validation, side_rules_dict, validation_thresholds

# Settings a grown run may take besides the parent's (every other one is the parent run's).
GROWTH_SETTINGS = ("backbone", "cache_dir", "seed")


@dataclass
class Parent:
    """The finished run grown from: its folder, run.json, settings, artifact and the artifact's SHA-256."""

    run_dir: Path
    run: dict[str, Any]
    config: TrainConfig
    artifact: Artifact
    sha256: str

    @property
    def cache_dir(self) -> Path:
        """Where the parent run cached its frozen outputs."""
        return Path(self.config.cache_dir or self.run_dir / "cache")

    def record(self) -> dict[str, str]:
        """What a grown run records of its parent: the run folder and the artifact's hash."""
        return {"run": str(self.run_dir.resolve()), "artifact_sha256": self.sha256}


@dataclass
class Merged:
    """The parent's rows then the new file's unseen ones: labels (the parent's, then the new ones), frozen outputs,
    which rows came from the parent's --val file, and the labels trained (new, or old ones with new examples)."""

    data: LabeledInputs
    head_inputs: HeadInputs
    from_val_file: np.ndarray
    trained: np.ndarray  # label indices, ascending
    new_rows: int  # rows of the new file not seen by the parent


def read_parent(from_run: str | Path) -> Parent:
    """The finished run folder `from_run`; ConfigError when it is not one (or is calibrated: refit after growing)."""
    run_dir = Path(from_run)
    if not (run_dir / RUN_FILE).is_file() or not (run_dir / METRICS_FILE).is_file() or \
            not (run_dir / ARTIFACT_DIR / META_FILE).is_file():
        raise ConfigError(f"--from {run_dir}: not a finished run folder (expected {RUN_FILE}, {METRICS_FILE} and "
                          f"{ARTIFACT_DIR}/{META_FILE} written by tagnet train)")
    run, config = read_run_start(run_dir)
    artifact = load_artifact(run_dir / ARTIFACT_DIR)
    if artifact.calibration is not None:
        raise ConfigError(f"--from {run_dir}: its artifact is calibrated (tagnet calibrate); grow the run, then "
                          "calibrate the grown one")
    unsupported = _unsupported_parent(artifact)
    if unsupported:
        raise ConfigError(f"--from {run_dir}: {unsupported}; growing such a run is not supported (train anew with all "
                          "labels)")
    if config.loss == "auto":  # the parent's probe chose it: the new labels train with the loss the old ones did
        config = dataclasses.replace(config, loss=artifact.config["loss"])
    digest = hashlib.sha256()
    for name in (META_FILE, WEIGHTS_FILE):
        digest.update((artifact.path / name).read_bytes())
    return Parent(run_dir, run, config, artifact, digest.hexdigest())


def _unsupported_parent(artifact: Artifact) -> str | None:
    """Why a run cannot be grown, or None: a private head (new labels would train without its guarantee), a label
    hierarchy (new labels would need places in its tree) or a tree head (a forest or boosted trees: an ONNX-ML graph
    of its own)."""
    if artifact.config.get("dp_epsilon") is not None:
        return "it was trained with --dp-epsilon (a new labels' head would not be covered by its privacy budget)"
    if artifact.hierarchy is not None:
        return "it has a label hierarchy (new labels would need places in its tree)"
    if isinstance(artifact.model.head, ForestHead):
        return "its head is a tree ensemble (an ONNX-ML graph)"
    return None


def grown_source(source: DataSource, parent: Parent) -> tuple[DataSource, Modality]:
    """NEW_LABELS read as the parent's data (its images folder, text column, modality unless the source names one);
    ConfigError when its modality differs from the parent's."""
    modality, state = parent.artifact.modality, parent.artifact.state
    if not (source.modality or source.text_column is not None or source.tabular):  # read as the parent's data
        source = dataclasses.replace(source, text_column=state.get("text_column") if modality == "text" else None,
                                     tabular=modality == "tabular")
    source = dataclasses.replace(source, images_dir=source.images_dir or parent.run.get("images_dir"))
    kind = resolve_modality(source)
    if kind.name != modality:
        raise ConfigError(f"{source.labels}: {kind.name} data, but --from {parent.run_dir} is a {modality} model; "
                          "expected the same modality")
    return source.with_options(kind.read_options(dict(source.read_options))), kind


def grown_config(config: TrainConfig | None, parent: Parent) -> TrainConfig:
    """The parent's settings, with the given cache_dir and seed; ConfigError for another encoder or another setting."""
    if config is None:
        return parent.config
    given = {f.name: getattr(config, f.name) for f in dataclasses.fields(TrainConfig)
             if getattr(config, f.name) != getattr(TrainConfig(), f.name)}
    if given.get("backbone", parent.config.backbone) != parent.config.backbone:
        raise ConfigError(f"backbone {given['backbone']!r} differs from --from {parent.run_dir}'s encoder "
                          f"{parent.config.backbone!r}; expected the same encoder (or train anew without --from)")
    other = sorted(set(given) - set(GROWTH_SETTINGS))
    if other:
        raise ConfigError(f"setting {other[0]}={given[other[0]]!r} with --from: a grown run keeps {parent.run_dir}'s "
                          f"settings; only {', '.join(GROWTH_SETTINGS)} may be given")
    return dataclasses.replace(parent.config, **{k: v for k, v in given.items() if k != "backbone"})


def input_keys(data: LabeledInputs) -> np.ndarray:
    """What identifies each row across label files: the image path (absolute) or the text; a table's item id and its
    feature values (a table without an id column: the feature values alone, never the row number)."""
    inputs = data.inputs
    if isinstance(inputs, np.ndarray) and inputs.dtype == object and len(inputs) and isinstance(inputs[0], (str, Path)):
        return np.array([os.path.abspath(x) if isinstance(x, Path) else x for x in inputs], dtype=object)
    values = _row_bytes(inputs)
    if "id_column" not in data.table.meta:
        return values
    return np.char.add(np.char.encode(np.array(data.table.items, dtype=str), "utf-8"), np.char.add(b"\0", values))


def _row_bytes(rows: np.ndarray | sp.spmatrix) -> np.ndarray:
    """Each feature row's float64 values as one bytes value (NaN made one value), dense 4,096 rows at a time."""
    parts = []
    for start in range(0, rows.shape[0], 4096):
        part = rows[start:start + 4096]
        part = np.nan_to_num(np.asarray(part.toarray() if sp.issparse(part) else part, dtype=np.float64), nan=np.inf)
        part = np.ascontiguousarray(part)
        parts.append(part.view(f"S{part.shape[1] * 8}").ravel() if part.shape[1] else
                     np.zeros(len(part), "S1"))
    return np.concatenate(parts) if parts else np.zeros(0, "S1")


def matched_rows(old_keys: np.ndarray, keys: np.ndarray) -> np.ndarray:
    """For each of `keys`, its row in `old_keys` (-1: not there), by a sorted search."""
    if len(old_keys) == 0:
        return np.full(len(keys), -1, dtype=np.int64)
    order = np.argsort(old_keys, kind="stable")
    place = np.minimum(np.searchsorted(old_keys[order], keys), len(old_keys) - 1)
    return np.where(old_keys[order][place] == keys, order[place], -1).astype(np.int64)


def linked_cache(parent_cache: Path, own_cache: Path) -> Path:
    """`own_cache` with a link to each file of `parent_cache` it lacks: the parent's cached images and frozen outputs
    are read from there, while what is computed anew (an encoder fine-tuned since, new inputs) is written to
    `own_cache` only, so the parent run stays as it was."""
    own_cache.mkdir(parents=True, exist_ok=True)
    if parent_cache.is_dir() and parent_cache.resolve() != own_cache.resolve():
        for path in parent_cache.iterdir():
            if path.is_file() and not path.name.endswith(".tmp") and not (own_cache / path.name).exists():
                (own_cache / path.name).symlink_to(path.resolve())
    return own_cache


def _frozen(kind: Modality, model: TagnetModel, data: LabeledInputs, state: dict[str, Any], cache_dir: Path
            ) -> tuple[LabeledInputs, np.ndarray, HeadInputs | None]:
    """(data prepared, rows kept, frozen outputs) of `data`; no outputs for no rows."""
    if len(data) == 0:
        return data, np.arange(0), None
    prepared, kept = kind.prepare(data, model, cache_dir=cache_dir)
    if len(prepared) == 0:
        return prepared, kept, None
    return prepared, kept, kind.head_inputs(model, prepared, state, cache_dir=cache_dir, progress=False)


def parent_inputs(parent: Parent, kind: Modality, console: Console, own_cache: Path
                  ) -> tuple[LabeledInputs, np.ndarray, np.ndarray, HeadInputs]:
    """The parent's training rows as it read them (its file, then its --val file's), their keys, which came from the
    --val file, and their frozen outputs (read from the parent's cache through linked_cache)."""
    run = parent.run
    source = DataSource(run["labels"], images_dir=run.get("images_dir"), text_column=run.get("text_column"),
                        read_options=dict(run.get("read_options") or {}), modality=kind.name)
    plan = RunPlan(source, kind, parent.config, run.get("val_labels"), TimeBudget(None))
    shell = Run(plan, parent.run_dir, console, False, False, True, Callbacks(), time.perf_counter())
    stages.read_inputs(shell)
    keys = input_keys(shell.data)
    data, kept, inputs = _frozen(kind, parent.artifact.model, shell.data, parent.artifact.state,
                                 linked_cache(parent.cache_dir, own_cache))
    if inputs is None:
        raise DataError(f"{run['labels']}: none of --from {parent.run_dir}'s training inputs can be read any more")
    return data, keys[kept], shell.from_val_file[kept], inputs


def merge(parent: Parent, kind: Modality, new: LabeledInputs, console: Console, own_cache: Path, *,
          what: str | Path) -> Merged:
    """The parent's rows and NEW_LABELS' unseen ones with every label; the labels to train: new ones, and old ones
    whose values in NEW_LABELS differ from the parent's training file or that NEW_LABELS gives for unseen rows.
    DataError when NEW_LABELS shares neither a label nor a row with the parent, or adds nothing."""
    old, old_keys, from_val, old_inputs = parent_inputs(parent, kind, console, own_cache)
    names = list(parent.artifact.label_names)
    old_names = set(names)
    added = [name for name in new.table.label_names if name not in old_names]
    keys = input_keys(new)
    match = matched_rows(old_keys, keys)
    if len(added) == new.table.num_labels and not (match >= 0).any():
        raise DataError(f"{what}: shares no label and no input with --from {parent.run_dir}; expected the same "
                        "inputs with new labels, or new inputs of its labels")
    unseen, kept, unseen_inputs = _frozen(kind, parent.artifact.model, new.subset(np.flatnonzero(match < 0)),
                                          parent.artifact.state, own_cache)
    all_names, n_old = names + added, len(old)
    targets = np.zeros((n_old + len(unseen), len(all_names)), np.uint8)
    known = np.zeros(targets.shape, bool)
    targets[:n_old, :len(names)], known[:n_old, :len(names)] = old.table.targets, old.table.known
    before = known.copy(), targets.copy()
    column = {name: j for j, name in enumerate(all_names)}
    cols = np.array([column[name] for name in new.table.label_names], dtype=np.int64)
    seen = match >= 0
    rows = np.r_[match[seen], n_old + np.arange(len(unseen))]
    source_rows = np.r_[np.flatnonzero(seen), np.flatnonzero(~seen)[kept]]
    given_known = new.table.known[source_rows]
    block = np.ix_(rows, cols)
    targets[block] = np.where(given_known, new.table.targets[source_rows], targets[block])
    known[block] |= given_known
    changed = (known != before[0]) | (known & (targets != before[1]))
    trained = np.flatnonzero(changed.any(axis=0))
    if len(trained) == 0:
        raise DataError(f"{what}: adds no label and no new example to --from {parent.run_dir}'s labels; "
                        "nothing to train")
    items = list(old.table.items) + list(unseen.table.items)
    table = LabelTable(items, all_names, targets, known, new.table.source_format, {})
    data = LabeledInputs(table, np.arange(len(items)), {**old.skipped, **unseen.skipped})
    return Merged(data, old_inputs.followed_by(unseen_inputs), np.r_[from_val, np.zeros(len(unseen), bool)], trained,
                  len(unseen))


def linear_rule(run: Run, parent: Parent) -> Selection | None:
    """How the trained labels' linear head is fitted: as the parent's (former) linear head was (logistic regression at
    its C when --select chose it, else (None) trained by the head phase like the parent's); beside a head whose labels
    share weights (MLP, ensemble), by logistic regression at the C chosen by k-fold CV."""
    chosen = parent.artifact.meta.get("extra", {}).get("selection") or {}
    head = parent.artifact.model.head
    if plain_linear(head.base if isinstance(head, GrownHead) else head):
        if chosen.get("choice") != "linear":
            return None
        return Selection("linear", chosen.get("metric", ""), C=chosen["C"], scaling=chosen.get("scaling"))
    config, table, rows = run.plan.config, run.data.table, np.flatnonzero(~run.from_val_file)
    return select_head(dataclasses.replace(config, select="linear"), run.head_inputs.array()[rows],
                       table.targets[rows], table.known[rows], make_head=lambda: None, console=run.console,
                       thresholds_for=lambda val: validation_thresholds(val, config).thresholds)


def plain_linear(head: nn.Module) -> bool:
    """Whether `head` is the plain linear head (Dropout, Linear): one independent row per label."""
    return isinstance(head, nn.Sequential) and len(head) == 2 and isinstance(head[1], nn.Linear)


def trained_heads(merged: Merged, parent: Parent, kind: Modality, source: DataSource, config: TrainConfig,
                  run_dir: Path, console: Console, progress: bool) -> Run:
    """A run of the trained labels alone, on the rows where one of them is known: a linear head (Dropout, Linear) on
    the frozen outputs, with the parent's settings and a held-out part of the rows (or its --val file's rows)."""
    full, cols = merged.data.table, merged.trained
    rows = np.flatnonzero(full.known[:, cols].any(axis=1))
    table = LabelTable([full.items[i] for i in rows], [full.label_names[j] for j in cols],
                       full.targets[np.ix_(rows, cols)], full.known[np.ix_(rows, cols)], full.source_format, {})
    single = dataclasses.replace(config, head_hidden=0, ensemble=1, cv=None, select=None)
    run = Run(RunPlan(source, kind, single, None, TimeBudget(None)), run_dir, console, progress, False, True,
              Callbacks(), time.perf_counter())
    run.data, run.from_val_file = LabeledInputs(table, np.arange(len(rows))), merged.from_val_file[rows]
    run.head_inputs = merged.head_inputs.subset(rows)
    run.model = TagnetModel(nn.Identity(), name=parent.artifact.model.name, num_features=run.head_inputs.values.shape[1],
                            num_labels=len(cols), dropout=config.dropout)
    run.splits = stages.checked_splits(run)
    run.selection = linear_rule(run, parent)
    stages.heads(run)
    return run


def grown_model(model: TagnetModel, trained: np.ndarray, head: nn.Sequential, total: int) -> TagnetModel:
    """`model` with `total` labels: its head kept whole (so every label not trained gets bit for bit the logit it got:
    rows replaced in place would change the matrix's shape, and BLAS then rounds the other rows' logits differently),
    beside it one linear head with the trained labels' rows from `head` (Dropout, Linear): a GrownHead. A head grown
    before keeps its former head; its linear head's rows are replaced (labels refitted again) or added."""
    fitted, index = head[1], torch.from_numpy(trained)
    grown = isinstance(model.head, GrownHead)
    base = model.head.base if grown else model.head
    n_base = model.head.base_labels if grown else model.num_labels
    linear = model.head.extra[1] if grown else None
    weight0 = linear.weight if grown else torch.zeros(0, model.num_features)
    bias0 = linear.bias if grown else torch.zeros(0)
    take = torch.cat([model.head.take if grown else torch.arange(n_base),
                      torch.zeros(total - model.num_labels, dtype=torch.int64)])
    has = take[index] >= n_base  # labels with a row of the linear head already
    fresh = index[~has]
    rows = torch.cat([take[index[has]] - n_base, len(weight0) + torch.arange(len(fresh))])
    order = torch.cat([has.nonzero().flatten(), (~has).nonzero().flatten()])
    extra = make_head(model.num_features, len(weight0) + len(fresh), dropout=model.dropout, head_hidden=0)
    with torch.no_grad():
        weight = torch.cat([weight0, weight0.new_zeros(len(fresh), model.num_features)])
        bias = torch.cat([bias0, bias0.new_zeros(len(fresh))])
        weight[rows], bias[rows] = fitted.weight[order], fitted.bias[order]
        extra[1].weight.copy_(weight)
        extra[1].bias.copy_(bias)
    take[fresh] = n_base + rows[int(has.sum()):]
    model.head = GrownHead(base, extra, take, base_labels=n_base)
    model.num_labels = total
    return model.eval()


def merged_thresholds(parent: Thresholds, fitted: Thresholds, trained: np.ndarray, total: int) -> Thresholds:
    """The parent's thresholds for every label not trained; for the trained ones the fitted per-label values, or (a
    global, fixed or top-k rule) the parent's one value."""
    values = np.r_[np.asarray(parent.values, float), np.full(total - parent.num_labels, parent.values[0])]
    fallback = [j for j in parent.fallback if j not in set(trained.tolist())]
    if parent.mode == "per-label":
        values[trained] = fitted.values
        fallback += [int(trained[j]) for j in fitted.fallback]
    else:
        values[trained] = parent.values[0]
    return dataclasses.replace(parent, values=values.tolist(), fallback=sorted(fallback))


def grow(source: DataSource, *, from_run: str | Path, out_dir: str | Path, config: TrainConfig | None = None,
         console: Console | None = None, progress: bool = True, force: bool = False) -> dict[str, Any]:
    """Grow the finished run `from_run` by the label file `source`: heads for its new labels and for the old labels it
    gives new examples, every other label's weights and thresholds untouched, the parent's frozen outputs reused for
    the inputs it saw. Writes a run folder (recording the parent) to `out_dir`; returns TrainResult's fields.

    Raises ConfigError (not a finished run, another modality or encoder, a setting besides GROWTH_SETTINGS) and
    DataError (NEW_LABELS shares nothing with the parent, or adds nothing)."""
    started, console = time.perf_counter(), console or Console(stderr=True)
    parent = read_parent(from_run)
    if Path(out_dir).resolve() == parent.run_dir.resolve():
        raise ConfigError(f"--out {out_dir} is the --from run; expected another folder (the parent run is kept)")
    source, kind = grown_source(source, parent)
    config = grown_config(config, parent)
    new = kind.read(source, state=parent.artifact.state)
    run_dir = start_run(out_dir, resume=False, main=True, force=force)
    write_run_start(run_dir, config=config, labels=source.labels, modality=kind.name, val_labels=None,
                    images_dir=source.images_dir, text_column=source.text_column,
                    read_options=dict(source.read_options), parent=parent.record())
    merged = merge(parent, kind, new, console, Path(config.cache_dir or run_dir / "cache"), what=source.labels)
    names, n_old = merged.data.table.label_names, parent.artifact.model.num_labels
    trained = [names[j] for j in merged.trained]
    console.print(f"growing {parent.run_dir}: {len(names) - n_old} new label(s), "
                  f"{int((merged.trained < n_old).sum())} refitted, {len(names) - len(trained)} untouched; frozen "
                  f"outputs of {len(merged.data) - merged.new_rows} inputs reused, {merged.new_rows} new",
                  soft_wrap=True)
    sub = trained_heads(merged, parent, kind, source, config, run_dir, console, progress)
    val, val_rows = merged_validation(sub.splits, sub.results, len(sub.data))
    fit = validation_thresholds(val, sub.plan.config)
    notes = fit.notes(trained)
    for line in notes:
        console.print(f"[yellow]note[/yellow] {line}", soft_wrap=True)
    report = evaluate_probabilities(val["targets"], val["probs"], fit.thresholds, label_names=trained,
                                    known=val["known"])
    model = grown_model(parent.artifact.model, merged.trained, sub.model.head, len(names))
    thresholds = merged_thresholds(parent.artifact.thresholds, fit.thresholds, merged.trained, len(names))
    extra = dict(parent.artifact.meta.get("extra") or {})
    rules = {name: merged_thresholds(Thresholds.from_dict(extra["decision_rules"][name]), rule_fit, merged.trained,
                                     len(names)).to_dict()
             for name, rule_fit in _side_rules(val, sub.plan.config).items() if name in extra.get("decision_rules", {})}
    growth = {"parent": parent.record(), "new_labels": names[n_old:],
              "refitted_labels": [names[j] for j in merged.trained if j < n_old], "trained_labels": trained,
              "reused_inputs": len(merged.data) - merged.new_rows, "new_inputs": merged.new_rows,
              "head": "the former head kept whole, beside it a linear head of the trained labels",
              "metrics_cover": "the trained labels, on their held-out rows"}
    artifact_dir = save_artifact(run_dir / ARTIFACT_DIR, model=model, modality=kind.name, label_names=names,
                                 thresholds=thresholds, state=parent.artifact.state, config=config.to_dict(),
                                 metrics=report.summary(), extra={**extra, "decision_rules": rules, "growth": growth})
    seconds = time.perf_counter() - started
    write_run_end(run_dir, report_dict=report.to_dict(), best_epoch=max(r.best_epoch for r in sub.results),
                  seconds=seconds, skipped=merged.data.skipped, items=[sub.data.table.items[i] for i in val_rows],
                  label_names=trained, validation=val, extra={"growth": growth})
    return {"run_dir": run_dir, "artifact_dir": artifact_dir, "report": report, "thresholds": thresholds,
            "skipped": merged.data.skipped, "seconds": seconds, "notes": notes}


def _side_rules(val: dict[str, np.ndarray], config: TrainConfig) -> dict[str, Thresholds]:
    return {name: Thresholds.from_dict(rule) for name, rule in side_rules_dict(val, config).items()}
