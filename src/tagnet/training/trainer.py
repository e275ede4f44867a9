"""Train any modality: read -> split -> model -> heads on a frozen encoder (or the whole network) -> optional
fine-tuning, kept only if better -> thresholds -> artifact and run folder."""

from __future__ import annotations

import copy
import dataclasses
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console

from tagnet import modalities
from tagnet.inference.artifact import save_artifact
from tagnet.training.budget import FINAL_SECONDS, Plan, Recipe, TimeBudget, duration, finetune_epochs_that_fit, plan_passes
from tagnet.config.settings import TrainConfig
from tagnet.data.split import kfold_rows, split_table
from tagnet.data.label_table import LabelTable
from tagnet.engine import (MultiLabelModule, PhaseResult, RunLoggers, default_precision, is_main_process, run_phase,
                           seed_everything)
from tagnet.errors import ConfigError, DataError
from tagnet.training.losses import make_loss
from tagnet.evaluation.metrics import MetricsReport, evaluate_probabilities
from tagnet.modalities.base import LabeledInputs, Modality
from tagnet.models import TagnetModel, head_members, set_backbone_trainable
from tagnet.training.run_folder import ARTIFACT_DIR, CHECKPOINTS_DIR, read_run_start, start_run, write_run_end, write_run_start
from tagnet.training.selection import Selection, fit_linear_heads, select_head
from tagnet.decisions.thresholds import ThresholdFit, Thresholds, decision_mode, fit_decisions, side_rules


@dataclass
class TrainResult:
    """Where a run was written and how it scored on its validation data."""

    run_dir: Path
    artifact_dir: Path
    report: MetricsReport
    thresholds: Thresholds
    skipped: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)  # labels missing the objective's target (ThresholdFit.notes)


def validation_score(targets: np.ndarray, probs: np.ndarray, known: np.ndarray) -> dict[str, float]:
    """Validation metrics logged each epoch: mAP and micro/macro F1 at 0.5 (NaN once training has diverged)."""
    if not np.isfinite(probs).all():  # NaN stops training (EarlyStopping's check_finite); the best epoch is kept
        return {"mAP": float("nan"), "micro_f1": float("nan"), "macro_f1": float("nan")}
    report = evaluate_probabilities(targets, probs, np.full(targets.shape[1], 0.5),
                                    label_names=[str(i) for i in range(targets.shape[1])], known=known)
    return {"mAP": report.mAP, "micro_f1": report.micro_f1, "macro_f1": report.macro_f1}


def validation_thresholds(val: dict[str, np.ndarray], config: TrainConfig | Any) -> ThresholdFit:
    """The run's thresholds, fitted on validation targets, probabilities and known-mask as `config` says (a TrainConfig,
    or any settings with its threshold and decision fields, e.g. CalibrateSettings)."""
    objective = config.objective or "f1"  # settings not resolved for a modality (TrainConfig().for_modality fills them)
    return fit_decisions(val["targets"], val["probs"], objective=objective, confidence=config.confidence,
                         mode=config.threshold_mode or decision_mode(objective), min_positives=config.min_positives, top_k=config.top_k,
                         fixed=config.fixed_threshold, known=val["known"], min_labels=config.min_labels,
                         max_labels=config.max_labels, if_empty=config.if_empty)


def head_splits(table: LabelTable, from_val_file: np.ndarray, config: TrainConfig) -> list[tuple[np.ndarray, np.ndarray]]:
    """(training rows, validation rows) of each head. With a --val file every head validates on its rows; with
    config.cv head k validates on fold k; otherwise head k holds out its own stratified part (seed + k), so the heads
    of an ensemble also see different rows."""
    if from_val_file.any():
        return [(np.flatnonzero(~from_val_file), np.flatnonzero(from_val_file))] * config.ensemble
    if config.cv:
        folds = kfold_rows(table, folds=config.cv, seed=config.seed)
        every = np.arange(len(table))
        return [(np.setdiff1d(every, fold), fold) for fold in folds]
    numbered = LabelTable([str(i) for i in range(len(table))], table.label_names, table.targets, table.known)
    splits = []
    for k in range(config.ensemble):
        parts = split_table(numbered, val=config.val_fraction, seed=config.seed + k)
        splits.append(tuple(np.array([int(i) for i in parts[name].items], dtype=np.int64) for name in ("train", "val")))
    return splits


