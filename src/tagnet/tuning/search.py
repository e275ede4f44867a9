"""Hyperparameter search with Optuna: every trial is one training run sharing cached images, features or embeddings."""

from __future__ import annotations

import csv
import dataclasses
import itertools
import json
import os
import shutil
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import optuna
from rich.console import Console

from tagnet import modalities
from tagnet.config.settings import TUNE_METRICS as METRICS
from tagnet.config.settings import MODALITY_REFUSES, TrainConfig, TuneSettings, validate_settings
from tagnet.errors import ConfigError, DataError
from tagnet.files import write_json
from tagnet.training.losses import LOSSES
from tagnet.modalities.base import Modality
from tagnet.config.source import DataSource
from tagnet.training.plan import resolve_modality
from tagnet.training.trainer import TrainResult, train

STUDY_NAME = "tagnet"
LOSS_PARAMETERS = {"focal": ("focal_gamma",), "asl": ("asl_gamma_neg", "asl_gamma_pos", "asl_clip")}
AUGMENTS = next(f for f in fields(TrainConfig) if f.name == "augment").metadata["choices"]
PRUNER_STARTUP_TRIALS = 5
PRUNER_WARMUP_EPOCHS = 3
FINISHED = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)


@dataclass
class TuneResult:
    """Where a search was written and what it found."""

    out_dir: Path
    study_path: Path
    best_config_path: Path
    best_run: Path
    best_value: float
    metric: str
    best_params: dict[str, Any]
    finished: int
    pruned: int
    seconds: float


def suggest_config(trial: optuna.Trial, base: TrainConfig, *, backbones: Sequence[str],
                   modality: str = "image") -> TrainConfig:
    """The trial's settings: `base` with learning rate, weight decay, dropout, head width, loss (and its
    parameters) and backbone drawn, plus what the modality's search space adds (label smoothing and mixup for
    text and tables), and augmentation where the network sees raw images rather than cached features.

    Args:
        trial: the Optuna trial drawing the values.
        base: settings kept fixed (epochs, batch size, patience, ...).
        backbones: backbone names to choose from.
        modality: "image", "text" or "tabular": whose search space (ModalitySpec.search).
    Returns:
        A validated TrainConfig.
    """
    kind = modalities.get(modality)
    ranges = kind.spec.search.ranges
    values: dict[str, Any] = {"backbone": trial.suggest_categorical("backbone", list(backbones))}
    for name in ("lr", "weight_decay", "dropout", *(n for n in ("label_smoothing", "mixup") if n in ranges)):
        values[name] = trial.suggest_float(name, *ranges[name][:2], log=ranges[name][2])
    values["head_hidden"] = trial.suggest_categorical("head_hidden", list(kind.spec.search.head_widths))
    values["loss"] = trial.suggest_categorical("loss", list(LOSSES))
    for name in LOSS_PARAMETERS.get(values["loss"], ()):
        values[name] = trial.suggest_float(name, *ranges[name][:2], log=ranges[name][2])
    config = base.updated(**values)
    if _searches_augment(kind, config):
        config = config.updated(augment=trial.suggest_categorical("augment", list(AUGMENTS)))
    return config


def _searches_augment(kind: Modality, config: TrainConfig) -> bool:
    """True when the modality takes augmentation and the network sees raw inputs (not only cached features)."""
    return "augment" not in MODALITY_REFUSES[kind.name] and (config.finetune or not kind.frozen(config))


def _base_params(base: TrainConfig, backbones: Sequence[str], kind: Modality) -> dict[str, Any]:
    """The base settings as search parameters (those inside the search space): the study's first trial."""
    ranges = kind.spec.search.ranges
    params: dict[str, Any] = {"backbone": backbones[0], "head_hidden": base.head_hidden, "loss": base.loss,
                              "augment": base.augment}
    params.update({name: getattr(base, name) for name in ranges})
    if "label_smoothing" in params and params["label_smoothing"] is None:
        params["label_smoothing"] = 0.0  # unset: what a head trains with where no CV chooses it
    inside = {"head_hidden": kind.spec.search.head_widths, "loss": LOSSES, "augment": AUGMENTS,
              "backbone": tuple(backbones)}
    return {k: v for k, v in params.items()
            if (v in inside[k] if k in inside else ranges[k][0] <= v <= ranges[k][1])}


