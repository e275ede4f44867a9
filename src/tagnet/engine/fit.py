"""Run one Lightning training phase: Trainer, early stopping, best weights by validation mAP, metrics CSV."""

from __future__ import annotations

import contextlib
import copy
import csv
import json
import logging
import os
import signal
import threading
import time
from datetime import timedelta
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import Callback, EarlyStopping, ModelCheckpoint, RichProgressBar
from lightning.pytorch.plugins.io import TorchCheckpointIO
from rich.console import Console
from safetensors.torch import load_file, save_file
from torch.utils.data import DataLoader

from tagnet.config.settings import TrainConfig
from tagnet.data.images import ensure_free_space
from tagnet.engine.loggers import RunLoggers
from tagnet.engine.module import MultiLabelModule
from tagnet.engine.process import (PhaseResult, close_process_group_at_exit, default_precision, is_main_process,
                                   torch_threads)
from tagnet.errors import ArtifactError, Interrupted
from tagnet.training.run_folder import CHECKPOINTS_DIR, EPOCHS_FILE

MONITOR = "val_mAP"
PROGRESS_NAMES = {"val_micro_f1": "val micro-F1 at 0.5", "val_macro_f1": "val macro-F1 at 0.5"}
# Lightning's start-up chatter that says nothing about this run (a resumed run's checkpoint folder exists on
# purpose); real warnings still show.
_NOISE = r".*(does not have many workers|log_every_n_steps|exists and is not empty|num_workers|GPU available but not used|LeafSpec|litlogger|module\(s\) in eval mode).*"
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

    def state_dict(self) -> dict:
        """Saved in each checkpoint, so a resumed run still knows its best epoch and weights (tensors, no numpy)."""
        validation = None if self.validation is None else {k: torch.from_numpy(v) for k, v in self.validation.items()}
        return {"best_score": self.best_score, "best_epoch": self.best_epoch, "state": self.state,
                "validation": validation}

    def load_state_dict(self, state: dict) -> None:
        self.best_score, self.best_epoch, self.state = state["best_score"], state["best_epoch"], state["state"]
        validation = state["validation"]
        self.validation = None if validation is None else {k: v.numpy() for k, v in validation.items()}


class EpochCsvLogger(Callback):
    """Appends one row per epoch (phase, epoch, losses, validation metrics, seconds) to a CSV file."""

    def __init__(self, path: Path, phase: str) -> None:
        self.path, self.phase = path, phase
        self.started = time.perf_counter()
        self.train_seconds: float | None = None

    def on_train_epoch_start(self, trainer: L.Trainer, module: MultiLabelModule) -> None:
        self.started = time.perf_counter()
        self.train_seconds = None

    def on_validation_epoch_start(self, trainer: L.Trainer, module: MultiLabelModule) -> None:
        if self.train_seconds is None:
            self.train_seconds = time.perf_counter() - self.started

    def on_train_epoch_end(self, trainer: L.Trainer, module: MultiLabelModule) -> None:
        if not trainer.is_global_zero:
            return
        metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if k.startswith(("train_", "val_"))}
        train_seconds = self.train_seconds or (time.perf_counter() - self.started)
        loader = trainer.train_dataloader
        batch_size = loader.batch_size or getattr(loader.batch_sampler, "batch_size", 1)  # or a batch sampler's
        images = trainer.num_training_batches * batch_size * trainer.world_size
        row = {"phase": self.phase, "epoch": trainer.current_epoch + 1,
               "seconds": round(time.perf_counter() - self.started, 3), "train_seconds": round(train_seconds, 3),
               "images_per_s": round(images / train_seconds, 1), **metrics}
        new_file = not self.path.exists()
        fields = ["phase", "epoch", "seconds", "train_seconds", "images_per_s", "train_loss", "val_loss", "val_mAP",
                  "val_micro_f1", "val_macro_f1"]
        with self.path.open("a", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=fields, extrasaction="ignore")
            if new_file:
                writer.writeheader()
            writer.writerow(row)


class EpochProgressBar(RichProgressBar):
    """The terminal's progress bar: epochs counted from 1, its F1s labelled "at 0.5" (the final report's F1s use
    the fitted thresholds)."""

    def _get_train_description(self, current_epoch: int) -> str:
        description = f"Epoch {current_epoch + 1}/{self.trainer.max_epochs}"
        return f"{description:{len(self.validation_description)}}"

    def get_metrics(self, trainer: L.Trainer, module: MultiLabelModule) -> dict:
        items = super().get_metrics(trainer, module)
        items.pop("v_num", None)  # the logger's version, not this run's business
        return {PROGRESS_NAMES.get(key, key): value for key, value in items.items()}