def merged_validation(splits: list[tuple[np.ndarray, np.ndarray]], results: list[PhaseResult],
                      count: int) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """The heads' validation outputs as one: each validation row's probability averaged over the heads that held it
    out (out of fold). Returns (validation dict, the rows it covers)."""
    first = results[0].validation
    total = np.zeros((count, first["probs"].shape[1]))
    votes = np.zeros(count, dtype=np.int64)
    targets, known = np.zeros_like(total, dtype=np.float32), np.zeros_like(total, dtype=bool)
    for (_, val_rows), result in zip(splits, results):
        total[val_rows] += result.validation["probs"]
        votes[val_rows] += 1
        targets[val_rows] = result.validation["targets"]
        known[val_rows] = result.validation["known"]
    rows = np.flatnonzero(votes)
    return {"probs": (total[rows] / votes[rows, None]).astype(np.float32), "targets": targets[rows],
            "known": known[rows]}, rows


def fold_scores(splits: list[tuple[np.ndarray, np.ndarray]], results: list[PhaseResult], thresholds: Thresholds,
                label_names: list[str]) -> dict[str, Any]:
    """Each fold's validation mAP, micro- and macro-F1 and Hamming loss (at the out-of-fold thresholds), with their
    mean and standard deviation over the folds."""
    per_fold = []
    for result in results:
        val = result.validation
        report = evaluate_probabilities(val["targets"], val["probs"], thresholds, label_names=label_names,
                                        known=val["known"])
        per_fold.append({"mAP": report.mAP, "micro_f1": report.micro_f1, "macro_f1": report.macro_f1,
                         "hamming_loss": report.hamming_loss})
    summary: dict[str, Any] = {"folds": len(splits), "per_fold": per_fold}
    for name in per_fold[0]:
        values = np.array([np.nan if fold[name] is None else fold[name] for fold in per_fold], dtype=float)
        values = values[np.isfinite(values)]  # a fold without a positive of any label has no mAP
        summary[name] = {"mean": float(values.mean()) if len(values) else None,
                         "std": float(values.std(ddof=1)) if len(values) > 1 else 0.0}
    return summary


