"""Every training setting once: its type, default and meaning; saved with each run as JSON."""

from __future__ import annotations

import dataclasses
import difflib
import json
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from tagnet.errors import ConfigError
from tagnet.thresholds import MODES as THRESHOLD_MODES


def _setting(default: Any, help: str, **kw: Any) -> Any:
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda: type(default)(default), metadata={"help": help, **kw})
    return field(default=default, metadata={"help": help, **kw})


@dataclass
class TrainConfig:
    """Settings of one training run. `tagnet train --help` and `describe_settings()` list them."""

    backbone: str = _setting("efficientnet_lite0", "model name: seed_cnn, or any timm model")
    pretrained: bool = _setting(True, "load the backbone's pretrained weights (offline)")
    weights: str | None = _setting(None, "path to a local pretrained weights file for the backbone")
    image_size: int | None = _setting(None, "input size in pixels; default: the backbone's own")
    epochs: int = _setting(15, "maximum training epochs (head phase for pretrained backbones)")
    batch_size: int = _setting(32, "images per batch")
    lr: float = _setting(3e-3, "peak learning rate of AdamW")
    weight_decay: float = _setting(1e-4, "AdamW weight decay")
    dropout: float = _setting(0.2, "dropout before the linear head")
    head_hidden: int = _setting(0, "width of a hidden layer in the head (0 = linear head)")
    schedule: str = _setting("onecycle", "learning-rate schedule: onecycle, cosine or constant", choices=("onecycle", "cosine", "constant"))
    loss: str = _setting("bce", "loss: bce, weighted_bce, focal or asl", choices=("bce", "weighted_bce", "focal", "asl"))
    focal_gamma: float = _setting(2.0, "focal loss gamma")
    asl_gamma_neg: float = _setting(4.0, "asymmetric loss gamma for negatives")
    asl_gamma_pos: float = _setting(0.0, "asymmetric loss gamma for positives")
    asl_clip: float = _setting(0.05, "asymmetric loss probability margin for negatives")
    label_smoothing: float = _setting(0.0, "label smoothing towards 0.5")
    mixup: float = _setting(0.0, "mixup alpha (0 = off)")
    augment: str = _setting("basic", "augmentation: none, basic (rotate 20, shift 20%, flip), randaugment or trivialaugment", choices=("none", "basic", "randaugment", "trivialaugment"))
    finetune: bool = _setting(False, "after the head phase, fine-tune the whole pretrained network")
    finetune_epochs: int = _setting(3, "epochs of full fine-tuning when --finetune is given")
    finetune_lr: float = _setting(3e-4, "peak learning rate for fine-tuning")
    patience: int = _setting(5, "early stopping: epochs without a better validation mAP")
    val_fraction: float = _setting(0.2, "validation share split off when no --val file is given")
    threshold_mode: str = _setting("per-label", "thresholds: per-label or global (fitted for F1 on validation), top-k, or fixed (fixed_threshold for every label)", choices=THRESHOLD_MODES)
    fixed_threshold: float = _setting(0.5, "the threshold of every label in fixed mode (0.5 minimises expected Hamming loss)")
    top_k: int = _setting(1, "labels per item in top-k threshold mode")
    min_positives: int = _setting(5, "labels with fewer validation positives use the global threshold")
    ensemble: int = _setting(1, "tabular and text (frozen encoder) models: train this many heads one after another, each holding out its own validation split, and average their probabilities")
    seed: int = _setting(0, "random seed for splits, weights and augmentation")
    num_workers: int = _setting(0, "DataLoader worker processes")
    devices: str = _setting("auto", "Lightning devices (a count or 'auto')")
    accelerator: str = _setting("auto", "Lightning accelerator: auto, cpu, gpu")
    strategy: str = _setting("auto", "Lightning strategy, e.g. ddp")
    num_nodes: int = _setting(1, "machines taking part in distributed training")
    precision: str | None = _setting(None, "Lightning precision; default bf16-mixed where supported, else 32")
    cache_dir: str | None = _setting(None, "folder for decoded-image and feature caches; default RUN/cache")

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict of every setting."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any], *, source: str = "config") -> "TrainConfig":
        """Build from a dict, rejecting unknown keys with a 'did you mean' hint and bad choices."""
        known = {f.name: f for f in fields(cls)}
        for key in values:
            if key not in known:
                hint = difflib.get_close_matches(key, known, n=1)
                raise ConfigError(f"{source}: unknown setting {key!r}" + (f"; did you mean {hint[0]!r}?" if hint else ""))
        config = cls(**values)
        config.validate(source=source)
        return config

    def updated(self, **changes: Any) -> "TrainConfig":
        """A copy with the non-None `changes` applied and validated."""
        merged = self.to_dict()
        merged.update({k: v for k, v in changes.items() if v is not None})
        return TrainConfig.from_dict(merged)

    def validate(self, *, source: str = "config") -> None:
        """Raise ConfigError naming the first setting whose value is out of range."""
        for f in fields(self):
            choices = f.metadata.get("choices")
            value = getattr(self, f.name)
            if choices and value not in choices:
                raise ConfigError(f"{source}: {f.name}={value!r} is not one of {list(choices)}")
        positive = ("epochs", "batch_size", "lr", "num_nodes", "ensemble")
        for name in positive:
            if getattr(self, name) <= 0:
                raise ConfigError(f"{source}: {name} must be > 0, got {getattr(self, name)!r}")
        if not 0.0 < self.val_fraction < 1.0:
            raise ConfigError(f"{source}: val_fraction must be between 0 and 1, got {self.val_fraction}")
        if not 0.0 <= self.fixed_threshold <= 1.0:
            raise ConfigError(f"{source}: fixed_threshold must be in [0, 1], got {self.fixed_threshold}")
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"{source}: dropout must be in [0, 1), got {self.dropout}")


