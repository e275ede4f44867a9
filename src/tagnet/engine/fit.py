"""Run one Lightning training phase: Trainer, early stopping, best weights by validation mAP, metrics CSV."""

from __future__ import annotations

import copy
import csv
import logging
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback, EarlyStopping, RichProgressBar
from torch.utils.data import DataLoader

from tagnet.config import TrainConfig
from tagnet.engine.module import MultiLabelModule

MONITOR = "val_mAP"
# Lightning's start-up chatter that says nothing about this run; real warnings still show.
_NOISE = r".*(does not have many workers|num_workers|GPU available but not used|LeafSpec|litlogger|module\(s\) in eval mode).*"
for _name in ("lightning.pytorch.utilities.rank_zero", "lightning.pytorch.accelerators.cuda", "lightning.fabric.utilities.seed"):
    logging.getLogger(_name).setLevel(logging.WARNING)


class BestWeights(Callback):
    """Keeps, in memory, the network weights of the epoch with the best validation mAP."""

    def __init__(self) -> None:
        self.best_score = -1.0
        self.best_epoch = -1
        self.state: dict[str, torch.Tensor] | None = None
        self.validation: dict | None = None

    def on_validation_end(self, trainer: L.Trainer, module: MultiLabelModule) -> None:
        # not on_validation_epoch_end: callbacks run before the module's hook that logs this epoch's val_mAP
        if trainer.sanity_checking:
            return
        score = float(trainer.callback_metrics.get(MONITOR, -1.0))
        if score > self.best_score:
            self.best_score, self.best_epoch = score, trainer.current_epoch
            self.state = copy.deepcopy(module.network.state_dict())
            self.validation = dict(module.last_validation)


class EpochCsvLogger(Callback):
    """Appends one row per epoch (phase, epoch, losses, validation metrics, seconds) to a CSV file."""

    def __init__(self, path: Path, phase: str) -> None:
        self.path, self.phase = path, phase
        self.started = time.perf_counter()

    def on_train_epoch_start(self, trainer: L.Trainer, module: MultiLabelModule) -> None:
        self.started = time.perf_counter()

    def on_train_epoch_end(self, trainer: L.Trainer, module: MultiLabelModule) -> None:
        if not trainer.is_global_zero:
            return
        metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith(("train_", "val_"))}
        row = {"phase": self.phase, "epoch": trainer.current_epoch + 1,
               "seconds": round(time.perf_counter() - self.started, 3), **metrics}
        new_file = not self.path.exists()
        fields = ["phase", "epoch", "seconds", "train_loss", "val_loss", "val_mAP", "val_micro_f1", "val_macro_f1"]
        with self.path.open("a", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=fields, extrasaction="ignore")
            if new_file:
                writer.writeheader()
            writer.writerow(row)


class EpochHook(Callback):
    """Calls `hook(epoch, val_mAP)` after each validation (epoch from 1); the hook may raise to stop training."""

    def __init__(self, hook: Callable[[int, float], None]) -> None:
        self.hook = hook

    def on_validation_end(self, trainer: L.Trainer, module: MultiLabelModule) -> None:
        if not trainer.sanity_checking:
            self.hook(trainer.current_epoch + 1, float(trainer.callback_metrics.get(MONITOR, -1.0)))


@dataclass
class PhaseResult:
    """What one training phase produced: the best epoch's score, epoch and validation outputs."""

    best_score: float
    best_epoch: int
    epochs_run: int
    validation: dict
    seconds: float


def default_precision(config: TrainConfig) -> str:
    """bf16 autocast where the CPU/GPU supports it, else 32-bit."""
    if config.precision:
        return config.precision
    if torch.cuda.is_available() and config.accelerator != "cpu":
        return "bf16-mixed" if torch.cuda.is_bf16_supported() else "16-mixed"
    return "bf16-mixed" if torch.cpu._is_avx512_bf16_supported() else "32-true"


def run_phase(module: MultiLabelModule, train_loader: DataLoader, val_loader: DataLoader, *,
              config: TrainConfig, epochs: int, phase: str, run_dir: Path, precision: str | None = None,
              progress: bool = True, epoch_callback: Callable[[int, float], None] | None = None) -> PhaseResult:
    """Train `module` for up to `epochs` with early stopping; load the best epoch's weights back into it.

    `epoch_callback(epoch, val_mAP)` runs after each validation; an exception it raises (e.g. optuna's
    TrialPruned) ends training and propagates.
    """
    best = BestWeights()
    callbacks: list[Callback] = [best, EpochCsvLogger(run_dir / "metrics.csv", phase),
                                 EarlyStopping(MONITOR, mode="max", patience=config.patience)]
    if epoch_callback is not None:
        callbacks.append(EpochHook(epoch_callback))
    if progress:
        callbacks.append(RichProgressBar(leave=False))
    trainer = L.Trainer(
        max_epochs=epochs, accelerator=config.accelerator, devices=config.devices, strategy=config.strategy,
        num_nodes=config.num_nodes, precision=precision or default_precision(config), callbacks=callbacks,
        logger=False, enable_checkpointing=False, enable_model_summary=False, enable_progress_bar=progress,
        num_sanity_val_steps=0, default_root_dir=str(run_dir), deterministic=False,
    )
    started = time.perf_counter()
    module.network.train()
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=_NOISE)
        trainer.fit(module, train_loader, val_loader)
    if best.state is not None:
        module.network.load_state_dict(best.state)
    return PhaseResult(best.best_score, best.best_epoch + 1, trainer.current_epoch,
                       best.validation or {}, time.perf_counter() - started)
