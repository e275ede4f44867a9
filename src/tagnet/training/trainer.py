"""Train any modality: settings resolved once into a plan, then the stages in order (tagnet.training.stages): read
and prepare the inputs, choose the recipe, the recipe's stages (frozen outputs, heads, fine-tuning kept only if
better, or the whole network), decisions and the artifact with its run folder."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console

from tagnet.config.settings import TrainConfig
from tagnet.config.source import DataSource
from tagnet.engine import is_main_process, seed_everything
from tagnet.evaluation.metrics import MetricsReport
from tagnet.decisions.thresholds import Thresholds
from tagnet.inference.artifact import save_artifact
from tagnet.training import stages
from tagnet.training.growth import GROWTH_SETTINGS, grow
from tagnet.training.plan import resolve_plan
from tagnet.training.run_folder import ARTIFACT_DIR, read_run_start, start_run, write_run_end
from tagnet.training.stages import Callbacks, Run
from tagnet.training.recalibration import recalibrate
from tagnet.training.validation import fold_scores, held_out_decisions, merged_validation, side_rules_dict

# The stages every run goes through before and after its recipe's own (Recipe.stages).
PREPARE = (("read_inputs", stages.read_inputs), ("prepare_inputs", stages.prepare_inputs),
           ("fit_backbone_to_budget", stages.fit_backbone_to_budget), ("fit_state", stages.fit_state),
           ("plan_recipe", stages.plan_recipe))


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
    privacy: dict[str, Any] | None = None  # with dp_epsilon: ε spent, δ, noise, steps, clipping, what is not covered


def train(labels: str | Path, *, out_dir: str | Path = "runs/train", images_dir: str | Path | None = None,
          text_column: str | int | None = None, tabular: bool = False, val_labels: str | Path | None = None,
          config: TrainConfig | None = None, read_options: dict[str, Any] | None = None, modality: str | None = None,
          console: Console | None = None, progress: bool = True, resume: bool = False, force: bool = False,
          epoch_callback: Callable[[int, float], None] | None = None, source: DataSource | None = None,
          callbacks: dict[str, list[Callable[..., Any]]] | None = None, hierarchy: str | Path | None = None,
          hierarchy_separator: str | None = None, dp_epsilon: float | None = None, dp_delta: float | None = None,
          from_run: str | Path | None = None) -> TrainResult:
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
        source: the data source as one value (tagnet.config.source.DataSource), instead of labels, images_dir,
            text_column, tabular, read_options and modality.
        callbacks: functions hooked on the run's events (tagnet.training.stages.EVENTS): on_stage_start and
            on_stage_end (stage name, run state), on_epoch_end (epoch, val_mAP).
        hierarchy: a label hierarchy file (paths such as animal/dog per line, or a YAML tree): the config's
            `hierarchy` setting; the targets get each label's ancestors, predictions stay consistent (tagnet.hierarchy).
        hierarchy_separator: the paths' separator (default /); without `hierarchy`, the label names are split at it.
        dp_epsilon, dp_delta: train the head with differentially private SGD to this (ε, δ) budget (the settings of
            the same names; given here they override `config`'s); TrainResult.privacy says what was spent.
        from_run: a finished run folder to grow (tagnet.training.growth.grow): `labels` adds labels or examples to
            it; the run's settings, encoder and untouched labels' weights are kept, its frozen outputs reused.
    Returns:
        TrainResult with the run and artifact folders and the validation report.
    Raises:
        DataError, ConfigError, ModelError on bad input (settings are checked before any data is read).
    """
    source = source or DataSource(labels, images_dir=images_dir, text_column=text_column, tabular=tabular,
                                  read_options=dict(read_options or {}), modality=modality)
    if from_run is not None:
        return TrainResult(**grow(source, from_run=from_run, out_dir=out_dir, config=config, console=console,
                                  progress=progress, force=force))
    started = time.perf_counter()
    overrides = {name: value for name, value in (("hierarchy", None if hierarchy is None else str(hierarchy)),
                 ("hierarchy_separator", hierarchy_separator), ("dp_epsilon", dp_epsilon), ("dp_delta", dp_delta))
                 if value is not None}
    if overrides:  # the keywords that stand for settings override config's
        config = (config or TrainConfig()).updated(**overrides)
    plan = resolve_plan(source, config=config, val_labels=val_labels, started=started)
    hooks = {event: list(functions) for event, functions in (callbacks or {}).items()}
    if epoch_callback is not None:
        hooks.setdefault("on_epoch_end", []).append(epoch_callback)
    hooked, main = Callbacks(hooks), is_main_process()
    run = Run(plan, start_run(out_dir, resume=resume, main=main, force=force), console or Console(stderr=True),
              progress, resume, main, hooked, started)
    seed_everything(plan.config.seed)
    for name, stage in PREPARE:
        _run_stage(run, name, stage)
    for name in run.recipe.stages:
        _run_stage(run, name, stages.RECIPE_STAGES[name])
    run.model.eval()
    _run_stage(run, "decisions", decisions)
    _run_stage(run, "write_artifact", write_artifact)
    return run.outcome["result"]


def _run_stage(run: Run, name: str, stage: Callable[[Run], None]) -> None:
    run.callbacks.run("on_stage_start", name, run)
    stage(run)
    run.callbacks.run("on_stage_end", name, run)