def train(labels: str | Path, *, out_dir: str | Path = "runs/train", images_dir: str | Path | None = None,
          text_column: str | int | None = None, tabular: bool = False, val_labels: str | Path | None = None,
          config: TrainConfig | None = None, read_options: dict[str, Any] | None = None, modality: str | None = None,
          console: Console | None = None, progress: bool = True, resume: bool = False, force: bool = False,
          epoch_callback: Callable[[int, float], None] | None = None) -> TrainResult:
    """Train a multi-label model on images, texts or feature rows and write a run folder.

    Args:
        labels: the training label file: images (any format read_labels reads, with `images_dir`), texts
            (CSV/TSV/JSON(L) with `text_column`) or a feature table (ARFF, or CSV with `tabular`).
        out_dir: the run folder: artifact/, metrics.csv (per epoch), metrics.json, config.json, run.json,
            val_predictions.csv, checkpoints/.
        images_dir: folder the label file's image paths are relative to.
        text_column: the column or JSON key holding the text (makes it a text model).
        tabular: LABELS is a feature table (ARFF files are detected).
        val_labels: a validation file of the same kind; without it each head holds out a stratified part.
        config: training settings; unset ones take the modality's defaults (tagnet.config.settings.MODALITY_DEFAULTS).
        read_options: options for the label-file reader (format, columns, separator, label_count...).
        modality: "image", "text" or "tabular" instead of detecting it.
        resume: continue an interrupted run in `out_dir` from its last checkpoints (see resume_training).
        force: replace a finished run in `out_dir` (without it such a folder is refused with a ConfigError).
        epoch_callback: called as (epoch, val_mAP) after each validation of every phase; may raise to stop.
    Returns:
        TrainResult with the run and artifact folders and the validation report.
    Raises:
        DataError, ConfigError, ModelError on bad input (settings are checked before any data is read).
    """
    read_options = dict(read_options or {})
    kind = modalities.get(modality) if modality else modalities.detect(labels, read_options, text_column=text_column,
                                                                       tabular=tabular)
    config = (config or TrainConfig()).for_modality(kind.name)
    config.validate()
    if config.cv and val_labels is not None:
        raise ConfigError(f"cv={config.cv} with a --val file: cross-validation holds out folds of the training file; "
                          "give one of them")
    if config.ensemble > 1 and not kind.frozen(config):
        raise ConfigError(f"ensemble={config.ensemble}: an ensemble averages heads on a frozen pretrained encoder; "
                          f"{config.backbone} (pretrained={config.pretrained}) trains the whole network")
    read_options = kind.read_options(read_options)
    console = console or Console(stderr=True)
    started = time.perf_counter()
    clock = TimeBudget(config.budget_seconds(), started)
    main = is_main_process()
    run_dir = start_run(out_dir, resume=resume, main=main, force=force)
    seed_everything(config.seed)

    data = kind.read(labels, options=read_options, images_dir=images_dir, text_column=text_column)
    from_val_file = np.zeros(len(data), dtype=bool)
    if val_labels is not None:
        val = kind.read(val_labels, options=read_options, images_dir=images_dir, text_column=text_column)
        val.table = val.table.aligned_to(data.table.label_names, what=str(val_labels))
        data, from_val_file = data.followed_by(val), np.r_[from_val_file, np.ones(len(val), dtype=bool)]
    model = kind.build_model(config, data)
    config = kind.resolved_config(config, model)
    if main:
        write_run_start(run_dir, config=config, labels=labels, modality=kind.name, val_labels=val_labels,
                        images_dir=images_dir, text_column=text_column, read_options=read_options)
    cache_dir = Path(config.cache_dir or run_dir / "cache")
    data, kept = kind.prepare(data, model, cache_dir=cache_dir)
    from_val_file = from_val_file[kept]
    if data.skipped:
        console.print(f"[yellow]skipped {len(data.skipped)} unreadable or missing inputs:[/yellow] "
                      + "; ".join(list(data.skipped.values())[:5]) + (" ..." if len(data.skipped) > 5 else ""))
    splits = _checked_splits(data, from_val_file, config, labels)
    if clock.seconds is not None and kind.frozen(config):
        planned, line = kind.budget_plan(config, model, data, clock, cache_dir=cache_dir)
        if line:
            console.print(line)
        if planned.backbone != config.backbone:
            config = planned
            model = kind.build_model(config, data)
    train_rows = np.unique(np.concatenate([rows for rows, _ in splits]))
    state = kind.fit_state(model, data, train_rows, text_column=text_column, read_options=read_options)
    own = "" if from_val_file.any() or config.ensemble == 1 else (
        f" (fold 1 of {config.cv})" if config.cv else f" (each of the {config.ensemble} heads its own split)")
    console.print(f"training on {len(splits[0][0])} {kind.name} inputs, validating on {len(splits[0][1])}{own}, "
                  f"{data.table.num_labels} labels, model {config.backbone}")

    phase = dict(config=config, run_dir=run_dir, progress=progress, epoch_callback=epoch_callback, resume=resume)
    selection = None
    if config.select is not None and kind.frozen(config):
        selection = _select_head(kind, model, data, state, np.flatnonzero(~from_val_file), config=config,
                                 cache_dir=cache_dir, console=console)
        seed_everything(config.seed)  # the model trains the same whether or not (and however long) CV ran first
        chosen = selection.applied(config)
        if chosen != config:  # a linear head, or several heads (each holding out its own part of the rows)
            config = chosen
            model = kind.build_model(config, data)
            phase["config"] = config
            splits = _checked_splits(data, from_val_file, config, labels)
            train_rows = np.unique(np.concatenate([rows for rows, _ in splits]))
            state = kind.fit_state(model, data, train_rows, text_column=text_column, read_options=read_options)
    first_train = data.table.subset(splits[0][0])
    loss = make_loss(config, label_frequency=(first_train.targets * first_train.known).mean(axis=0))
    loggers = RunLoggers(config, run_dir)
    phase["loggers"] = loggers
    finetuned = False
    recipe = _recipe(kind, model, data, splits[0], config=config, run_dir=run_dir, resume=resume, main=main,
                     elapsed=time.perf_counter() - started, console=console)
    budget = dict(recipe=recipe, started=started)
    if selection is not None and selection.choice == "linear":
        inputs = kind.head_inputs(model, data, state, cache_dir=cache_dir, progress=progress).values.numpy()
        results = fit_linear_heads(head_members(model), inputs, data.table.targets, data.table.known, splits,
                                   C=selection.C, scaling=selection.scaling)
    elif recipe.name in ("head", "head+finetune"):
        results = _train_heads(kind, model, data, splits, state, loss=loss, config=config, phase=phase,
                               cache_dir=cache_dir, progress=progress, console=console)
        if recipe.throughput is None:  # no plan from the modality: whether fine-tuning fits is estimated here
            tuning = _budget_finetune(kind, model, data, splits[0], config, clock, console)
            wanted = bool(tuning.finetune)
        else:
            tuning, wanted = config, recipe.name == "head+finetune"
        if wanted:
            limit = {} if clock.seconds is None else {"max_seconds": clock.left() - FINAL_SECONDS}
            results, finetuned = _finetune(kind, model, data, splits[0], results, loss=loss, config=tuning,
                                           phase=dict(phase, config=tuning, **limit), console=console, budget=budget)
    elif recipe.name == "finetune":  # the whole pretrained network from the start, no frozen pass
        set_backbone_trainable(model, True)
        # the new head learns at the head's rate (at the encoder's 5e-5 it barely moves from its start in 2 passes)
        results = [_train_network(kind, model, data, splits[0], loss=loss, config=config, phase=phase, name="finetune",
                                  lr=config.finetune_lr, head_lr=config.lr, console=console, **budget)]
        finetuned = True
    else:
        results = [_train_network(kind, model, data, splits[0], loss=loss, config=config, phase=phase, name="train",
                                  lr=config.lr)]
    model.eval()

    val, val_rows = merged_validation(splits, results, len(data))
    fit = validation_thresholds(val, config)
    thresholds = fit.thresholds
    notes = fit.notes(data.table.label_names)
    for line in notes:
        console.print(f"[yellow]note[/yellow] {line}", soft_wrap=True)
    report = evaluate_probabilities(val["targets"], val["probs"], thresholds, label_names=data.table.label_names,
                                    known=val["known"])
    folds = fold_scores(splits, results, thresholds, data.table.label_names) if config.cv else None
    if folds is not None:
        console.print(f"{config.cv}-fold cross-validation: mAP {folds['mAP']['mean']:.4f} ± {folds['mAP']['std']:.4f}, "
                      f"micro-F1 {folds['micro_f1']['mean']:.4f} ± {folds['micro_f1']['std']:.4f} "
                      "(mean ± std over folds; thresholds fitted out of fold)")
    seconds = time.perf_counter() - started
    if not results[0].is_global_zero:  # other ranks of a distributed run: rank 0 writes the files
        return TrainResult(run_dir, run_dir / ARTIFACT_DIR, report, thresholds, data.skipped, seconds, notes)
    best_epoch = max(r.best_epoch for r in results)
    artifact_dir = save_artifact(run_dir / ARTIFACT_DIR, model=model, modality=kind.name,
                                 label_names=data.table.label_names, thresholds=thresholds, state=state,
                                 config=config.to_dict(), metrics=report.summary(),
                                 extra={"best_epoch": best_epoch, "skipped_inputs": len(data.skipped),
                                        "finetuned": finetuned, "decision_rules": _side_rules(val, config),
                                        "recipe": recipe.to_dict(),
                                        **({"time_budget": clock.to_dict()} if clock.seconds is not None else {}),
                                        **({"selection": selection.to_dict()} if selection else {})})
    loggers.finish(report.summary())
    seconds = time.perf_counter() - started
    write_run_end(run_dir, report_dict=report.to_dict(), best_epoch=best_epoch, seconds=seconds, skipped=data.skipped,
                  items=[data.table.items[i] for i in val_rows], label_names=data.table.label_names, validation=val,
                  extra={**({"cv": folds} if folds is not None else {}),
                         **({"time_budget": clock.to_dict()} if clock.seconds is not None else {}),
                         **({"selection": selection.to_dict()} if selection else {})} or None)
    return TrainResult(run_dir, artifact_dir, report, thresholds, data.skipped, seconds, notes)


