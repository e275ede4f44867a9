"""The stages of a training run, in order: read and prepare the inputs (the backbone that fits a time budget, the
fitted state, the splits), choose the recipe, then the recipe's stages (frozen outputs, heads, fine-tuning, or the
whole network), decisions and the artifact. Each takes the run's state and adds to it."""

from __future__ import annotations

import copy
import dataclasses
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from rich.console import Console
from torch import nn

from tagnet.data.check import feature_table_reading
from tagnet.data.split import train_val_splits
from tagnet.engine import PhaseResult, default_precision, seed_everything
from tagnet.errors import ConfigError, DataError
from tagnet.hierarchy import Tree, load_hierarchy, with_implied_ancestors
from tagnet.inference.runtime import Spread
from tagnet.modalities.base import HeadInputs, LabeledInputs
from tagnet.models import TagnetModel, head_members, make_head, set_backbone_trainable
from tagnet.training.budget import FINAL_SECONDS, Plan, TimeBudget, duration
from tagnet.training.trees import TREE_KINDS, fit_tree_head, tree_size
from tagnet.training.large import choose_large, fit_large_final, is_large
from tagnet.training.loss_choice import choose_loss
from tagnet.training.losses import make_loss
from tagnet.training.plan import RunPlan
from tagnet.training.recipes import Recipe, choose_recipe, head_only, phase_epochs
from tagnet.training.run_folder import CHECKPOINTS_DIR, write_run_start
from tagnet.config.settings import TrainConfig
from tagnet.training.selection import (Selection, final_seeds, fit_final_heads, fit_linear_heads, select_head,
                                      smoothing_grid)
from tagnet.engine.headfit import fit_head, head_probabilities, rows_of
from tagnet.engine.private import default_delta, fit_private_head
from tagnet.engine.steps import head_score
from tagnet.training.privacy import privacy_lines, privacy_record, refuse_unsupported
from tagnet.training.validation import Slices, ScoreFn, stopping_score, threshold_slice, validation_thresholds

if TYPE_CHECKING:  # the Lightning adapter is imported where a Lightning phase runs (its import alone takes seconds)
    from tagnet.engine.loggers import RunLoggers

Split = tuple[np.ndarray, np.ndarray]
EVENTS = ("on_stage_start", "on_stage_end", "on_epoch_end")
REFIT_SELECTS = ("auto", "linear", *TREE_KINDS)  # --select values refitted on every row by default (tables)


class Callbacks:
    """Functions hooked on a run's events (as Ultralytics' run_callbacks): on_stage_start(name, run) and
    on_stage_end(name, run) around every stage, on_epoch_end(epoch, val_mAP) after each validation of every phase
    (it may raise to stop the run: tuning prunes trials so)."""

    def __init__(self, hooks: dict[str, list[Callable[..., None]]] | None = None) -> None:
        unknown = sorted(set(hooks or {}) - set(EVENTS))
        if unknown:
            raise ConfigError(f"callbacks: unknown training event {unknown[0]!r}; expected one of {', '.join(EVENTS)}")
        self.hooks = {event: list((hooks or {}).get(event, ())) for event in EVENTS}

    def run(self, event: str, *args: Any) -> None:
        """Call every function hooked on `event` with `args`."""
        for hook in self.hooks[event]:
            hook(*args)

    def epoch_hook(self) -> Callable[[int, float], None] | None:
        """What a training phase calls after each validation (None when nothing is hooked)."""
        return (lambda epoch, score: self.run("on_epoch_end", epoch, score)) if self.hooks["on_epoch_end"] else None