def describe_settings() -> list[tuple[str, str, str, str]]:
    """(name, type, default, meaning) for every TrainConfig setting."""
    rows = []
    for f in fields(TrainConfig):
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        rows.append((f.name, str(f.type), repr(default), f.metadata["help"]))
    return rows


def parse_overrides(pairs: list[str]) -> dict[str, Any]:
    """`KEY=VALUE` strings -> {key: value}, each value converted to its setting's type."""
    known = {f.name: f for f in fields(TrainConfig)}
    values: dict[str, Any] = {}
    for pair in pairs:
        key, sep, text = pair.partition("=")
        key = key.strip().replace("-", "_")
        if not sep:
            raise ConfigError(f"--set {pair!r}: expected KEY=VALUE")
        if key not in known:
            hint = difflib.get_close_matches(key, known, n=1)
            raise ConfigError(f"--set {pair!r}: unknown setting {key!r}" + (f"; did you mean {hint[0]!r}?" if hint else ""))
        default = getattr(TrainConfig(), key)
        try:
            if text.lower() in ("none", "null") and "None" in str(known[key].type):
                values[key] = None
            elif isinstance(default, bool):
                if text.lower() not in ("true", "false", "1", "0", "yes", "no"):
                    raise ValueError(text)
                values[key] = text.lower() in ("true", "1", "yes")
            elif isinstance(default, (int, float)):
                values[key] = type(default)(text)
            elif "int" in str(known[key].type):
                values[key] = int(text)
            else:
                values[key] = text
        except ValueError:
            raise ConfigError(f"--set {pair!r}: {text!r} is not a valid {known[key].type}") from None
    return values


def load_config(path: str | Path) -> TrainConfig:
    """Read a TrainConfig from a JSON file (as written by `tagnet tune` or saved in a run)."""
    path = Path(path)
    try:
        values = json.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path}: not valid JSON ({exc.msg} at line {exc.lineno})") from None
    if not isinstance(values, dict):
        raise ConfigError(f"{path}: expected a JSON object of settings, got {type(values).__name__}")
    return TrainConfig.from_dict(values, source=str(path))
