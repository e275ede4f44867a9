"""Train on text or tabular inputs: labels -> vectors (sentence embeddings, standardised features) -> head -> artifact."""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from rich.console import Console
from torch.utils.data import DataLoader, TensorDataset

from tagnet.artifact import save_artifact
from tagnet.config import TrainConfig
from tagnet.data.labels import given_options, read_labels_with_texts
from tagnet.data.split import split_table
from tagnet.data.table import LabelTable
from tagnet.data.tabular import fit_standardization, read_feature_table, standardize, table_read_options
from tagnet.data.text import PadCollate, TokenDataset
from tagnet.engine.fit import PhaseResult, default_precision, run_phase
from tagnet.engine.module import MultiLabelModule
from tagnet.errors import ConfigError, DataError
from tagnet.losses import make_loss
from tagnet.metrics import evaluate_probabilities
from tagnet.models import TagnetModel, create_model, head_members
from tagnet.models.mlp import DEFAULT_HIDDEN, MLP
from tagnet.models.text import TEXT_ENCODERS, cached_embeddings
from tagnet.train import (TrainResult, start_run, validation_score, validation_thresholds, write_json,
                          write_validation_predictions)

MODALITIES = ("text", "tabular")
TEXT_FINETUNE_LR = 5e-5  # a transformer forgets its pretraining at the image default (3e-4)
TEXT_HEAD_HIDDEN = 1024  # a linear head on unit-length sentence embeddings underfits (GoEmotions macro-F1 0.22 vs 0.41)


@dataclass
class VectorData:
    """Labelled inputs of one file: the label table plus the texts (and their embeddings), or float32 features and names."""

    table: LabelTable
    texts: list[str] | None = None
    features: np.ndarray | None = None
    feature_names: list[str] | None = None
    embeddings: torch.Tensor | None = None

    def subset(self, rows: np.ndarray) -> VectorData:
        """The rows at `rows`."""
        return VectorData(self.table.subset(rows), [self.texts[i] for i in rows] if self.texts is not None else None,
                          self.features[rows] if self.features is not None else None, self.feature_names,
                          self.embeddings[torch.from_numpy(rows)] if self.embeddings is not None else None)


def _json_options(options: dict[str, Any]) -> dict[str, Any]:
    return {key: str(Path(value).resolve()) if isinstance(value, Path) else value for key, value in options.items()}


def read_vector_data(path: str | Path, *, modality: str, text_column: str | int | None = None,
                     read_options: dict[str, Any] | None = None, feature_names: list[str] | None = None) -> VectorData:
    """Read a text label file (with `text_column`) or a feature table (ARFF, CSV) for training or evaluation.

    Args:
        modality: "text" or "tabular".
        read_options: read_labels options for text files; for feature tables label_columns, label_count,
            labels_xml, id_column and delimiter (see tagnet.data.tabular.read_feature_table).
        feature_names: tabular only: read exactly these feature columns (a trained model's).
    Raises:
        ConfigError: unknown modality, no text column for text, options that do not apply.
        DataError: from the readers.
    """
    options = given_options(read_options or {})
    if modality == "text":
        if text_column is None:
            raise ConfigError("text inputs need the column (or JSON key) that holds the text: --text-column")
        wrong = sorted(set(options) & {"label_count", "labels_xml"})
        if wrong:
            raise ConfigError(f"option(s) {', '.join(wrong)} apply to feature tables (ARFF/CSV features), not to text files")
        table, texts = read_labels_with_texts(path, text_column, **options)
        return VectorData(table, texts=texts)
    if modality != "tabular":
        raise ConfigError(f"modality {modality!r} is not one of {list(MODALITIES)}")
    found = read_feature_table(path, feature_names=feature_names, **table_read_options(options))
    return VectorData(found.labels, features=found.features, feature_names=found.feature_names)


def resolve_vector_config(config: TrainConfig, *, modality: str) -> TrainConfig:
    """`config` with the defaults of a modality where it has the image defaults.

    Tables: model mlp, hidden layer 256 wide. Text: model minilm_l6, a head with a 1024-wide hidden layer,
    fine-tuning learning rate 5e-5. head_hidden 0 means "the modality's default" here. Raises ConfigError
    for a model of another modality.
    """
    default = TrainConfig()
    wanted = {"tabular": (MLP,), "text": TEXT_ENCODERS}[modality]
    backbone = wanted[0] if config.backbone == default.backbone else config.backbone
    if backbone not in wanted:
        raise ConfigError(f"backbone {config.backbone!r} does not take {modality} inputs; expected {', '.join(wanted)}")
    if config.ensemble > 1 and config.finetune:
        raise ConfigError(f"ensemble={config.ensemble} with finetune: an ensemble shares one frozen encoder; "
                          "fine-tune a single model (ensemble=1) instead")
    if modality == "tabular":
        return config.updated(backbone=backbone, head_hidden=config.head_hidden or DEFAULT_HIDDEN)
    lr = TEXT_FINETUNE_LR if config.finetune_lr == default.finetune_lr else config.finetune_lr
    return config.updated(backbone=backbone, finetune_lr=lr, head_hidden=config.head_hidden or TEXT_HEAD_HIDDEN)