def _side_rules(val: dict[str, np.ndarray], config: TrainConfig) -> dict[str, Any]:
    """The per-label F1 and p >= 0.5 rules, fitted on the same validation probabilities, that evaluate reports beside
    the model's own (tagnet.decisions.thresholds.side_rules)."""
    rules = side_rules(val["targets"], val["probs"], known=val["known"], min_positives=config.min_positives,
                       min_labels=config.min_labels, max_labels=config.max_labels, if_empty=config.if_empty)
    return {name: rule.to_dict() for name, rule in rules.items()}


def _checked_splits(data: LabeledInputs, from_val_file: np.ndarray, config: TrainConfig,
                    labels: str | Path) -> list[tuple[np.ndarray, np.ndarray]]:
    if len(data) == 0:
        raise DataError(f"{labels}: no readable inputs left for training")
    if not from_val_file.any() and len(data) < 2:
        raise DataError(f"{labels}: need training and validation items, got {len(data)} item(s)")
    splits = head_splits(data.table, from_val_file, config)
    if any(len(train) == 0 or len(val) == 0 for train, val in splits):
        raise DataError(f"{labels}: need training and validation items, got {len(splits[0][0])} and {len(splits[0][1])}")
    return splits


def _select_head(kind: Modality, model: TagnetModel, data: LabeledInputs, state: dict, rows: np.ndarray, *,
                 config: TrainConfig, cache_dir: Path, console: Console) -> Selection:
    """config.select's head, by k-fold CV over the training file's `rows` (tagnet.training.selection.select_head)."""
    inputs = kind.head_inputs(model, data, state, cache_dir=cache_dir, progress=False).values.numpy()
    table = data.table.subset(rows)
    single = dataclasses.replace(config, ensemble=1)
    if config.select in ("auto", "linear"):  # a named MLP or ensemble needs no CV
        console.print(f"choosing the head (--select {config.select}) by {config.cv_folds}-fold CV on {len(rows)} rows")
    return select_head(config, inputs[rows], table.targets, table.known,
                       make_head=lambda: head_members(kind.build_model(single, data))[0],
                       thresholds_for=lambda val: validation_thresholds(val, config).thresholds, console=console)