class EpochLines(Callback):
    """Without a terminal: one line per epoch (epoch, losses, validation mAP) instead of a progress bar."""

    def __init__(self, phase: str) -> None:
        self.phase = phase

    def on_train_epoch_end(self, trainer: L.Trainer, module: MultiLabelModule) -> None:
        if not trainer.is_global_zero:
            return
        metrics = trainer.callback_metrics
        values = ", ".join(f"{name} {float(metrics[key]):.4f}" for key, name in
                           (("train_loss", "train loss"), ("val_loss", "val loss"), (MONITOR, "val mAP")) if key in metrics)
        print(f"{self.phase} epoch {trainer.current_epoch + 1}/{trainer.max_epochs}: {values}", flush=True)


def _stopping_line(phase: str, *, stopper: EarlyStopping, best: BestWeights, epochs: int) -> str:
    """How a phase ended: early stopped or not, and the epoch whose weights are kept."""
    kept = f"kept epoch {best.best_epoch + 1} (val mAP {best.best_score:.4f})"
    if stopper.stopped_epoch:
        return (f"{phase}: early stopping after epoch {stopper.stopped_epoch + 1} of {epochs} (no better validation mAP "
                f"in {stopper.patience} epochs); {kept}")
    return f"{phase}: {kept}"


class AtomicCheckpointIO(TorchCheckpointIO):
    """Writes each checkpoint to a temporary file and renames it, so a kill never leaves half a file;
    reads tensors and plain data only, so a checkpoint from someone else's run folder cannot run code."""

    def save_checkpoint(self, checkpoint: dict, path, storage_options=None) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        ensure_free_space(path.parent, _tensor_bytes(checkpoint), f"checkpoint {path.name}")
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        try:
            super().save_checkpoint(checkpoint, tmp, storage_options)
            with open(tmp, "rb") as handle:
                os.fsync(handle.fileno())
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)

    def load_checkpoint(self, path, map_location=None, weights_only=None) -> dict:
        """torch.load with weights_only=True, whatever the caller asks; raises ArtifactError for anything else."""
        path = Path(path)
        try:
            checkpoint = torch.load(path, map_location=map_location or "cpu", weights_only=True)
            problem = None if isinstance(checkpoint, dict) else f"a {type(checkpoint).__name__}"
        except Exception as exc:  # the restricted unpickler raises many types on foreign or truncated bytes
            problem = type(exc).__name__
        if problem is not None:
            raise ArtifactError(
                f"checkpoint {path} holds something other than tensors and plain data, or is damaged ({problem}); "
                f"nothing in it was run. Delete {path.parent.parent} to train that run again from the first epoch")
        return checkpoint


