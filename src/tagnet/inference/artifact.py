"""Save and load one model bundle: model.safetensors plus tagnet.json; never unpickles."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import safetensors.torch
from safetensors import SafetensorError

from tagnet import modalities
from tagnet.decisions.calibration import TemperatureScaling
from tagnet.config.settings import MODALITIES
from tagnet.errors import ArtifactError, TagnetError
from tagnet.files import atomic_write, json_default
from tagnet.report.model_card import write_model_card
from tagnet.hierarchy.tree import Tree
from tagnet.models import PreprocessConfig, TagnetModel, grow_head, grown_base_spec
from tagnet.models.weights import load_state_into
from tagnet.decisions.thresholds import Thresholds

FORMAT_VERSION = 2
META_FILE = "tagnet.json"
WEIGHTS_FILE = "model.safetensors"
RUN_SUBDIR = "artifact"
# format 2: the modality is a top-level field and its fitted state ("input": image size and normalisation, text column,
# feature names and standardisation) has one place; format 1 (tagnet 0.1.0) kept them in preprocess, model and extra.
REQUIRED_KEYS = {1: ("format_version", "label_names", "thresholds", "preprocess", "model", "config", "metrics"),
                 2: ("format_version", "modality", "label_names", "thresholds", "input", "model", "config", "metrics")}
SPEC_KEYS = ("name", "num_labels", "dropout", "head_hidden")


@dataclass
class Artifact:
    """A loaded model bundle: the model in eval mode and everything needed to use it like in training."""

    model: TagnetModel
    modality: str
    label_names: list[str]
    thresholds: Thresholds
    state: dict[str, Any]
    config: dict[str, Any]
    metrics: dict[str, Any]
    meta: dict[str, Any]
    path: Path
    calibration: TemperatureScaling | None = None  # from `tagnet calibrate`: applied to probabilities before thresholds
    hierarchy: Tree | None = None  # the labels' tree (--hierarchy): probabilities and decisions follow it (tree.RULE)

    @property
    def preprocess(self) -> PreprocessConfig:
        """How an image model's inputs are prepared (size, mean, std); ArtifactError for other models."""
        if self.model.preprocess is None:
            raise ArtifactError(f"{self.path} is a {self.modality} model; it has no image preprocessing")
        return self.model.preprocess


def _tagnet_version() -> str:
    try:
        return version("tagnet")
    except PackageNotFoundError:
        return "unknown"


def save_artifact(
    out_dir: str | Path,
    *,
    model: TagnetModel,
    modality: str,
    label_names: Sequence[str],
    thresholds: Thresholds,
    state: dict[str, Any],
    config: dict[str, Any],
    metrics: dict[str, Any],
    extra: dict[str, Any] | None = None,
    hierarchy: Tree | None = None,
) -> Path:
    """Write `out_dir`/model.safetensors, `out_dir`/tagnet.json (format 2) and its MODEL_CARD.md, each atomically; return
    `out_dir`.

    Args:
        out_dir: artifact folder, created if needed.
        model: the trained TagnetModel.
        modality: what it takes: "image", "text" or "tabular".
        label_names: one name per model output, in order.
        state: the modality's fitted state (JSON-able; see Modality.fit_state).
        thresholds: the fitted Thresholds (any object with `to_dict()` is accepted).
        config: the resolved training settings (JSON-able).
        metrics: validation metrics (JSON-able; numpy numbers are converted).
        extra: anything else to record (JSON-able).
        hierarchy: the labels' tree, aligned to label_names (kept as the key "hierarchy").

    Raises:
        ArtifactError: label_names does not match the model's number of outputs.
    """
    out_dir = Path(out_dir)
    label_names = [str(name) for name in label_names]
    if len(label_names) != model.num_labels:
        raise ArtifactError(f"{len(label_names)} label names for a model with {model.num_labels} outputs; expected one per output")
    out_dir.mkdir(parents=True, exist_ok=True)
    modalities.get(modality).check_state(state, source=f"{out_dir / META_FILE} key 'input'")
    meta = {
        "format_version": FORMAT_VERSION,
        "tagnet_version": _tagnet_version(),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "modality": modality,
        "label_names": label_names,
        "thresholds": thresholds.to_dict(),
        "input": state,
        "model": model.spec,
        "config": config,
        "metrics": metrics,
        "extra": extra or {},
        **({"hierarchy": hierarchy.to_dict()} if hierarchy is not None else {}),
    }
    text = json.dumps(meta, indent=2, default=json_default) + "\n"
    state = {key: tensor.detach().cpu().contiguous() for key, tensor in model.state_dict().items()}
    atomic_write(out_dir / WEIGHTS_FILE, lambda temp: safetensors.torch.save_file(state, temp, metadata={"format": "pt"}))
    atomic_write(out_dir / META_FILE, lambda temp: temp.write_text(text, encoding="utf-8"))
    write_model_card(out_dir, json.loads(text))
    return out_dir


def _artifact_dir(path: Path) -> Path:
    if not path.exists():
        raise ArtifactError(f"artifact {path} does not exist; expected an artifact folder or a run folder")
    if path.is_file():
        if path.name == META_FILE:
            return path.parent
        raise ArtifactError(f"artifact {path} is a file; expected an artifact folder (with {META_FILE}) or a run folder")
    for candidate in (path, path / RUN_SUBDIR):
        if (candidate / META_FILE).is_file():
            return candidate
    raise ArtifactError(f"no {META_FILE} in {path} or {path / RUN_SUBDIR}; expected an artifact folder or a run folder")