def _train_heads(kind: Modality, model: TagnetModel, data: LabeledInputs, splits: list, state: dict, *, loss,
                 config: TrainConfig, phase: dict, cache_dir: Path, progress: bool, console: Console) -> list[PhaseResult]:
    """Each head (one, or an ensemble's members one after another: phases head, head-2, ...) on the frozen encoder's
    cached output, with its own split and early stopping."""
    started = time.perf_counter()
    inputs = kind.head_inputs(model, data, state, cache_dir=cache_dir, progress=progress)
    console.print(f"frozen {config.backbone} outputs of {len(data)} inputs ready in {time.perf_counter() - started:.1f} s")
    results = []
    for k, (head, (train_rows, val_rows)) in enumerate(zip(head_members(model), splits)):
        module = MultiLabelModule(head, loss, lr=config.lr, weight_decay=config.weight_decay, schedule=config.schedule,
                                  normalize=None, mixup=config.mixup, score=validation_score)
        results.append(run_phase(module, inputs.loader(data.table, train_rows, batch_size=config.batch_size, train=True),
                                 inputs.loader(data.table, val_rows, batch_size=config.batch_size, train=False),
                                 epochs=config.epochs, phase="head" if k == 0 else f"head-{k + 1}",
                                 precision="32-true", head_only=True, **phase))
    return results