def _check_same_study(path: Path, settings: dict[str, Any]) -> None:
    """Record the search's data and fixed settings; raise ConfigError if an earlier search in the folder differs."""
    if path.exists():
        earlier = json.loads(path.read_text())
        for key, value in settings.items():
            if earlier.get(key) != value:
                raise ConfigError(f"{path.parent}: holds a study with {key}={earlier.get(key)!r}, now {value!r}; "
                                  "resume it with the same labels, images and settings, or choose another --out")
    write_json(path, settings)


def tune(labels: str | Path, *, images_dir: str | Path | None = None, val_labels: str | Path | None = None,
         out_dir: str | Path = "runs/tune", trials: int = 20, timeout: float | None = None,
         base_config: TrainConfig | None = None, backbones: Sequence[str] | None = None,
         read_options: dict | None = None, console: Console | None = None, modality: str | None = None,
         text_column: str | int | None = None, tabular: bool = False, metric: str = "mAP") -> TuneResult:
    """Search training settings with Optuna (TPE sampler, median pruner) for the best validation `metric`.

    Every trial is one run of the trainer (tagnet.training.trainer.train), pruned by a callback on its epochs
    (TrialPruning), on the same validation split (`val_labels`, or LABELS split by
    base_config.seed) and the same cache folder, so images are decoded and backbone features or sentence
    embeddings computed once; later trials only train the head. The study lives in OUT/study.db and resumes
    when run again.

    Args:
        labels: training label file (any format `read_labels` reads), or a text file / feature table.
        images_dir: folder the image paths are relative to.
        val_labels: validation label file; without it LABELS is split (base_config.val_fraction, seed).
        out_dir: OUT: study.db, best_config.json, best_run/ (the best trial's run), trials.csv, cache/.
        trials: total number of finished (complete or pruned) trials the study should hold.
        timeout: stop starting trials after this many seconds.
        base_config: settings the search leaves fixed (epochs, batch size, patience...).
        backbones: backbone names the search chooses from; default the modality's default backbone.
        read_options: options for the label-file reader.
        modality: "image", "text" (with `text_column`) or "tabular"; detected as by train() when None.
        metric: one of METRICS. mAP (the default) ranks and needs no threshold, and trials are pruned
            on it epoch by epoch; F1 and Hamming loss are taken at the thresholds each trial fits
            (threshold_mode in base_config; "fixed" for p >= 0.5), and those trials are not pruned.
    Returns:
        TuneResult with the best validation value of `metric`, its parameters and the written files.
    Raises:
        ConfigError: bad trial count, timeout or backbones; OUT holds a study of other data or settings.
        DataError: problems with the label file or images (from train()).
    """
    validate_settings(TuneSettings(trials=trials, timeout=timeout, metric=metric))
    source = DataSource(labels, images_dir=images_dir, text_column=text_column, tabular=tabular,
                        read_options=dict(read_options or {}), modality=modality)
    kind = resolve_modality(source)
    base = (base_config or TrainConfig()).for_modality(kind.name)  # its model and head width unless given
    backbones = [b.strip() for b in (backbones or [base.backbone]) if b.strip()]
    if not backbones:
        raise ConfigError("backbones: expected at least one backbone name")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    # trials search the MLP's settings, so each trains the MLP (no head selection per trial)
    # and heads on the frozen encoder unless --finetune is asked for (text's default recipe would fine-tune)
    base = base.updated(cache_dir=base.cache_dir or str(out / "cache"), select="mlp" if base.select else None,
                        finetune=False if kind.name == "text" and base.finetune is None else None)
    _check_same_study(out / "tune.json", {
        "labels": str(Path(labels).resolve()), "val_labels": str(Path(val_labels).resolve()) if val_labels else None,
        "images_dir": str(Path(images_dir).resolve()) if images_dir else None,
        "read_options": {k: str(v) if isinstance(v, Path) else v for k, v in source.read_options.items()},
        "backbones": backbones, "base_config": base.to_dict(), "modality": kind.name, "text_column": text_column,
        "metric": metric})
    search = Search(dataclasses.replace(source, modality=kind.name), val_labels, base, backbones, metric, out,
                    console or Console(stderr=True))
    return search.run(trials, timeout)