@dataclass
class Run:
    """A run's state as the stages fill it in: the plan (replaced where a stage changes the settings), the inputs,
    model, fitted state and splits, the recipe, and what training and the decisions produced."""

    plan: RunPlan
    run_dir: Path
    console: Console
    progress: bool
    resume: bool
    main: bool
    callbacks: Callbacks
    started: float
    data: LabeledInputs | None = None
    from_val_file: np.ndarray | None = None
    model: TagnetModel | None = None
    state: dict[str, Any] | None = None
    splits: list[Split] = field(default_factory=list)
    refit: int = 0  # folds of the CV whose choices the final head, trained on every row, follows (0: a split)
    slices: Slices | None = None  # (early-stopping rows, threshold rows) of the held-out rows (threshold_share)
    recipe: Recipe | None = None
    head_inputs: HeadInputs | None = None
    selection: Selection | None = None
    results: list[PhaseResult] = field(default_factory=list)
    finetuned: bool = False
    privacy: dict[str, Any] | None = None  # with --dp-epsilon: what DP-SGD spent and what it covers (privacy_record)
    loss_choice: dict[str, Any] | None = None  # what --loss auto's probe measured and chose (training.loss_choice)
    calibration: dict[str, Any] | None = None  # the Platt maps folded into the head (training.recalibration)
    outcome: dict[str, Any] = field(default_factory=dict)  # the decisions stage's validation, thresholds, report
    hierarchy: Tree | None = None  # the labels' tree (--hierarchy), aligned to the table's labels
    _loggers: RunLoggers | None = None

    @property
    def cache_dir(self) -> Path:
        """Where decoded images, features and embeddings are cached."""
        return Path(self.plan.config.cache_dir or self.run_dir / "cache")

    @property
    def loggers(self) -> RunLoggers:
        """The run's Lightning loggers, made with the settings it trains with."""
        if self._loggers is None:
            from tagnet.engine.loggers import RunLoggers
            self._loggers = RunLoggers(self.plan.config, self.run_dir)
        return self._loggers

    def phase_args(self, **changes: Any) -> dict[str, Any]:
        """run_phase's keyword arguments shared by every phase of the run."""
        return dict(config=self.plan.config, run_dir=self.run_dir, progress=self.progress, resume=self.resume,
                    epoch_callback=self.callbacks.epoch_hook(), loggers=self.loggers, **changes)

    def stop_score(self, k: int = 0) -> ScoreFn:
        """What head k's phases early-stop on: the validation score of its early-stopping rows
        (validation.stopping_score)."""
        return stopping_score(self.splits[k][1], self.slices)

    def loss(self) -> nn.Module:
        """The loss, weighted (weighted_bce) by the first split's training rows."""
        rows, table = self.splits[0][0], self.data.table
        return make_loss(self.plan.config, label_frequency=(table.targets[rows] * table.known[rows]).mean(axis=0))


def read_inputs(run: Run) -> None:
    """The training file's inputs, then the --val file's (its labels aligned to the training file's); under a hierarchy
    with the implied ancestors added (add_ancestors)."""
    source, kind = run.plan.source, run.plan.kind
    data = kind.read(source)
    run.from_val_file = np.zeros(len(data), dtype=bool)
    if run.plan.val_labels is not None:
        val = kind.read(source.with_labels(run.plan.val_labels))
        val.table = val.table.aligned_to(data.table.label_names, what=str(run.plan.val_labels))
        data, run.from_val_file = data.followed_by(val), np.r_[run.from_val_file, np.ones(len(val), dtype=bool)]
    run.data = data
    add_ancestors(run)


def add_ancestors(run: Run) -> None:
    """With --hierarchy (or --hierarchy-separator): the labels' tree, the ancestors of the data's labels added as labels
    where the data lacks them, and every known positive's ancestors made positives (for images, texts and tables
    alike); said in one line."""
    config, table = run.plan.config, run.data.table
    tree = load_hierarchy(config.hierarchy, separator=config.hierarchy_separator, label_names=table.label_names)
    if tree is None:
        return
    run.hierarchy = tree.for_labels(table.label_names, source=str(run.plan.source.labels))
    closed = with_implied_ancestors(table, run.hierarchy)
    added = int(closed.targets.sum()) - int(table.targets.sum())
    implied = run.hierarchy.implied
    run.console.print(f"hierarchy: {closed.num_labels} labels in {run.hierarchy.levels} level(s)"
                      + (f", {len(implied)} ancestor(s) added as labels ({', '.join(implied[:5])}"
                         f"{' ...' if len(implied) > 5 else ''})" if implied else "")
                      + f"; {added} implied positive(s) added to the targets", soft_wrap=True)
    run.data.table = closed


def prepare_inputs(run: Run) -> None:
    """The model, the settings as it resolves them (recorded in run.json), the inputs made ready for it (images
    decoded into the cache; unreadable ones skipped and named) and the splits."""
    plan, kind = run.plan, run.plan.kind
    run.model = kind.build_model(plan.config, run.data)
    refuse_unsupported(plan.config, run.model, frozen=kind.frozen(plan.config))
    run.refit = refit_folds(run)
    run.plan = plan = plan.with_config(dataclasses.replace(kind.resolved_config(plan.config, run.model),
                                                           refit=bool(run.refit)))
    if run.main:
        source = plan.source
        write_run_start(run.run_dir, config=plan.config, labels=source.labels, modality=kind.name,
                        val_labels=plan.val_labels, images_dir=source.images_dir, text_column=source.text_column,
                        read_options=dict(source.read_options))
    run.data, kept = kind.prepare(run.data, run.model, cache_dir=run.cache_dir, encode=encodes_early(run))
    run.from_val_file = run.from_val_file[kept]
    skipped = run.data.skipped
    if skipped:
        run.console.print(f"[yellow]skipped {len(skipped)} unreadable or missing inputs:[/yellow] "
                          + "; ".join(list(skipped.values())[:5]) + (" ..." if len(skipped) > 5 else ""))
    run.splits = checked_splits(run)
    run.slices = held_out_slices(run)