def _tensor_bytes(value) -> int:
    """Bytes of the tensors and arrays in nested dicts/lists: about their size on disk."""
    if isinstance(value, (torch.Tensor, np.ndarray)):
        return value.nbytes
    if isinstance(value, dict):
        return sum(_tensor_bytes(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return sum(_tensor_bytes(v) for v in value)
    return 0


def _write_done(ckpt_dir: Path, best: "BestWeights", epochs_run: int) -> None:
    """Mark a phase finished: its best weights (safetensors) and validation outputs (npz, no pickle)."""
    ensure_free_space(ckpt_dir, _tensor_bytes([best.state, best.validation]), "the best epoch's weights")
    save_file({k: v.contiguous() for k, v in best.state.items()}, ckpt_dir / ".best.tmp")
    os.replace(ckpt_dir / ".best.tmp", ckpt_dir / "best.safetensors")
    with open(ckpt_dir / ".validation.tmp", "wb") as handle:
        np.savez(handle, **best.validation)
    os.replace(ckpt_dir / ".validation.tmp", ckpt_dir / "validation.npz")
    done = {"best_score": best.best_score, "best_epoch": best.best_epoch, "epochs_run": epochs_run}
    (ckpt_dir / ".done.tmp").write_text(json.dumps(done))
    os.replace(ckpt_dir / ".done.tmp", ckpt_dir / "done.json")


def _read_done(ckpt_dir: Path, module: MultiLabelModule) -> "PhaseResult":
    done = json.loads((ckpt_dir / "done.json").read_text())
    module.network.load_state_dict(load_file(ckpt_dir / "best.safetensors"))
    with np.load(ckpt_dir / "validation.npz", allow_pickle=False) as arrays:
        validation = {k: arrays[k] for k in arrays.files}
    return PhaseResult(done["best_score"], done["best_epoch"] + 1, done["epochs_run"], validation, 0.0, is_main_process())


class EpochHook(Callback):
    """Calls `hook(epoch, val_mAP)` after each validation (epoch from 1); the hook may raise to stop training."""

    def __init__(self, hook: Callable[[int, float], None]) -> None:
        self.hook = hook

    def on_validation_end(self, trainer: L.Trainer, module: MultiLabelModule) -> None:
        if not trainer.sanity_checking:
            self.hook(trainer.current_epoch + 1, float(trainer.callback_metrics.get(MONITOR, -1.0)))


@contextlib.contextmanager
def _sigint_kept() -> Iterator[None]:
    """Restore the Ctrl+C handler afterwards: Lightning ignores SIGINT from the first interrupt on."""
    main = threading.current_thread() is threading.main_thread()
    previous = signal.getsignal(signal.SIGINT) if main else None
    try:
        yield
    finally:
        if previous is not None:
            signal.signal(signal.SIGINT, previous)


def run_phase(module: MultiLabelModule, train_loader: DataLoader, val_loader: DataLoader, *,
              config: TrainConfig, epochs: int, phase: str, run_dir: Path, precision: str | None = None,
              progress: bool = True, epoch_callback: Callable[[int, float], None] | None = None,
              resume: bool = False, head_only: bool = False, loggers: RunLoggers | None = None,
              max_seconds: float | None = None, threads: int | None = None) -> PhaseResult:
    """Train `module` for up to `epochs` with early stopping; load the best epoch's weights back into it.

    Each epoch ends with RUN/checkpoints/PHASE/last.ckpt (model, optimiser, scheduler, epoch, callbacks,
    random state), written atomically; a finished phase leaves done.json + best.safetensors. With
    `resume`, a finished phase is loaded instead of rerun and an unfinished one continues from last.ckpt.
    `epoch_callback(epoch, val_mAP)` runs after each validation; an exception it raises (e.g. optuna's
    TrialPruned) ends training and propagates. `loggers` give the phase's Lightning loggers. `head_only` says the
    module is a small head on precomputed features or embeddings: it then trains on one thread (see one_torch_thread);
    else on `threads` torch threads (None: the process's). `max_seconds` stops the phase after that wall time
    (Lightning's max_time), keeping the best validated epoch so far.
    """
    ckpt_dir = run_dir / CHECKPOINTS_DIR / phase
    if resume and (ckpt_dir / "done.json").exists():
        return _read_done(ckpt_dir, module)
    last = ckpt_dir / "last.ckpt"
    best = BestWeights()
    stopper = EarlyStopping(MONITOR, mode="max", patience=config.patience)
    callbacks: list[Callback] = [best, EpochCsvLogger(run_dir / EPOCHS_FILE, phase), stopper]
    if epoch_callback is not None:
        callbacks.append(EpochHook(epoch_callback))
    callbacks.append(ModelCheckpoint(dirpath=ckpt_dir, filename="last", save_top_k=1, monitor=None,
                                     enable_version_counter=False))  # overwritten every epoch
    bar = progress and Console().is_terminal
    if progress:
        callbacks.append(EpochProgressBar(leave=False) if bar else EpochLines(phase))
    trainer = L.Trainer(
        max_epochs=epochs, accelerator=config.accelerator, devices=config.devices, strategy=config.strategy,
        num_nodes=config.num_nodes, precision=precision or default_precision(config), callbacks=callbacks,
        logger=loggers.for_phase(phase) if loggers is not None and loggers.names else False, enable_checkpointing=True,
        enable_model_summary=False, enable_progress_bar=bar,
        num_sanity_val_steps=0, default_root_dir=str(run_dir), deterministic=False, plugins=[AtomicCheckpointIO()],
        max_time=None if max_seconds is None else timedelta(seconds=max(1.0, max_seconds)),
    )
    close_process_group_at_exit()
    started = time.perf_counter()
    module.network.train()
    with warnings.catch_warnings(), torch_threads(1 if head_only else threads), _sigint_kept():
        warnings.filterwarnings("ignore", message=_NOISE)
        try:
            trainer.fit(module, train_loader, val_loader, ckpt_path=last if resume and last.exists() else None,
                        weights_only=True)
        except SystemExit:  # Lightning turns Ctrl+C (KeyboardInterrupt) into sys.exit(1)
            if not trainer.interrupted:
                raise
            saved = f"the last finished epoch is saved in {last}" if last.exists() else "no epoch had finished"
            raise Interrupted(f"training ({phase}) stopped by an interrupt during epoch {trainer.current_epoch + 1} "
                              f"of {epochs}; {saved}. Continue with: tagnet train --resume {run_dir}") from None
    if best.state is not None:
        module.network.load_state_dict(best.state)
        if trainer.is_global_zero:
            _write_done(ckpt_dir, best, trainer.current_epoch)
            if progress:
                print(_stopping_line(phase, stopper=stopper, best=best, epochs=epochs), flush=True)
    return PhaseResult(best.best_score, best.best_epoch + 1, trainer.current_epoch,
                       best.validation or {}, time.perf_counter() - started, trainer.is_global_zero)