def _recipe(kind: Modality, model: TagnetModel, data: LabeledInputs, split: tuple, *, config: TrainConfig,
            run_dir: Path, resume: bool, main: bool, elapsed: float, console: Console) -> Recipe:
    """The modality's recipe for this run, said in one line; kept in RUN/checkpoints/recipe.json, so a resumed run
    follows the recipe it started with."""
    path = run_dir / CHECKPOINTS_DIR / "recipe.json"
    if resume and path.is_file():
        return Recipe.from_dict(json.loads(path.read_text()))
    recipe = kind.recipe(model, data, split, config=config, elapsed=elapsed)
    if recipe.reason and recipe.reason != "as asked":
        console.print(recipe.reason, soft_wrap=True)
    if main:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(recipe.to_dict()))
    return recipe


def _budget_plan(recipe: Recipe | None, started: float, loader, split: tuple, *, config: TrainConfig, epochs: int,
                 ckpt_dir: Path, resume: bool, main: bool) -> Plan | None:
    """The phase's passes sized to the time left of the recipe's budget (tagnet.training.budget.plan_passes), when the recipe
    has a budget and a measured throughput and the loader's batches can be counted (batches_per_epoch); kept in the
    phase's checkpoint folder for a resumed run. None: no plan applies."""
    sampler = getattr(loader, "batch_sampler", None)
    if recipe is None or recipe.budget is None or recipe.throughput is None or not hasattr(sampler, "batches_per_epoch"):
        return None
    path = ckpt_dir / "plan.json"
    if resume and path.is_file():
        plan = Plan(**json.loads(path.read_text()))
    else:
        plan = plan_passes(seconds_left=recipe.budget - (time.perf_counter() - started), n_train=len(split[0]),
                           n_val=len(split[1]), batch_size=config.batch_size, throughput=recipe.throughput,
                           max_passes=epochs)
        if plan is None:
            return None
        if main:
            ckpt_dir.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(plan.to_dict()))
    sampler.batches_per_epoch = plan.batches_per_round
    return plan


def _train_network(kind: Modality, model: TagnetModel, data: LabeledInputs, split: tuple, *, loss, config: TrainConfig,
                   phase: dict, name: str, lr: float, recipe: Recipe | None = None, started: float = 0.0,
                   console: Console | None = None, head_lr: float | None = None) -> PhaseResult | None:
    """The whole network trained on raw inputs (the modality's loaders) for one phase; with a budgeted `recipe`, for
    the passes that fit the time left (None when none fit)."""
    train_loader, val_loader = kind.network_loaders(model, data.subset(split[0]), data.subset(split[1]), config)
    module = MultiLabelModule(model, loss, lr=lr, weight_decay=config.weight_decay, schedule=config.schedule,
                              normalize=kind.normalization(model),
                              mixup=config.mixup if kind.mixes_network_inputs else 0.0, score=validation_score,
                              head_lr=head_lr)
    epochs = config.finetune_epochs if name == "finetune" else config.epochs
    if recipe is not None and recipe.budget is not None and recipe.throughput is not None:
        plan = _budget_plan(recipe, started, train_loader, split, config=config, epochs=epochs,
                            ckpt_dir=phase["run_dir"] / CHECKPOINTS_DIR / name, resume=phase["resume"],
                            main=is_main_process())
        if plan is None:
            return None
        epochs = plan.rounds
        if console is not None:
            console.print(f"{name}: {plan.passes:g} passes over {len(split[0])} inputs in {plan.rounds} epochs of "
                          f"{plan.batches_per_round} batches (about {plan.estimated_seconds:.0f} s of the "
                          f"{plan.seconds_left:.0f} s left of the time budget {duration(recipe.budget)})", soft_wrap=True)
    return run_phase(module, train_loader, val_loader, epochs=epochs, phase=name, precision=default_precision(config),
                     **phase)