def encodes_early(run: Run) -> bool:
    """Whether the frozen outputs may be computed while the inputs are prepared (images: while they decode): the run
    surely needs them (a frozen encoder, and not a modality whose default budget may choose to fine-tune from the
    start), its backbone cannot change before they are asked for (no time budget) and one process computes them."""
    config, kind = run.plan.config, run.plan.kind
    may_skip = config.finetune is None and config.ensemble == 1 and kind.spec.default_time_budget is not None
    return kind.frozen(config) and not may_skip and run.plan.budget.seconds is None and not Spread.of(config).active


def held_out_slices(run: Run) -> Slices | None:
    """The held-out rows parted into early-stopping and threshold rows (validation.threshold_slice)."""
    config = run.plan.config
    return threshold_slice(run.data.table.targets, run.data.table.known, run.splits, share=config.threshold_share,
                           seed=config.seed, what=str(run.plan.val_labels or run.plan.source.labels))


def refit_folds(run: Run) -> int:
    """The folds of the CV whose choices (epochs, or the table's head and C, and the thresholds) a final head trained
    on every row follows, 0 for a head holding out a split. --refit unset: config.cv_folds for heads on a frozen
    encoder and nothing else (recipes.head_only) without a --val file or --cv: an image model's one head (not an
    --ensemble), a table's head chosen by --select auto or linear. Raises ConfigError for --refit with a --val file or
    with a recipe that fine-tunes."""
    config, kind = run.plan.config, run.plan.kind
    if config.refit is False:
        return 0
    if config.refit and run.from_val_file.any():
        raise ConfigError(f"refit with --val {run.plan.val_labels}: the --val file validates a head trained on the "
                          "training file; give one of them")
    if config.refit and not head_only(kind, config):
        raise ConfigError("refit trains a head on the frozen encoder on every row, but this run fine-tunes; add "
                          "--no-finetune, or --no-refit to keep a validation split")
    wanted = config.refit or (config.select in REFIT_SELECTS if config.select else config.ensemble == 1)
    usable = head_only(kind, config) and not run.from_val_file.any() and not config.cv
    return config.cv_folds if wanted and usable else 0


def fit_backbone_to_budget(run: Run) -> None:
    """Under a time budget, the backbone whose frozen outputs fit the time left (the modality's budget_plan)."""
    plan, kind = run.plan, run.plan.kind
    if plan.budget.seconds is None or not kind.frozen(plan.config):
        return
    planned, line = kind.budget_plan(plan.config, run.model, run.data, plan.budget, cache_dir=run.cache_dir)
    if line:
        run.console.print(line)
    if planned.backbone != plan.config.backbone:
        run.plan = plan.with_config(planned)
        run.model = kind.build_model(planned, run.data)


def fit_state(run: Run) -> None:
    """The fitted state (how an input becomes the model's input) on every head's training rows; says what trains."""
    kind, config = run.plan.kind, run.plan.config
    run.state = _fitted_state(run)
    if run.refit:
        chosen = "epochs" if config.select is None else "head, C or epochs"
        run.console.print(f"training on all {len(run.splits[0][0])} {kind.name} inputs (the final head; its {chosen} "
                          f"and thresholds chosen by {run.refit}-fold CV, validating out of fold), "
                          f"{run.data.table.num_labels} labels, model {config.backbone}")
        return
    own = "" if run.from_val_file.any() or config.ensemble == 1 else (
        f" (fold 1 of {config.cv})" if config.cv else f" (each of the {config.ensemble} heads its own split)")
    run.console.print(f"training on {len(run.splits[0][0])} {kind.name} inputs, validating on {len(run.splits[0][1])}"
                      f"{own}, {run.data.table.num_labels} labels, model {config.backbone}")


def _fitted_state(run: Run) -> dict[str, Any]:
    train_rows = np.unique(np.concatenate([rows for rows, _ in run.splits]))
    source = run.plan.source
    return run.plan.kind.fit_state(run.model, run.data, train_rows, text_column=source.text_column,
                                   read_options=dict(source.read_options))