@dataclass
class _Split:
    """Training and validation data of one head; `train_rows` / `val_rows` number the rows of the training file
    (`val_rows` numbers the rows of the --val file instead when `val_is_file`)."""

    train: VectorData
    val: VectorData
    train_rows: np.ndarray
    val_rows: np.ndarray
    val_is_file: bool


def _splits(data: VectorData, val_labels: str | Path | None, *, modality: str, text_column: str | int | None,
            read_options: dict, config: TrainConfig) -> list[_Split]:
    """One split per head. With a --val file every head validates on it; otherwise head k holds out its own
    stratified part of the training file (seed + k), so the heads of an ensemble also see different rows."""
    every_row = np.arange(len(data.table))
    if val_labels is not None:
        val = read_vector_data(val_labels, modality=modality, text_column=text_column, read_options=read_options,
                               feature_names=data.feature_names)
        val.table = val.table.aligned_to(data.table.label_names, what=str(val_labels))
        return [_Split(data, val, every_row, np.arange(len(val.table)), True)] * config.ensemble
    numbered = LabelTable([str(i) for i in every_row], data.table.label_names, data.table.targets, data.table.known)
    splits = []
    for k in range(config.ensemble):
        parts = split_table(numbered, val=config.val_fraction, seed=config.seed + k)
        train_rows, val_rows = (np.array([int(i) for i in parts[name].items], dtype=np.int64) for name in ("train", "val"))
        splits.append(_Split(data.subset(train_rows), data.subset(val_rows), train_rows, val_rows, False))
    return splits


def _merged_validation(splits: list[_Split], results: list[PhaseResult],
                       data: VectorData) -> tuple[dict[str, np.ndarray], list[str]]:
    """The heads' validation outputs as one: each validation row's probability averaged over the heads that held
    it out (all of them when they share a split or a --val file). Returns (validation dict, item names)."""
    first = splits[0]
    count = len(first.val.table) if first.val_is_file else len(data.table)
    total = np.zeros((count, len(data.table.label_names)))
    votes = np.zeros(count, dtype=np.int64)
    targets, known = np.zeros_like(total, dtype=np.float32), np.zeros_like(total, dtype=bool)
    for split, result in zip(splits, results):
        total[split.val_rows] += result.validation["probs"]
        votes[split.val_rows] += 1
        targets[split.val_rows] = result.validation["targets"]
        known[split.val_rows] = result.validation["known"]
    rows = np.flatnonzero(votes)
    items = (first.val.table if first.val_is_file else data.table).items
    validation = {"probs": (total[rows] / votes[rows, None]).astype(np.float32), "targets": targets[rows],
                  "known": known[rows]}
    return validation, [items[i] for i in rows]


def _tensor_loaders(train_x: torch.Tensor, train: LabelTable, val_x: torch.Tensor, val: LabelTable, *,
                    batch_size: int) -> tuple[DataLoader, DataLoader]:
    def dataset(x: torch.Tensor, table: LabelTable) -> TensorDataset:
        return TensorDataset(x, torch.as_tensor(table.targets, dtype=torch.float32),
                             torch.as_tensor(table.known, dtype=torch.bool), torch.arange(len(x)))
    return (DataLoader(dataset(train_x, train), batch_size=batch_size, shuffle=True),
            DataLoader(dataset(val_x, val), batch_size=1024))


