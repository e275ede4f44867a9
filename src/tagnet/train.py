"""Train an image model end to end: labels -> split -> cached images -> (cached features) -> artifact."""

from __future__ import annotations

import copy
import csv
import hashlib
import json
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import lightning as L
import numpy as np
import torch
from rich.console import Console
from safetensors.torch import load_file, save_file
from torch.utils.data import DataLoader, TensorDataset

from tagnet.artifact import save_artifact
from tagnet.config import TrainConfig, load_config
from tagnet.data.images import CachedImageDataset, ImageCache, augmentation, build_image_cache, normalize_batch, resolve_image_paths
from tagnet.data.labels import read_labels
from tagnet.data.split import split_table
from tagnet.data.table import LabelTable
from tagnet.engine.fit import default_precision, is_main_process, run_phase
from tagnet.engine.module import MultiLabelModule
from tagnet.errors import ConfigError, DataError
from tagnet.losses import make_loss
from tagnet.metrics import MetricsReport, evaluate_probabilities
from tagnet.models import TagnetModel, create_model, set_backbone_trainable
from tagnet.thresholds import Thresholds, fit_thresholds


@dataclass
class TrainResult:
    """Where a run was written and how it scored on its validation data."""

    run_dir: Path
    artifact_dir: Path
    report: MetricsReport
    thresholds: Thresholds
    skipped: dict[str, str] = field(default_factory=dict)
    seconds: float = 0.0


def validation_score(targets: np.ndarray, probs: np.ndarray, known: np.ndarray) -> dict[str, float]:
    """Validation metrics logged each epoch: mAP and micro/macro F1 at 0.5 (NaN once training has diverged)."""
    if not np.isfinite(probs).all():  # NaN stops training (EarlyStopping's check_finite); the best epoch is kept
        return {"mAP": float("nan"), "micro_f1": float("nan"), "macro_f1": float("nan")}
    report = evaluate_probabilities(targets, probs, np.full(targets.shape[1], 0.5),
                                    label_names=[str(i) for i in range(targets.shape[1])], known=known)
    return {"mAP": report.mAP, "micro_f1": report.micro_f1, "macro_f1": report.macro_f1}


def validation_thresholds(val: dict[str, np.ndarray], config: TrainConfig) -> Thresholds:
    """The run's thresholds, fitted on its validation targets, probabilities and known-mask as `config` says."""
    return fit_thresholds(val["targets"], val["probs"], mode=config.threshold_mode, min_positives=config.min_positives,
                          top_k=config.top_k, fixed=config.fixed_threshold, known=val["known"])


def write_json(path: Path, data: dict) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, default=float))
    os.replace(tmp, path)