def plan_recipe(run: Run) -> None:
    """The run's recipe (tagnet.training.recipes.choose_recipe), said in one line; kept in RUN/checkpoints/recipe.json,
    so a resumed run follows the recipe it started with."""
    path = run.run_dir / CHECKPOINTS_DIR / "recipe.json"
    if run.resume and path.is_file():
        run.recipe = Recipe.from_dict(json.loads(path.read_text()))
        return
    run.recipe = choose_recipe(run.plan.kind, run.model, run.data, run.splits[0], config=run.plan.config,
                               elapsed=time.perf_counter() - run.started)
    if run.recipe.reason and run.recipe.reason != "as asked":
        run.console.print(run.recipe.reason, soft_wrap=True)
    if run.main:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(run.recipe.to_dict()))


def checked_splits(run: Run) -> list[Split]:
    """(training rows, validation rows) of each head (data.split.train_val_splits): with a --val file every head
    validates on its rows; with config.cv head k on fold k; otherwise head k holds out its own stratified part
    (seed + k). Raises DataError when a part would be empty."""
    data, from_val_file, config, labels = run.data, run.from_val_file, run.plan.config, run.plan.source.labels
    if len(data) == 0:
        other = feature_table_reading(labels, [str(item) for item in data.skipped], data.table.label_names,
                                      dict(run.plan.source.read_options))
        raise DataError(f"{labels}: no readable inputs left for training" + (f"; {other}" if other else ""))
    if not from_val_file.any() and len(data) < 2:
        raise DataError(f"{labels}: need training and validation items, got {len(data)} item(s)")
    if from_val_file.any():
        splits = [(np.flatnonzero(~from_val_file), np.flatnonzero(from_val_file))] * config.ensemble
    elif run.refit:  # every row trains the final head and is validated out of fold (heads)
        splits = [(np.arange(len(data)), np.arange(len(data)))] * config.ensemble
    else:
        splits = train_val_splits(data.table.targets, data.table.known, folds=config.cv, heads=config.ensemble,
                                  val_fraction=config.val_fraction, seed=config.seed)
    if any(len(train) == 0 or len(val) == 0 for train, val in splits):
        raise DataError(f"{labels}: need training and validation items, got {len(splits[0][0])} and {len(splits[0][1])}")
    return splits


def frozen_outputs(run: Run) -> None:
    """The frozen encoder's output for every input (cached on disk), how long it took and the runtime that ran it."""
    started = time.perf_counter()
    run.head_inputs = run.plan.kind.head_inputs(run.model, run.data, run.state, cache_dir=run.cache_dir,
                                                progress=run.progress, spread=Spread.of(run.plan.config))
    earlier, runtime = run.head_inputs.earlier_seconds, run.head_inputs.runtime
    notes = [f"on {runtime}"] * bool(runtime) + ["computed while decoding"] * bool(earlier)
    run.console.print(f"frozen {run.plan.config.backbone} outputs of {len(run.data)} inputs ready in "
                      f"{time.perf_counter() - started + earlier:.1f} s" + (f" ({', '.join(notes)})" if notes else ""))


def _own_heads(config: TrainConfig) -> tuple[str, ...] | None:
    """The candidate the CV of a run without --select fits: its own heads, ("ensemble",) for several, else ("head",);
    None with --select (the CV compares the candidates it names)."""
    return None if config.select else ("ensemble",) if config.ensemble > 1 else ("head",)