def train_vectors(labels: str | Path, *, modality: str, text_column: str | int | None = None,
                  val_labels: str | Path | None = None, out_dir: str | Path = "runs/train",
                  config: TrainConfig | None = None, read_options: dict | None = None, console: Console | None = None,
                  progress: bool = True, resume: bool = False,
                  epoch_callback: Callable[[int, float], None] | None = None) -> TrainResult:
    """Train a multi-label model on texts or feature vectors and write a run folder like `tagnet.train.train`.

    Text: frozen sentence embeddings (all-MiniLM-L6-v2, cached on disk) and a head trained on them;
    with config.finetune the whole encoder is trained afterwards (kept only when it scores better).
    Tabular: an MLP on features standardised with the training rows' mean and std (stored in the artifact).
    config.ensemble > 1: that many heads averaged, each on its own split (see _splits); the validation
    report and thresholds then use out-of-fold probabilities (see _merged_validation).

    Args:
        labels: a text label file (CSV/TSV/JSON(L), with `text_column`) or a feature table (ARFF, CSV).
        modality: "text" or "tabular".
        text_column: the column or JSON key holding the text (text only).
        val_labels: a validation file of the same kind; without it a stratified part is split off.
        out_dir: the run folder: artifact/, metrics.csv, metrics.json, config.json, run.json, val_predictions.csv.
        config: training settings; see resolve_vector_config for the per-modality defaults.
        read_options: options for the reader (see read_vector_data).
        resume: continue an interrupted run in `out_dir` from its last checkpoints.
        epoch_callback: called as (epoch, val_mAP) after each validation; may raise to stop.
    Returns:
        TrainResult with the run and artifact folders and the validation report.
    Raises:
        DataError, ConfigError, ModelError on bad input.
    """
    config = resolve_vector_config(config or TrainConfig(), modality=modality)
    console = console or Console(stderr=True)
    read_options = given_options(read_options or {})
    started = time.perf_counter()
    run_dir, main = start_run(out_dir, seed=config.seed, resume=resume)

    data = read_vector_data(labels, modality=modality, text_column=text_column, read_options=read_options)
    names = data.table.label_names
    if modality == "tabular":
        model = create_model(MLP, num_labels=len(names), pretrained=False, dropout=config.dropout,
                             head_hidden=config.head_hidden, input_dim=data.features.shape[1], ensemble=config.ensemble)
    else:  # the whole file's texts are embedded (and cached) once, whatever the split
        model = create_model(config.backbone, num_labels=len(names), pretrained=config.pretrained,
                             dropout=config.dropout, head_hidden=config.head_hidden, ensemble=config.ensemble)
        data.embeddings = _embed(model, data.texts, config=config, run_dir=run_dir, progress=progress, console=console)
    splits = _splits(data, val_labels, modality=modality, text_column=text_column, read_options=read_options,
                     config=config)
    first = splits[0]
    if len(first.train.table) == 0 or len(first.val.table) == 0:
        raise DataError(f"{labels}: need training and validation items, got {len(first.train.table)} and {len(first.val.table)}")
    if modality == "text" and first.val_is_file:  # one file shared by every head: embedded once
        first.val.embeddings = _embed(model, first.val.texts, config=config, run_dir=run_dir, progress=progress,
                                      console=console)
    if main:
        write_json(run_dir / "config.json", config.to_dict())
        write_json(run_dir / "run.json", {
            "labels": str(Path(labels).resolve()), "val_labels": str(Path(val_labels).resolve()) if val_labels else None,
            "text_column": text_column, "modality": modality,
            "read_options": _json_options(read_options)})
    loss = make_loss(config, label_frequency=(first.train.table.targets * first.train.table.known).mean(axis=0))
    phase = dict(config=config, run_dir=run_dir, progress=progress, epoch_callback=epoch_callback, resume=resume)
    own_splits = "" if first.val_is_file or config.ensemble == 1 else f" (each of the {config.ensemble} heads its own split)"
    console.print(f"training on {len(first.train.table)} {modality} items, validating on {len(first.val.table)}{own_splits}, "
                  f"{len(names)} labels, model {config.backbone}")

    if modality == "tabular":  # standardised with the rows that train some head (all of them for an ensemble)
        mean, std = fit_standardization(data.features[np.unique(np.concatenate([s.train_rows for s in splits]))])
        inputs = torch.from_numpy(standardize(data.features, mean, std))  # every row once; each head takes its own
        val_inputs = torch.from_numpy(standardize(first.val.features, mean, std)) if first.val_is_file else inputs
        loaders = [_tensor_loaders(inputs[s.train_rows], s.train.table, val_inputs[s.val_rows], s.val.table,
                                   batch_size=config.batch_size) for s in splits]
        results = _train_heads(model, loaders, loss=loss, config=config, phase=phase, name="train")
        extra = {"feature_names": data.feature_names,
                 "standardize": {"mean": mean.tolist(), "std": std.tolist()},
                 "id_column": read_options.get("id_column")}
    else:
        results, finetuned = _train_text(model, splits, loss=loss, config=config, phase=phase, console=console)
        extra = {"text_column": text_column, "encoder": config.backbone, "finetuned": finetuned,
                 "read_options": _json_options(read_options)}  # evaluate reads files like the training file by default
    model.eval()

    val, val_items = _merged_validation(splits, results, data)
    result = results[0]
    best_epoch = max(r.best_epoch for r in results)
    thresholds = validation_thresholds(val, config)
    report = evaluate_probabilities(val["targets"], val["probs"], thresholds, label_names=names, known=val["known"])
    if not result.is_global_zero:  # other ranks of a distributed run: rank 0 writes the files
        return TrainResult(run_dir, run_dir / "artifact", report, thresholds, {}, time.perf_counter() - started)
    artifact_dir = save_artifact(run_dir / "artifact", model=model, label_names=names, thresholds=thresholds,
                                 config=config.to_dict(), metrics=report.summary(),
                                 extra={"modality": modality, "best_epoch": best_epoch, **extra})
    seconds = time.perf_counter() - started
    write_json(run_dir / "metrics.json", {"validation": report.to_dict(), "best_epoch": best_epoch,
                                           "seconds": round(seconds, 1), "skipped": {}})
    write_validation_predictions(run_dir / "val_predictions.csv", val_items, names, val)
    return TrainResult(run_dir, artifact_dir, report, thresholds, {}, seconds)