class TrialPruning:
    """The trainer's on_epoch_end callback of one trial: reports each validation mAP to Optuna and, when pruning, ends
    the run (optuna.TrialPruned) once the trial falls behind the median of earlier ones."""

    def __init__(self, trial: optuna.Trial, *, prune: bool) -> None:
        self.trial, self.prune, self.steps = trial, prune, itertools.count()

    def __call__(self, epoch: int, score: float) -> None:
        self.trial.report(score, next(self.steps))
        if self.prune and self.trial.should_prune():
            raise optuna.TrialPruned(f"pruned at epoch {epoch} with validation mAP {score:.4f}")


@dataclass
class Search:
    """One study over the trainer: its data, fixed settings, backbones, metric and folder (OUT)."""

    source: DataSource
    val_labels: str | Path | None
    base: TrainConfig
    backbones: list[str]
    metric: str
    out: Path
    console: Console

    def run(self, trials: int, timeout: float | None) -> TuneResult:
        """Run trials until the study holds `trials` finished ones (or `timeout` seconds pass); the summary."""
        study, done = self.study(trials)
        started = time.perf_counter()
        remaining = trials - done
        shutil.rmtree(self.out / "trials", ignore_errors=True)  # leftovers of an interrupted search
        if remaining > 0:
            self.console.print(f"study {self.out / 'study.db'}: {done} finished trials, running up to {remaining} more"
                               + (f" within {timeout:.0f} s" if timeout else ""))
            try:
                study.optimize(lambda trial: self.objective(study, trial), n_trials=remaining, timeout=timeout)
            finally:
                shutil.rmtree(self.out / "trials", ignore_errors=True)
        return _finish(study, self.out, self.base, self.out / "best_run", time.perf_counter() - started, self.metric)

    def study(self, trials: int) -> tuple[optuna.Study, int]:
        """The study in OUT/study.db (resumed when there) and its number of finished trials; its sampler seeded by
        that number, pruning on mAP only (the one metric reported after each epoch), the base settings as its first
        trial."""
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        study = optuna.create_study(study_name=STUDY_NAME, storage=f"sqlite:///{(self.out / 'study.db').resolve()}",
                                    direction=METRICS[self.metric], load_if_exists=True)
        done = len(study.get_trials(deepcopy=False, states=FINISHED))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            # seeded by the trial count, so a resumed study does not redraw its first random trials
            study.sampler = optuna.samplers.TPESampler(seed=self.base.seed + done, multivariate=True, group=True,
                                                       n_startup_trials=max(3, min(10, trials // 4)))
        study.pruner = (optuna.pruners.MedianPruner(n_startup_trials=PRUNER_STARTUP_TRIALS,
                                                    n_warmup_steps=PRUNER_WARMUP_EPOCHS)
                        if self.metric == "mAP" else optuna.pruners.NopPruner())
        if not study.trials:  # the base recipe is trial 0: the search starts from it
            study.enqueue_trial(_base_params(self.base, self.backbones, modalities.get(self.source.modality)))
        return study, done

    def objective(self, study: optuna.Study, trial: optuna.Trial) -> float:
        """One trial: a trainer run with the trial's settings, pruned by TrialPruning; the best run kept in
        OUT/best_run. Returns the trial's validation value of the metric."""
        config = suggest_config(trial, self.base, backbones=self.backbones, modality=self.source.modality)
        run_dir = self.out / "trials" / f"trial-{trial.number:04d}"
        started = time.perf_counter()
        try:
            result = train(self.source.labels, out_dir=run_dir, val_labels=self.val_labels, config=config,
                           source=self.source, console=Console(quiet=True), progress=False,
                           callbacks={"on_epoch_end": [TrialPruning(trial, prune=self.metric == "mAP")]})
        except optuna.TrialPruned as pruned:
            shutil.rmtree(run_dir, ignore_errors=True)
            self.console.print(f"trial {trial.number:>3}  [dim]{pruned}[/dim]  {time.perf_counter() - started:.1f} s")
            raise
        score = self.record(trial, result)
        better = (lambda a, b: a > b) if METRICS[self.metric] == "maximize" else (lambda a, b: a < b)
        best = score
        for value in (t.value for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))):
            best = value if better(value, best) else best
        if best == score:  # this trial is the best so far (ties go to the newer one)
            shutil.rmtree(self.out / "best_run", ignore_errors=True)
            os.replace(run_dir, self.out / "best_run")
        else:
            shutil.rmtree(run_dir, ignore_errors=True)
        self.console.print(f"trial {trial.number:>3}  {self.metric} {score:.4f}  (best {best:.4f})  "
                           f"{result.seconds:.1f} s  " + "  ".join(f"{k}={_short(v)}" for k, v in trial.params.items()))
        return score

    def record(self, trial: optuna.Trial, result: TrainResult) -> float:
        """The trial's value of the metric, its other metrics and seconds kept as user attributes; raises DataError
        when the validation data defines no value."""
        summary = result.report.summary()
        if summary[self.metric] is None:
            raise DataError(f"{self.val_labels or self.source.labels}: no label has a positive validation example, so "
                            f"validation {self.metric} is undefined")
        for key in METRICS:
            if key != self.metric:
                trial.set_user_attr(key, summary[key])
        trial.set_user_attr("seconds", round(result.seconds, 2))
        return float(summary[self.metric])


def _short(value: Any) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def _finish(study: optuna.Study, out: Path, base: TrainConfig, best_run: Path, seconds: float,
            metric: str) -> TuneResult:
    """Write best_config.json and trials.csv; summarise the study."""
    states = optuna.trial.TrialState
    complete = study.get_trials(deepcopy=False, states=(states.COMPLETE,))
    if not complete:
        raise ConfigError(f"{out / 'study.db'}: no trial finished; give more --trials or a longer --timeout")
    best = study.best_trial
    config = base.updated(**best.params)
    if Path(str(config.cache_dir)) == out / "cache":  # the search's own cache folder stays with the search
        config.cache_dir = None
    best_path = out / "best_config.json"
    write_json(best_path, config.to_dict())
    _write_trials_csv(study, out / "trials.csv", metric)
    pruned = len(study.get_trials(deepcopy=False, states=(states.PRUNED,)))
    return TuneResult(out, out / "study.db", best_path, best_run, float(best.value), metric, dict(best.params),
                      len(complete) + pruned, pruned, seconds)


def _write_trials_csv(study: optuna.Study, path: Path, metric: str) -> None:
    """One row per trial: number, state, validation mAP, F1s, Hamming loss (`metric` is the trial's value), seconds
    and every parameter."""
    trials = study.get_trials(deepcopy=False)
    params = sorted({name for t in trials for name in t.params})
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["trial", "state", *METRICS, "seconds", *params])
        for t in trials:
            values = [t.value if key == metric else t.user_attrs.get(key) for key in METRICS]
            writer.writerow([t.number, t.state.name.lower(), *(_cell(v) for v in values),
                             _cell(t.user_attrs.get("seconds")), *(_cell(t.params.get(name)) for name in params)])


def _cell(value: Any) -> str:
    if value is None:
        return ""
    return f"{value:.5g}" if isinstance(value, float) else str(value)