def choose_head(run: Run) -> None:
    """config.select's head (tables), or with --refit the epochs of the run's own head (images), by k-fold CV over the
    training file's rows (tagnet.training.selection.select_head); the run's settings, model and (for an ensemble)
    splits and fitted state follow the choice."""
    plan, kind, data = run.plan, run.plan.kind, run.data
    rows = np.flatnonzero(~run.from_val_file)
    config = plan.config
    single = dataclasses.replace(config, ensemble=1)
    own = _own_heads(config)
    augmented = run.head_inputs.augmented
    if own:
        smoothings = smoothing_grid(config, own)
        also = f" and label smoothing ({', '.join(f'{s:g}' for s in smoothings)})" if smoothings else ""
        run.console.print(f"choosing the head's epochs{also} by {config.cv_folds}-fold CV on {len(rows)} rows")
    elif is_large(config, len(rows), data.table.targets.shape[1], budget_seconds=plan.budget.seconds):
        run.console.print(f"choosing the head (--select {config.select}) on one fold of a sample of the {len(rows)} rows")
        run.selection = choose_large(config, run.head_inputs.array(), data.table.targets, data.table.known, rows=rows,
                                     thresholds_for=lambda val: validation_thresholds(val, config).thresholds,
                                     console=run.console)
    elif config.select in ("auto", "linear") or run.refit:  # a named MLP, ensemble or tree needs no CV unless refit
        run.console.print(f"choosing the head (--select {config.select}) by {config.cv_folds}-fold CV on {len(rows)} rows")
    if run.selection is None:
        table = data.table.subset(rows)
        run.selection = select_head(config, run.head_inputs.array()[rows], table.targets, table.known,
                                    make_head=lambda: head_members(kind.build_model(single, data))[0],
                                    thresholds_for=lambda val: validation_thresholds(val, config).thresholds,
                                    console=run.console, budget=plan.budget, names=own, refit=bool(run.refit),
                                    augmented=None if augmented is None else augmented.numpy()[rows])
    seed_everything(config.seed)  # the model trains the same whether or not (and however long) CV ran first
    chosen = run.selection.applied(config)
    if chosen == config:
        return
    run.plan = plan.with_config(chosen)  # a linear head, or several heads (each holding out its own part of the rows)
    if dataclasses.replace(chosen, label_smoothing=config.label_smoothing) == config:
        return  # only the loss's label smoothing changed: the model stays
    run.model = kind.build_model(chosen, data)
    if chosen.ensemble != config.ensemble:
        run.splits = checked_splits(run)
        run.slices = held_out_slices(run)
        run.state = _fitted_state(run)
        run.head_inputs = kind.head_inputs(run.model, data, run.state, cache_dir=run.cache_dir, progress=False)


def heads(run: Run) -> None:
    """Each head (one, or an ensemble's members one after another: phases head, head-2, ...) on the frozen encoder's
    cached output, with its own split and early stopping; the linear head of --select by logistic regression, the
    forest by scikit-learn; the loss of --loss auto chosen first (training.loss_choice). With refit: the head chosen
    by k-fold CV (choose_head) trained on every row (refit_heads)."""
    choose_loss(run)
    config = run.plan.config
    if run.refit and config.select is None and not _refit_fits(run):
        run.refit, run.plan = 0, run.plan.with_config(dataclasses.replace(config, refit=False))
        run.splits = checked_splits(run)
        run.slices = held_out_slices(run)  # of the split's held-out rows now, as choose_head redraws them
        run.console.print(f"training on {len(run.splits[0][0])} {run.plan.kind.name} inputs, validating on "
                          f"{len(run.splits[0][1])} instead")
    if config.select is not None or run.refit:
        choose_head(run)
        config = run.plan.config
    if run.refit:
        refit_heads(run)
        return
    if run.selection is not None and run.selection.choice == "linear":
        run.results = fit_linear_heads(head_members(run.model), run.head_inputs.array(), run.data.table.targets,
                                       run.data.table.known, run.splits, C=run.selection.C,
                                       scaling=run.selection.scaling)
        return
    if run.selection is not None and run.selection.choice in TREE_KINDS:
        choice = run.selection.choice
        run.results = [fit_tree_head(choice, run.model, run.head_inputs.array(dense=True), run.data.table.targets,
                                     run.data.table.known, *run.splits[0], size=tree_size(config, choice),
                                     seed=config.seed)]
        return
    from tagnet.engine.fit import run_phase
    from tagnet.engine.module import MultiLabelModule
    loss, table = run.loss(), run.data.table
    run.results = []
    for k, (head, (train_rows, val_rows)) in enumerate(zip(head_members(run.model), run.splits)):
        module = MultiLabelModule(head, loss, lr=config.lr, weight_decay=config.weight_decay, schedule=config.schedule,
                                  normalize=None, mixup=config.mixup, score=run.stop_score(k))
        loaders = (run.head_inputs.loader(table, train_rows, batch_size=config.batch_size, train=True),
                   run.head_inputs.loader(table, val_rows, batch_size=config.batch_size, train=False))
        run.results.append(run_phase(module, *loaders, epochs=phase_epochs(config, "head"),
                                     phase="head" if k == 0 else f"head-{k + 1}", precision="32-true",
                                     head_only=True, **run.phase_args()))