def start_run(out_dir: str | Path, *, seed: int, resume: bool) -> tuple[Path, bool]:
    """Create the run folder (a fresh run clears old per-epoch metrics and checkpoints) and seed everything.

    Returns (run folder, whether this process writes files: False on non-zero ranks of a distributed run).
    """
    run_dir = Path(out_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    main = is_main_process()
    if main and not resume:
        (run_dir / "metrics.csv").unlink(missing_ok=True)
        shutil.rmtree(run_dir / "checkpoints", ignore_errors=True)
    L.seed_everything(seed, verbose=False)
    return run_dir, main


def uses_feature_cache(config: TrainConfig) -> bool:
    return config.pretrained and config.backbone != "seed_cnn"


def extract_features(model: TagnetModel, cache: ImageCache, rows: np.ndarray, *, batch_size: int = 64,
                     flip: bool = False) -> torch.Tensor:
    """Pooled backbone features of cached images (optionally of their mirror images), float32 (N, F).

    Computed in float32, as the Predictor does, so the head is trained on exactly what it will see.
    """
    model.eval().to(memory_format=torch.channels_last)  # normalize_batch gives channels-last inputs
    mean, std = model.preprocess.mean, model.preprocess.std
    chunks = []
    with torch.inference_mode():
        for start in range(0, len(rows), batch_size):
            batch = torch.from_numpy(np.array(cache.array[rows[start:start + batch_size]])).permute(0, 3, 1, 2)
            if flip:
                batch = batch.flip(-1)
            chunks.append(model.forward_features(normalize_batch(batch, mean, std)))
    return torch.cat(chunks) if chunks else torch.zeros(0, model.num_features)


def cached_features(model: TagnetModel, cache: ImageCache, rows: np.ndarray, *, cache_dir: Path,
                    flip: bool = False) -> torch.Tensor:
    """extract_features, stored on disk keyed by backbone weights, images and rows: computed once per data set."""
    # keyed on the backbone only: head settings (dropout, head_hidden, labels) must not force a recompute
    digest = hashlib.sha1(f"{model.name}|{model.preprocess}|{flip}|{cache.key}".encode())
    digest.update(np.ascontiguousarray(rows).tobytes())
    for tensor in model.backbone.state_dict().values():  # a different weights file gives different features
        digest.update(tensor.flatten()[:64].float().numpy().tobytes())
    path = Path(cache_dir) / f"features-{digest.hexdigest()[:16]}.safetensors"
    if path.exists():
        return load_file(path)["features"]
    features = extract_features(model, cache, rows, flip=flip)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    save_file({"features": features.contiguous()}, tmp)
    os.replace(tmp, path)
    return features


def _feature_loaders(model: TagnetModel, cache: ImageCache, train: tuple, val: tuple, *, config: TrainConfig,
                     console: Console, cache_dir: Path) -> tuple[DataLoader, DataLoader]:
    started = time.perf_counter()
    (train_rows, train_t, train_k), (val_rows, val_t, val_k) = train, val
    feats = torch.cat([cached_features(model, cache, train_rows, cache_dir=cache_dir),
                       cached_features(model, cache, train_rows, cache_dir=cache_dir, flip=True)])
    val_feats = cached_features(model, cache, val_rows, cache_dir=cache_dir)
    console.print(f"backbone features of {len(train_rows)} + {len(val_rows)} images ready "
                  f"in {time.perf_counter() - started:.1f} s")
    targets = torch.as_tensor(np.concatenate([train_t, train_t]), dtype=torch.float32)
    known = torch.as_tensor(np.concatenate([train_k, train_k]), dtype=torch.bool)
    train_ds = TensorDataset(feats, targets, known, torch.arange(len(feats)))
    val_ds = TensorDataset(val_feats, torch.as_tensor(val_t, dtype=torch.float32),
                           torch.as_tensor(val_k, dtype=torch.bool), torch.arange(len(val_feats)))
    return (DataLoader(train_ds, batch_size=config.batch_size, shuffle=True),
            DataLoader(val_ds, batch_size=256))


def _image_loaders(cache: ImageCache, train: tuple, val: tuple, *, config: TrainConfig) -> tuple[DataLoader, DataLoader]:
    train_ds = CachedImageDataset(cache, *train, transform=augmentation(config.augment))
    val_ds = CachedImageDataset(cache, *val)
    workers = dict(num_workers=config.num_workers, persistent_workers=config.num_workers > 0)
    return (DataLoader(train_ds, batch_size=config.batch_size, shuffle=True, drop_last=len(train_ds) > config.batch_size, **workers),
            DataLoader(val_ds, batch_size=config.batch_size * 2, **workers))


def _split(table: LabelTable, val_labels: str | Path | None, config: TrainConfig, read_options: dict) -> tuple[LabelTable, LabelTable]:
    if val_labels is not None:
        val_table = read_labels(val_labels, **read_options).aligned_to(table.label_names, what=str(val_labels))
        return table, val_table
    parts = split_table(table, val=config.val_fraction, seed=config.seed)
    return parts["train"], parts["val"]


def _usable_rows(cache: ImageCache, offset: int, table: LabelTable) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rows = np.array([offset + i for i in range(len(table)) if offset + i not in cache.failures], dtype=np.int64)
    local = rows - offset
    return rows, table.targets[local], table.known[local]


def train(labels: str | Path, *, images_dir: str | Path | None = None, val_labels: str | Path | None = None,
          out_dir: str | Path = "runs/train", config: TrainConfig | None = None, read_options: dict | None = None,
          console: Console | None = None, progress: bool = True, resume: bool = False,
          epoch_callback: Callable[[int, float], None] | None = None) -> TrainResult:
    """Train a multi-label image model and write a run folder.

    Args:
        labels: label file of the training images (any format `read_labels` reads).
        images_dir: folder the label file's image paths are relative to.
        val_labels: a validation label file; without it a stratified part is split off.
        out_dir: the run folder: artifact/, metrics.csv (per epoch), metrics.json, config.json.
        config: training settings (TrainConfig defaults when None).
        read_options: keyword options for `read_labels` (format, columns, separator...).
        epoch_callback: called as (epoch, val_mAP) after each validation of every phase; may raise to stop.
        resume: continue an interrupted run in `out_dir` from its last checkpoints (see resume_training).
    Returns:
        TrainResult with the run and artifact folders and the validation report.
    Raises:
        DataError, ConfigError, ModelError on bad input.
    """
    config = config or TrainConfig()
    config.validate()
    if config.ensemble != 1:
        raise ConfigError(f"ensemble={config.ensemble}: ensembles of heads are for tabular and text models; "
                          "an image model trains one head")
    console = console or Console(stderr=True)
    read_options = dict(read_options or {})
    started = time.perf_counter()
    run_dir, main = start_run(out_dir, seed=config.seed, resume=resume)

    table = read_labels(labels, **read_options)
    train_table, val_table = _split(table, val_labels, config, read_options)
    if len(train_table) == 0 or len(val_table) == 0:
        raise DataError(f"{labels}: need training and validation items, got {len(train_table)} and {len(val_table)}")
    model = create_model(config.backbone, num_labels=table.num_labels, pretrained=config.pretrained,
                         weights=config.weights, dropout=config.dropout, head_hidden=config.head_hidden,
                         image_size=config.image_size)
    resolved = config.updated(image_size=model.preprocess.image_size)
    if main:
        write_json(run_dir / "config.json", resolved.to_dict())
        write_json(run_dir / "run.json", {
            "labels": str(Path(labels).resolve()), "val_labels": str(Path(val_labels).resolve()) if val_labels else None,
            "images_dir": str(Path(images_dir).resolve()) if images_dir else None,
            "read_options": {k: str(v) if isinstance(v, Path) else v for k, v in read_options.items()},
            "modality": "image"})

    paths = resolve_image_paths(train_table.items + val_table.items, images_dir)
    cache_dir = Path(config.cache_dir or run_dir / "cache")
    cache = build_image_cache(paths, size=model.preprocess.image_size, cache_dir=cache_dir)
    skipped = {str(cache.paths[row]): message for row, message in sorted(cache.failures.items())}
    if skipped:
        console.print(f"[yellow]skipped {len(skipped)} unreadable or missing images:[/yellow] "
                      + "; ".join(list(skipped.values())[:5]) + (" ..." if len(skipped) > 5 else ""))
    train_part = _usable_rows(cache, 0, train_table)
    val_part = _usable_rows(cache, len(train_table), val_table)
    if len(train_part[0]) == 0 or len(val_part[0]) == 0:
        raise DataError(f"{labels}: no readable images left for training or validation (images folder: {images_dir})")
    console.print(f"training on {len(train_part[0])} images, validating on {len(val_part[0])}, "
                  f"{table.num_labels} labels, backbone {config.backbone} at {model.preprocess.image_size} px")

    loss = make_loss(config, label_frequency=train_part[1].mean(axis=0))
    precision = default_precision(config)
    norm = (model.preprocess.mean, model.preprocess.std)
    if uses_feature_cache(config):
        train_loader, val_loader = _feature_loaders(model, cache, train_part, val_part, config=config,
                                                    console=console, cache_dir=cache_dir)
        head = MultiLabelModule(model.head, loss, lr=config.lr, weight_decay=config.weight_decay, schedule=config.schedule,
                                normalize=None, mixup=config.mixup, score=validation_score)
        result = run_phase(head, train_loader, val_loader, config=config, epochs=config.epochs, phase="head",
                           run_dir=run_dir, precision="32-true", progress=progress,
                           epoch_callback=epoch_callback, resume=resume, head_only=True)
        if config.finetune:
            head_phase_state = copy.deepcopy(model.state_dict())
            set_backbone_trainable(model, True)
            train_loader, val_loader = _image_loaders(cache, train_part, val_part, config=config)
            full = MultiLabelModule(model, loss, lr=config.finetune_lr, weight_decay=config.weight_decay,
                                    schedule=config.schedule, normalize=norm, mixup=config.mixup, score=validation_score)
            tuned = run_phase(full, train_loader, val_loader, config=config, epochs=config.finetune_epochs,
                              phase="finetune", run_dir=run_dir, precision=precision, progress=progress,
                              epoch_callback=epoch_callback, resume=resume)
            if tuned.best_score >= result.best_score:
                result = tuned
            else:  # fine-tuning did not beat the head alone: keep the head phase's model
                model.load_state_dict(head_phase_state)
    else:
        train_loader, val_loader = _image_loaders(cache, train_part, val_part, config=config)
        full = MultiLabelModule(model, loss, lr=config.lr, weight_decay=config.weight_decay, schedule=config.schedule,
                                normalize=norm, mixup=config.mixup, score=validation_score)
        result = run_phase(full, train_loader, val_loader, config=config, epochs=config.epochs, phase="train",
                           run_dir=run_dir, precision=precision, progress=progress, epoch_callback=epoch_callback,
                           resume=resume)
    model.eval()

    val = result.validation
    thresholds = validation_thresholds(val, config)
    report = evaluate_probabilities(val["targets"], val["probs"], thresholds, label_names=table.label_names, known=val["known"])
    if not result.is_global_zero:  # other ranks of a distributed run: rank 0 writes the files
        return TrainResult(run_dir, run_dir / "artifact", report, thresholds, skipped, time.perf_counter() - started)
    artifact_dir = save_artifact(run_dir / "artifact", model=model, label_names=table.label_names, thresholds=thresholds,
                                 config=resolved.to_dict(), metrics=report.summary(),
                                 extra={"modality": "image", "best_epoch": result.best_epoch, "skipped_images": len(skipped)})
    seconds = time.perf_counter() - started
    write_json(run_dir / "metrics.json", {"validation": report.to_dict(), "best_epoch": result.best_epoch,
                                           "seconds": round(seconds, 1), "skipped": skipped})
    val_items = [val_table.items[i] for i in val_part[0] - len(train_table)]
    write_validation_predictions(run_dir / "val_predictions.csv", val_items, table.label_names, val)
    return TrainResult(run_dir, artifact_dir, report, thresholds, skipped, seconds)


def write_validation_predictions(path: Path, items: list[str], label_names: list[str], val: dict) -> None:
    """One row per validation item: its true labels (-1 unknown) and each label's probability."""
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["item"] + [f"true_{n}" for n in label_names] + [f"prob_{n}" for n in label_names])
        for item, t, k, p in zip(items, val["targets"], val["known"], val["probs"]):
            truth = [int(v) if known else -1 for v, known in zip(t, k)]
            writer.writerow([item] + truth + [f"{x:.6f}" for x in p])


def resume_training(run_dir: str | Path, *, console: Console | None = None, progress: bool = True) -> TrainResult:
    """Continue an interrupted `train` run from its last checkpoint, with the settings it was started with."""
    run_dir = Path(run_dir)
    try:
        run = json.loads((run_dir / "run.json").read_text())
    except FileNotFoundError:
        raise DataError(f"{run_dir}: not a run folder to resume (no run.json); start it with tagnet train") from None
    config = load_config(run_dir / "config.json")
    if run.get("modality", "image") != "image":
        from tagnet.train_vectors import train_vectors

        return train_vectors(run["labels"], modality=run["modality"], text_column=run.get("text_column"),
                             val_labels=run.get("val_labels"), out_dir=run_dir, config=config,
                             read_options=run["read_options"], console=console, progress=progress, resume=True)
    return train(run["labels"], images_dir=run["images_dir"], val_labels=run["val_labels"], out_dir=run_dir,
                 config=config, read_options=run["read_options"], console=console, progress=progress, resume=True)