def _budget_finetune(kind: Modality, model: TagnetModel, data: LabeledInputs, split: tuple, config: TrainConfig,
                     budget: TimeBudget, console: Console) -> TrainConfig:
    """Under a time budget, fine-tuning after the head when at least one epoch fits (as many of finetune_epochs as
    fit, estimated from the network's measured speed), else head only; said and recorded. Without a budget, as set."""
    if budget.seconds is None or config.ensemble > 1:
        return config
    seconds = kind.forward_seconds(model, data)
    if seconds is None:
        return config
    epochs, per_epoch = finetune_epochs_that_fit(budget, forward_seconds=seconds, train_images=len(split[0]),
                                                 val_images=len(split[1]), wanted=config.finetune_epochs)
    if epochs == 0:
        console.print(budget.note(f"head only: an epoch of fine-tuning would take about {duration(per_epoch)}, "
                                  f"{duration(max(0.0, budget.left()))} are left"))
        return dataclasses.replace(config, finetune=False)
    console.print(budget.note(f"fine-tuning {epochs} epoch(s) after the head (about {duration(per_epoch)} each); "
                              "kept only if better on validation"))
    return dataclasses.replace(config, finetune=True, finetune_epochs=epochs)


def _finetune(kind: Modality, model: TagnetModel, data: LabeledInputs, split: tuple, results: list[PhaseResult], *,
              loss, config: TrainConfig, phase: dict, console: Console,
              budget: dict | None = None) -> tuple[list[PhaseResult], bool]:
    """Fine-tune the whole network from the trained head; keep it only if its validation mAP is at least the head's.
    With a budgeted recipe (`budget`: recipe and start time), fine-tuning fits the time left, or is skipped.

    Returns (the kept phase results, fine-tuned?)."""
    head_state = copy.deepcopy(model.state_dict())
    set_backbone_trainable(model, True)
    model.batch_norm_frozen = True  # small batches of a few hundred images would shift the pretrained statistics
    tuned = _train_network(kind, model, data, split, loss=loss, config=config, phase=phase, name="finetune",
                           lr=config.finetune_lr, console=console, **(budget or {}))
    model.batch_norm_frozen = False
    if tuned is None:
        console.print("no time left of the time budget for fine-tuning: keeping the head")
        model.load_state_dict(head_state)
        set_backbone_trainable(model, False)
        return results, False
    if tuned.best_score >= results[0].best_score:
        return [tuned], True
    console.print(f"fine-tuning reached validation mAP {tuned.best_score:.4f}, below the head alone "
                  f"({results[0].best_score:.4f}): keeping the head")
    model.load_state_dict(head_state)
    return results, False


def resume_training(run_dir: str | Path, *, console: Console | None = None, progress: bool = True) -> TrainResult:
    """Continue an interrupted `train` run from its last checkpoints, with the settings it was started with."""
    run, config = read_run_start(run_dir)
    return train(run["labels"], out_dir=run_dir, images_dir=run.get("images_dir"), text_column=run.get("text_column"),
                 val_labels=run.get("val_labels"), config=config, read_options=run.get("read_options") or {},
                 modality=run.get("modality", "image"), console=console, progress=progress, resume=True)