def private_head(run: Run) -> None:
    """The head trained with DP-SGD (tagnet.engine.private) on the frozen encoder's outputs of the training rows (no
    mirror-image copies: one row, one sample) for a fixed number of epochs; ε spent and what it leaves out said; its
    validation outputs for the decisions."""
    config, table, kind = run.plan.config, run.data.table, run.plan.kind
    (train_rows, val_rows), x = run.splits[0], run.head_inputs.values
    head = head_members(run.model)[0]
    started = time.perf_counter()
    spent = fit_private_head(head, rows_of(x, train_rows), table.targets[train_rows], table.known[train_rows],
                             config=config, epsilon=config.dp_epsilon,
                             delta=config.dp_delta or default_delta(len(train_rows)), seed=config.seed)
    validation = {"probs": head_probabilities(head, rows_of(x, val_rows, dense=False)), "targets": table.targets[val_rows],
                  "known": table.known[val_rows]}
    run.results = [PhaseResult(best_score=head_score(validation["targets"], validation["probs"], validation["known"]),
                               best_epoch=config.dp_epochs - 1, epochs_run=config.dp_epochs, validation=validation,
                               seconds=time.perf_counter() - started)]
    run.privacy = privacy_record(spent, config, modality=kind.name, validation_rows=len(val_rows))
    for line in privacy_lines(run.privacy):
        run.console.print(line, soft_wrap=True)


def _refit_fits(run: Run) -> bool:
    """Whether the k-fold CV of an image head and the final fit (each at most config.epochs over its rows and their
    mirror copies; the final fit once per seed it averages) fit the time budget left, at the speed one epoch of the
    head runs on up to 256 of the rows; said as a choice of the budget when not."""
    budget, config, inputs = run.plan.budget, run.plan.config, run.head_inputs
    if budget.seconds is None:
        return True
    sample = np.arange(min(len(run.data), 256))
    single = dataclasses.replace(config, ensemble=1, epochs=1)
    started = time.perf_counter()
    head = make_head(inputs.values.shape[1], run.data.table.targets.shape[1], dropout=config.dropout,
                     head_hidden=config.head_hidden)
    fit_head(head, inputs.values, run.data.table.targets,
             run.data.table.known, sample, None, config=single, seed=config.seed, augmented=inputs.augmented)
    per_row = (time.perf_counter() - started) / len(sample)
    tries = len(smoothing_grid(config, _own_heads(config))) or 1  # the CV runs once per label smoothing it tries
    finals = final_seeds(config, [head])  # the final fit's seeds
    estimate = per_row * config.epochs * len(run.data) * (tries * (run.refit - 1) + finals)  # k folds of (k-1)/k, then all
    if budget.fits(estimate):
        return True
    run.console.print(budget.note(f"{run.refit}-fold CV of the head and its refit would take about "
                                  f"{duration(estimate)}, {duration(max(0.0, budget.left()))} are left: the head holds "
                                  "out a split"), soft_wrap=True)
    return False


def refit_heads(run: Run) -> None:
    """The heads trained on every row with what the CV chose (selection.fit_final_heads), said in one line; their
    validation is the CV's out-of-fold probabilities."""
    selection, table, augmented, config = run.selection, run.data.table, run.head_inputs.augmented, run.plan.config
    if selection.held is not None:  # chosen the large way: held-out rows of one fold validate
        run.results, run.splits = fit_large_final(head_members(run.model), run.head_inputs.array(), table.targets,
                                                  table.known, selection)
    elif selection.choice in TREE_KINDS:  # its out-of-fold probabilities validate it, as they do the other heads
        fitted = fit_tree_head(selection.choice, run.model, run.head_inputs.array(dense=True), table.targets,
                               table.known, np.arange(len(table)), np.arange(0),
                               size=tree_size(config, selection.choice), seed=config.seed)
        run.results = [dataclasses.replace(fitted, validation={"probs": selection.oof, "targets": table.targets,
                                                               "known": table.known})]
    else:
        run.results = fit_final_heads(head_members(run.model), run.head_inputs.array(), table.targets, table.known,
                                      selection, config=config, augmented=None if augmented is None else augmented.numpy())
    temperatures = run.results[0].validation["probs"] is not selection.oof  # selection.folded_temperatures
    folded = temperatures or selection.calibration is not None
    maps = "temperatures" if temperatures else f"Platt maps ({config.loss} trades calibration for ranking)"
    seeds = final_seeds(config, head_members(run.model))
    how = (f"at C={selection.C:g} ({selection.scaling} scaling)" if selection.choice == "linear" else
           f"of {tree_size(config, selection.choice)} {TREE_KINDS[selection.choice].unit}"
           if selection.choice in TREE_KINDS else
           f"for {selection.epochs} of {config.epochs} epochs" + (
               "" if selection.label_smoothing is None else f", label smoothing {selection.label_smoothing:g}") + (
               f" (its probabilities recalibrated by per-label {maps} fitted out of fold)" if folded else "") + (
               f", the mean of {seeds} seeds' weights" if seeds > 1 else ""))
    chosen = "epochs" if run.plan.config.select is None else "head, C or epochs"
    name = "" if selection.choice == "head" else f"{selection.choice} "
    by = (f"{selection.folds}-fold CV (the validation report is the out-of-fold estimate)" if selection.held is None
          else f"one fold of a sample (the validation report is of its {len(selection.held)} held-out rows)")
    run.console.print(f"final {name}head{'s' if selection.heads > 1 else ''} trained on all {len(table)} "
                      f"rows {how}; {chosen} and thresholds chosen by {by}", soft_wrap=True)


