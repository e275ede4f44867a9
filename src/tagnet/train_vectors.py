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
from tagnet.data.labels import read_labels_with_texts
from tagnet.data.split import split_table
from tagnet.data.table import LabelTable
from tagnet.data.tabular import fit_standardization, read_feature_table, standardize
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
# read options that apply to feature tables; every other label-file option applies to text files only
TABULAR_OPTIONS = ("label_columns", "label_count", "labels_xml", "id_column", "delimiter")
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


def _set_options(options: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in options.items() if value not in (None, False)}


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
    options = _set_options(read_options or {})
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
    wrong = sorted(set(options) - set(TABULAR_OPTIONS))
    if wrong:
        raise ConfigError(f"option(s) {', '.join(wrong)} do not apply to feature tables; expected only "
                          f"{', '.join(TABULAR_OPTIONS)}")
    found = read_feature_table(path, feature_names=feature_names, **options)
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


def _split(data: VectorData, val_labels: str | Path | None, *, modality: str,
           text_column: str | int | None, read_options: dict, config: TrainConfig) -> tuple[VectorData, VectorData]:
    if val_labels is not None:
        val = read_vector_data(val_labels, modality=modality, text_column=text_column, read_options=read_options,
                               feature_names=data.feature_names)
        val.table = val.table.aligned_to(data.table.label_names, what=str(val_labels))
        return data, val
    numbered = LabelTable([str(i) for i in range(len(data.table))], data.table.label_names, data.table.targets,
                          data.table.known)
    parts = split_table(numbered, val=config.val_fraction, seed=config.seed)
    return (data.subset(np.array([int(i) for i in parts["train"].items])),
            data.subset(np.array([int(i) for i in parts["val"].items])))


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
    read_options = _set_options(dict(read_options or {}))
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
    train_data, val_data = _split(data, val_labels, modality=modality, text_column=text_column,
                                  read_options=read_options, config=config)
    if len(train_data.table) == 0 or len(val_data.table) == 0:
        raise DataError(f"{labels}: need training and validation items, got {len(train_data.table)} and {len(val_data.table)}")
    if modality == "text" and val_data.embeddings is None:
        val_data.embeddings = _embed(model, val_data.texts, config=config, run_dir=run_dir, progress=progress, console=console)
    if main:
        write_json(run_dir / "config.json", config.to_dict())
        write_json(run_dir / "run.json", {
            "labels": str(Path(labels).resolve()), "val_labels": str(Path(val_labels).resolve()) if val_labels else None,
            "text_column": text_column, "modality": modality,
            "read_options": _json_options(read_options)})
    loss = make_loss(config, label_frequency=(train_data.table.targets * train_data.table.known).mean(axis=0))
    phase = dict(config=config, run_dir=run_dir, progress=progress, epoch_callback=epoch_callback, resume=resume)
    console.print(f"training on {len(train_data.table)} {modality} items, validating on {len(val_data.table)}, "
                  f"{len(names)} labels, model {config.backbone}")

    if modality == "tabular":
        mean, std = fit_standardization(train_data.features)
        train_loader, val_loader = _tensor_loaders(
            torch.from_numpy(standardize(train_data.features, mean, std)), train_data.table,
            torch.from_numpy(standardize(val_data.features, mean, std)), val_data.table, batch_size=config.batch_size)
        result = _train_heads(model, train_loader, val_loader, loss=loss, config=config, phase=phase, name="train")
        extra = {"feature_names": train_data.feature_names,
                 "standardize": {"mean": mean.tolist(), "std": std.tolist()},
                 "id_column": read_options.get("id_column")}
    else:
        result, finetuned = _train_text(model, train_data, val_data, loss=loss, config=config, phase=phase,
                                        console=console)
        extra = {"text_column": text_column, "encoder": config.backbone, "finetuned": finetuned,
                 "read_options": _json_options(read_options)}  # evaluate reads files like the training file by default
    model.eval()

    val = result.validation
    thresholds = validation_thresholds(val, config)
    report = evaluate_probabilities(val["targets"], val["probs"], thresholds, label_names=names, known=val["known"])
    if not result.is_global_zero:  # other ranks of a distributed run: rank 0 writes the files
        return TrainResult(run_dir, run_dir / "artifact", report, thresholds, {}, time.perf_counter() - started)
    artifact_dir = save_artifact(run_dir / "artifact", model=model, label_names=names, thresholds=thresholds,
                                 config=config.to_dict(), metrics=report.summary(),
                                 extra={"modality": modality, "best_epoch": result.best_epoch, **extra})
    seconds = time.perf_counter() - started
    write_json(run_dir / "metrics.json", {"validation": report.to_dict(), "best_epoch": result.best_epoch,
                                           "seconds": round(seconds, 1), "skipped": {}})
    write_validation_predictions(run_dir / "val_predictions.csv", val_data.table.items, names, val)
    return TrainResult(run_dir, artifact_dir, report, thresholds, {}, seconds)


def _train_heads(model: TagnetModel, train_loader: DataLoader, val_loader: DataLoader, *, loss: torch.nn.Module,
                 config: TrainConfig, phase: dict, name: str) -> PhaseResult:
    """Train the model's head on precomputed inputs (standardised rows or embeddings; the backbone is not run).

    An ensemble's members train one after another, each in its own phase (NAME, NAME-2, ...) with its own
    early stopping; the result then holds the members' averaged validation probabilities, their mAP, and as
    best epoch the latest of the members' best epochs.
    """
    results = []
    for k, head in enumerate(head_members(model)):
        module = MultiLabelModule(head, loss, lr=config.lr, weight_decay=config.weight_decay, schedule=config.schedule,
                                  normalize=None, mixup=config.mixup, score=validation_score)
        results.append(run_phase(module, train_loader, val_loader, epochs=config.epochs, phase=name if k == 0 else
                                 f"{name}-{k + 1}", precision="32-true", **phase))
    if len(results) == 1:
        return results[0]
    validation = {**results[0].validation, "probs": np.mean([r.validation["probs"] for r in results], axis=0)}
    return PhaseResult(validation_score(**validation)["mAP"], max(r.best_epoch for r in results),
                       sum(r.epochs_run for r in results), validation, sum(r.seconds for r in results),
                       results[0].is_global_zero)


def _embed(model: TagnetModel, texts: list[str], *, config: TrainConfig, run_dir: Path, progress: bool,
           console: Console) -> torch.Tensor:
    started = time.perf_counter()
    embeddings = cached_embeddings(model.backbone, texts, cache_dir=Path(config.cache_dir or run_dir / "cache"),
                                   progress=progress)
    console.print(f"sentence embeddings of {len(texts)} texts ready in {time.perf_counter() - started:.1f} s")
    return embeddings


def _train_text(model: TagnetModel, train: VectorData, val: VectorData, *, loss: torch.nn.Module, config: TrainConfig,
                phase: dict, console: Console) -> tuple[Any, bool]:
    """Head on the frozen embeddings, then (config.finetune) the whole encoder; returns (phase result, fine-tuned?)."""
    train_loader, val_loader = _tensor_loaders(train.embeddings, train.table, val.embeddings, val.table,
                                               batch_size=config.batch_size)
    result = _train_heads(model, train_loader, val_loader, loss=loss, config=config, phase=phase, name="head")
    if not config.finetune:
        return result, False
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
        return tuned, True
    console.print(f"fine-tuning reached validation mAP {tuned.best_score:.4f}, below the head alone "
                  f"({result.best_score:.4f}): keeping the frozen encoder")
    model.load_state_dict(head_state)
    return result, False