def _read_meta(meta_path: Path) -> dict[str, Any]:
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ArtifactError(f"{meta_path} is not valid JSON: {exc}") from exc
    if not isinstance(meta, dict):
        raise ArtifactError(f"{meta_path} holds a JSON {type(meta).__name__}; expected an object")
    found = meta.get("format_version")
    if not isinstance(found, int) or isinstance(found, bool) or found < 1:
        raise ArtifactError(f"{meta_path} format_version is {found!r}; expected an integer from 1 to {FORMAT_VERSION}")
    if found > FORMAT_VERSION:
        raise ArtifactError(
            f"{meta_path} has format_version {found}, made by a newer tagnet ({meta.get('tagnet_version', 'unknown')}); "
            f"this tagnet ({_tagnet_version()}) reads up to {FORMAT_VERSION}: upgrade tagnet"
        )
    missing = [key for key in REQUIRED_KEYS[found] if key not in meta]
    if missing:
        raise ArtifactError(f"{meta_path} lacks the key(s) {', '.join(missing)}; expected {', '.join(REQUIRED_KEYS[found])}")
    if found == 1:
        meta = _from_format_1(meta)
    spec = meta["model"]
    if not isinstance(spec, dict) or any(key not in spec for key in SPEC_KEYS):
        raise ArtifactError(f"{meta_path} key 'model' is {spec!r}; expected an object with {', '.join(SPEC_KEYS)}")
    labels = meta["label_names"]
    if not isinstance(labels, list) or not all(isinstance(name, str) for name in labels) or len(labels) != spec["num_labels"]:
        raise ArtifactError(
            f"{meta_path} label_names is {labels!r}; expected a list of {spec['num_labels']} strings (model.num_labels)"
        )
    for key in ("input", "config", "metrics"):
        if not isinstance(meta[key], dict):
            raise ArtifactError(f"{meta_path} key {key!r} is a {type(meta[key]).__name__}; expected an object")
    if meta["modality"] not in MODALITIES:
        raise ArtifactError(f"{meta_path} modality is {meta['modality']!r}; expected one of {', '.join(MODALITIES)}")
    modalities.get(meta["modality"]).check_state(meta["input"], source=f"{meta_path} key 'input'")
    return meta


def _from_format_1(meta: dict[str, Any]) -> dict[str, Any]:
    """A format-1 tagnet.json (tagnet 0.1.0) in the format-2 layout: the modality from extra.modality, and the fitted
    state from where that modality kept it (Modality.state_from_format_1)."""
    extra = dict(meta.get("extra") or {})
    modality = extra.pop("modality", "image")
    state = modalities.get(modality).state_from_format_1(meta["preprocess"], extra) if modality in MODALITIES else {}
    spec = {key: value for key, value in meta["model"].items() if key not in ("image_size", "input_dim")}
    return {**{k: v for k, v in meta.items() if k != "preprocess"}, "modality": modality, "input": state,
            "model": spec, "extra": extra}


def load_artifact(path: str | Path) -> Artifact:
    """Load an artifact folder, or a run folder containing artifact/; the model is returned in eval mode.

    Raises:
        ArtifactError: the folder, tagnet.json or weights are missing or malformed, the format version
            is newer than this tagnet reads, or the weights do not fit the recorded architecture.
    """
    directory = _artifact_dir(Path(path))
    meta_path = directory / META_FILE
    meta = _read_meta(meta_path)
    spec = meta["model"]
    thresholds = Thresholds.from_dict(meta["thresholds"], num_labels=spec["num_labels"], source=f"{meta_path} key 'thresholds'")
    calibration = None if meta.get("calibration") is None else TemperatureScaling.from_dict(
        meta["calibration"], num_labels=spec["num_labels"], source=f"{meta_path} key 'calibration'")
    hierarchy = None if meta.get("hierarchy") is None else Tree.from_dict(
        meta["hierarchy"], num_labels=spec["num_labels"], source=f"{meta_path} key 'hierarchy'")
    weights_path = directory / WEIGHTS_FILE
    if not weights_path.is_file():
        raise ArtifactError(f"weights file {weights_path} is missing; expected it next to {META_FILE}")
    try:
        state = safetensors.torch.load_file(weights_path, device="cpu")
    except (SafetensorError, OSError) as exc:
        raise ArtifactError(f"weights file {weights_path} is not a readable safetensors file: {exc}") from exc
    try:
        model = modalities.get(meta["modality"]).rebuild_model(grown_base_spec(spec), meta["input"], source=str(meta_path))
        grow_head(model, spec)  # a head grown by `tagnet train --from` (models.base.GrownHead)
        load_state_into(model, state, source=str(weights_path), what=f"{spec['name']} model recorded in {META_FILE}")
    except TagnetError as exc:
        raise ArtifactError(f"{meta_path}: {exc}") from exc
    model.eval()
    return Artifact(
        model=model,
        modality=meta["modality"],
        label_names=list(meta["label_names"]),
        thresholds=thresholds,
        state=meta["input"],
        config=meta["config"],
        metrics=meta["metrics"],
        meta=meta,
        path=directory,
        calibration=calibration,
        hierarchy=hierarchy,
    )