def final_fit(run: Run) -> dict[str, Any]:
    """What trained the final model, for metrics.json and the artifact: rows, and how it was validated."""
    rows, val_rows = run.splits[0]
    if run.refit and run.selection.held is not None:  # a large table (training.large)
        return {"rows": len(rows), "all_rows": True, "folds": 1, "validation": "held-out rows of one fold of a sample",
                "validation_rows": len(val_rows), "C": run.selection.C}
    if run.refit:
        seeds = final_seeds(run.plan.config, head_members(run.model)) if run.selection.epochs else 1
        return {"rows": len(rows), "all_rows": True, "folds": run.refit, "validation": "out-of-fold",
                **_chosen_setting(run.selection, run.plan.config), **({"seeds": seeds} if seeds > 1 else {})}
    validation = "--val file" if run.from_val_file.any() else f"{run.plan.config.cv}-fold CV" if run.plan.config.cv \
        else "held-out split"
    return {"rows": len(np.unique(np.concatenate([train for train, _ in run.splits]))), "all_rows": False,
            "validation": validation, "validation_rows": len(val_rows)}


def _chosen_setting(selection: Selection, config: TrainConfig) -> dict[str, Any]:
    """What the CV chose for the final fit of `selection`'s head: its trees or rounds, epochs (and label smoothing, if
    searched) or C."""
    if selection.choice in TREE_KINDS:
        return {TREE_KINDS[selection.choice].unit: tree_size(config, selection.choice)}
    if not selection.epochs:
        return {"C": selection.C}
    searched = {} if selection.label_smoothing is None else {"label_smoothing": selection.label_smoothing}
    return {"epochs": selection.epochs, **searched}


def finetune(run: Run) -> None:
    """Fine-tune the whole network from the trained head, for what of fine-tuning fits the time budget; keep it only if
    its validation mAP is at least the head's."""
    head_state = copy.deepcopy(run.model.state_dict())
    set_backbone_trainable(run.model, True)
    run.model.batch_norm_frozen = True  # small batches of a few hundred images would shift the pretrained statistics
    limit = {} if run.plan.budget.seconds is None else {"max_seconds": run.plan.budget.left() - FINAL_SECONDS}
    tuned = network_phase(run, "finetune", lr=run.plan.config.finetune_lr, after_head=True, **limit)
    run.model.batch_norm_frozen = False
    if tuned is not None and tuned.best_score >= run.results[0].best_score:
        run.results, run.finetuned = [tuned], True
        return
    if tuned is not None:
        run.console.print(f"fine-tuning reached validation mAP {tuned.best_score:.4f}, below the head alone "
                          f"({run.results[0].best_score:.4f}): keeping the head")
    run.model.load_state_dict(head_state)
    set_backbone_trainable(run.model, False)


def finetune_all(run: Run) -> None:
    """The whole pretrained network fine-tuned from the start; the new head learns at the head's rate (at the
    encoder's 5e-5 it barely moves from its start in 2 passes); the loss of --loss auto chosen first."""
    choose_loss(run)
    set_backbone_trainable(run.model, True)
    config = run.plan.config
    run.results = [network_phase(run, "finetune", lr=config.finetune_lr, head_lr=config.lr)]
    run.finetuned = True


def train_all(run: Run) -> None:
    """A network without a frozen encoder, trained whole on raw inputs (--loss auto: bce, nothing to probe on)."""
    choose_loss(run)
    run.results = [network_phase(run, "train", lr=run.plan.config.lr)]