def decisions(run: Run) -> None:
    """Thresholds fitted on the heads' merged validation outputs (on the threshold rows only, when the held-out rows
    are sliced: validation.held_out_decisions; first recalibrated there for a loss that trades calibration for
    ranking: recalibration.recalibrate), the validation report and, with --cv, each fold's scores; notes on labels
    missing the objective's target said."""
    config, table = run.plan.config, run.data.table
    run.calibration = recalibrate(run)  # before the hierarchy's rule, which the Predictor applies after the model
    if run.hierarchy is not None:  # thresholds fitted, and every score taken, with the rule in place
        for result in run.results:
            result.validation["probs"] = run.hierarchy.consistent(result.validation["probs"])
    val, val_rows = merged_validation(run.splits, run.results, len(run.data))
    fit, report, fitted_on, estimates = held_out_decisions(val, val_rows, run.slices, config, table.label_names,
                                                           hierarchy=run.hierarchy)
    notes = fit.notes(table.label_names)
    for line in notes:
        run.console.print(f"[yellow]note[/yellow] {line}", soft_wrap=True)
    if estimates is not None:
        honest, optimistic = estimates["honest"], estimates["optimistic"]
        run.console.print(f"thresholds fitted on {len(run.slices[1])} held-out rows apart from the {honest['rows']} "
                          f"that chose the epoch; on those: macro-F1 {honest['macro_f1']:.4f}, micro-F1 "
                          f"{honest['micro_f1']:.4f} (thresholds fitted on them would claim "
                          f"{optimistic['macro_f1']:.4f} and {optimistic['micro_f1']:.4f}: optimistic)", soft_wrap=True)
    folds = (fold_scores(run.splits, run.results, fit.thresholds, table.label_names, hierarchy=run.hierarchy)
             if config.cv else None)
    if folds is not None:
        run.console.print(f"{config.cv}-fold cross-validation: mAP {folds['mAP']['mean']:.4f} ± {folds['mAP']['std']:.4f}, "
                          f"micro-F1 {folds['micro_f1']['mean']:.4f} ± {folds['micro_f1']['std']:.4f} "
                          "(mean ± std over folds; thresholds fitted out of fold)")
    run.outcome.update(validation=val, val_rows=val_rows, thresholds=fit.thresholds, notes=notes, report=report,
                       folds=folds, fitted_on=fitted_on, estimates=estimates)


def write_artifact(run: Run) -> None:
    """The artifact (weights, labels, thresholds, fitted state, settings and what the run chose) and the run folder's
    end files, by rank 0 of a distributed run; the TrainResult in run.outcome["result"]."""
    out, plan, table = run.outcome, run.plan, run.data.table
    config, report = plan.config, out["report"]
    result = TrainResult(run.run_dir, run.run_dir / ARTIFACT_DIR, report, out["thresholds"], run.data.skipped,
                         time.perf_counter() - run.started, out["notes"], run.privacy)
    out["result"] = result
    if not run.results[0].is_global_zero:  # other ranks of a distributed run: rank 0 writes the files
        return
    best_epoch = max(r.best_epoch for r in run.results)
    chosen = {**({"time_budget": plan.budget.to_dict()} if plan.budget.seconds is not None else {}),
              **({"selection": run.selection.to_dict()} if run.selection else {}),
              "final_fit": stages.final_fit(run), **({"privacy": run.privacy} if run.privacy else {}),
              **({"loss_choice": run.loss_choice} if run.loss_choice else {}),
              **({"calibration": run.calibration} if run.calibration else {})}
    # rules fitted on private validation rows would leave the privacy budget: a private run keeps none
    private = run.privacy is not None and not config.dp_public_val
    result.artifact_dir = save_artifact(
        run.run_dir / ARTIFACT_DIR, model=run.model, modality=plan.kind.name, label_names=table.label_names,
        thresholds=out["thresholds"], state=run.state, config=config.to_dict(), metrics=report.summary(),
        extra={"best_epoch": best_epoch, "skipped_inputs": len(run.data.skipped), "finetuned": run.finetuned,
               "decision_rules": {} if private else side_rules_dict(out["fitted_on"], config),
               "recipe": run.recipe.to_dict(), **chosen},
        hierarchy=run.hierarchy)
    run.loggers.finish(report.summary())
    result.seconds = time.perf_counter() - run.started
    write_run_end(run.run_dir, report_dict=report.to_dict(), best_epoch=best_epoch, seconds=result.seconds,
                  skipped=run.data.skipped, items=[table.items[i] for i in out["val_rows"]],
                  label_names=table.label_names, validation=out["validation"],
                  extra={**({"cv": out["folds"]} if out["folds"] is not None else {}),
                         **({"estimates": out["estimates"]} if out["estimates"] is not None else {}), **chosen} or None)


def resume_training(run_dir: str | Path, *, console: Console | None = None, progress: bool = True) -> TrainResult:
    """Continue an interrupted `train` run from its last checkpoints, with the settings it was started with."""
    run, config = read_run_start(run_dir)
    parent = (run.get("parent") or {}).get("run")
    if parent is not None:  # a grown run grows again from its parent, given only the settings a grown run may take
        config = dataclasses.replace(TrainConfig(), **{name: getattr(config, name) for name in GROWTH_SETTINGS})
    return train(run["labels"], out_dir=run_dir, images_dir=run.get("images_dir"), text_column=run.get("text_column"),
                 val_labels=run.get("val_labels"), config=config, read_options=run.get("read_options") or {},
                 modality=run.get("modality", "image"), console=console, progress=progress, resume=True,
                 from_run=parent)