def _train_heads(model: TagnetModel, loaders: list[tuple[DataLoader, DataLoader]], *, loss: torch.nn.Module,
                 config: TrainConfig, phase: dict, name: str) -> list[PhaseResult]:
    """Train the model's head on precomputed inputs (standardised rows or embeddings; the backbone is not run).

    An ensemble's heads train one after another, head k on loaders[k], each in its own phase (NAME, NAME-2,
    ...) with its own early stopping. Returns one PhaseResult per head.
    """
    results = []
    for k, (head, (train_loader, val_loader)) in enumerate(zip(head_members(model), loaders)):
        module = MultiLabelModule(head, loss, lr=config.lr, weight_decay=config.weight_decay, schedule=config.schedule,
                                  normalize=None, mixup=config.mixup, score=validation_score)
        results.append(run_phase(module, train_loader, val_loader, epochs=config.epochs, phase=name if k == 0 else
                                 f"{name}-{k + 1}", precision="32-true", head_only=True, **phase))
    return results


def _embed(model: TagnetModel, texts: list[str], *, config: TrainConfig, run_dir: Path, progress: bool,
           console: Console) -> torch.Tensor:
    started = time.perf_counter()
    embeddings = cached_embeddings(model.backbone, texts, cache_dir=Path(config.cache_dir or run_dir / "cache"),
                                   progress=progress)
    console.print(f"sentence embeddings of {len(texts)} texts ready in {time.perf_counter() - started:.1f} s")
    return embeddings


def _train_text(model: TagnetModel, splits: list[_Split], *, loss: torch.nn.Module, config: TrainConfig,
                phase: dict, console: Console) -> tuple[list[PhaseResult], bool]:
    """Heads on the frozen embeddings, then (config.finetune, one head only) the whole encoder.

    Returns (one PhaseResult per head, fine-tuned?).
    """
    loaders = [_tensor_loaders(s.train.embeddings, s.train.table, s.val.embeddings, s.val.table,
                               batch_size=config.batch_size) for s in splits]
    results = _train_heads(model, loaders, loss=loss, config=config, phase=phase, name="head")
    if not config.finetune:
        return results, False
    result, train, val = results[0], splits[0].train, splits[0].val
    head_state = copy.deepcopy(model.state_dict())
    encoder = model.backbone
    collate = PadCollate(encoder.pad_id)
    train_loader = DataLoader(TokenDataset(encoder.tokenize(train.texts), train.table.targets, train.table.known),
                              batch_size=config.batch_size, shuffle=True, collate_fn=collate)
    val_loader = DataLoader(TokenDataset(encoder.tokenize(val.texts), val.table.targets, val.table.known),
                            batch_size=config.batch_size * 4, collate_fn=collate)
    full = MultiLabelModule(model, loss, lr=config.finetune_lr, weight_decay=config.weight_decay,
                            schedule=config.schedule, normalize=None, mixup=0.0, score=validation_score)
    tuned = run_phase(full, train_loader, val_loader, epochs=config.finetune_epochs, phase="finetune",
                      precision=default_precision(config), **phase)
    if tuned.best_score >= result.best_score:
        return [tuned], True
    console.print(f"fine-tuning reached validation mAP {tuned.best_score:.4f}, below the head alone "
                  f"({result.best_score:.4f}): keeping the frozen encoder")
    model.load_state_dict(head_state)
    return results, False