def network_phase(run: Run, name: str, *, lr: float, head_lr: float | None = None, after_head: bool = False,
                  **limit: Any) -> PhaseResult | None:
    """The whole network trained on raw inputs (the modality's loaders) for phase `name`, for the epochs or passes
    that fit the recipe's time budget (sized_phase; None when fine-tuning after a head does not fit)."""
    kind, config, split = run.plan.kind, run.plan.config, run.splits[0]
    train_loader, val_loader = kind.network_loaders(run.model, run.data.subset(split[0]), run.data.subset(split[1]),
                                                    config)
    epochs = sized_phase(run, name, train_loader, split, after_head=after_head)
    if epochs is None:
        return None
    from tagnet.engine.fit import run_phase
    from tagnet.engine.module import MultiLabelModule
    module = MultiLabelModule(run.model, run.loss(), lr=lr, weight_decay=config.weight_decay, schedule=config.schedule,
                              normalize=kind.normalization(run.model),
                              mixup=config.mixup if kind.mixes_network_inputs else 0.0, score=run.stop_score(),
                              head_lr=head_lr)
    threads = run.recipe.throughput.threads if run.recipe.throughput is not None else None  # the probe's fastest
    return run_phase(module, train_loader, val_loader, epochs=epochs, phase=name, precision=default_precision(config),
                     threads=threads, **run.phase_args(**limit))


def sized_phase(run: Run, name: str, loader, split: Split, *, after_head: bool) -> int | None:
    """The epochs phase `name` trains: phase_epochs without a budget (or a throughput to size it by); under the
    recipe's budget what fits (TimeBudget.plan, at the recipe's or the modality's measured throughput), in rounds of
    set batches when the loader's sampler takes them, said and kept in RUN/checkpoints/NAME/plan.json for a resumed run.
    None: nothing of fine-tuning after a head fits."""
    recipe, config, kind = run.recipe, run.plan.config, run.plan.kind
    wanted = phase_epochs(config, name)
    if recipe.budget is None or config.ensemble > 1:
        return wanted
    sampler = getattr(loader, "batch_sampler", None)
    partial = hasattr(sampler, "batches_per_epoch")
    path = run.run_dir / CHECKPOINTS_DIR / name / "plan.json"
    budget = run.plan.budget if run.plan.budget.seconds == recipe.budget else TimeBudget(recipe.budget, run.started)
    if run.resume and path.is_file():
        plan = Plan(**json.loads(path.read_text()))
        per_epoch = plan.estimated_seconds / max(plan.rounds, 1)
    else:
        throughput = recipe.throughput or kind.throughput(run.model, run.data, split, config)
        if throughput is None:
            return wanted
        plan = budget.plan(throughput, n_train=len(split[0]), n_val=len(split[1]), batch_size=config.batch_size,
                           max_epochs=wanted, partial=partial)
        per_epoch = throughput.epoch_seconds(len(split[0]), len(split[1]))
        if plan is not None and run.main:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(plan.to_dict()))
    _say_plan(run, name, plan, budget, per_epoch, partial=partial, after_head=after_head)
    if plan is None:
        return None if after_head else 1
    if partial:
        sampler.batches_per_epoch = plan.batches_per_round
    return plan.rounds


def _say_plan(run: Run, name: str, plan: Plan | None, budget: TimeBudget, per_epoch: float, *, partial: bool,
              after_head: bool) -> None:
    """One line on what of phase `name` fits the budget: passes in rounds, or whole epochs (recorded as a choice)."""
    n_train = len(run.splits[0][0])
    if plan is None and not after_head:
        line = f"{name}: too little of the time budget {duration(budget.seconds)} is left for a plan; training one epoch"
    elif partial and plan is None:
        line = "no time left of the time budget for fine-tuning: keeping the head"
    elif partial:
        line = (f"{name}: {plan.passes:g} passes over {n_train} inputs in {plan.rounds} epochs of "
                f"{plan.batches_per_round} batches (about {plan.estimated_seconds:.0f} s of the "
                f"{plan.seconds_left:.0f} s left of the time budget {duration(budget.seconds)})")
    elif plan is None:
        line = budget.note(f"head only: an epoch of fine-tuning would take about {duration(per_epoch)}, "
                           f"{duration(max(0.0, budget.left()))} are left")
    else:
        line = budget.note(f"fine-tuning {plan.rounds} epoch(s) after the head (about {duration(per_epoch)} each); "
                           "kept only if better on validation")
    run.console.print(line, soft_wrap=True)


RECIPE_STAGES: dict[str, Callable[[Run], None]] = {
    "frozen_outputs": frozen_outputs, "heads": heads, "finetune": finetune, "finetune_all": finetune_all,
    "train_all": train_all, "private_head": private_head}
