"""Every setting of every command once: its type, default, meaning and constraint; per-modality defaults declared here."""

from __future__ import annotations

import dataclasses
import difflib
import json
import re
import typing
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from tagnet.errors import ConfigError
from tagnet.decisions.thresholds import IF_EMPTY, MODES as THRESHOLD_MODES, OBJECTIVES, decision_mode, parse_objective

MODALITIES = ("image", "text", "tabular")
RUNTIMES = ("auto", "torch", "onnx")
PRECISIONS = ("64", "32", "16", "bf16", "64-true", "32-true", "16-true", "bf16-true", "16-mixed", "bf16-mixed",
              "transformer-engine", "transformer-engine-float16")
# Bounds on what a user's settings, files and requests can make tagnet allocate.
MAX_IMAGE_SIZE = 4096  # px per side the image cache accepts: 48 MiB per image at this size
MAX_BATCH_SIZE = 65_536
MAX_ENSEMBLE = 100
MAX_LABELS = 100_000  # outputs of one model
MAX_TEXT_CHARS = 10_000  # characters of one text kept before tokenising (its first 256 tokens are used)
MAX_REQUEST_TEXT_CHARS = 200_000  # characters of all the texts of one HTTP request
MAX_HEATMAPS = 64  # label heatmaps (images x labels) of one /explain request
EXPLAIN_PIXELS = 4  # /explain: decoded pixels of all the images of one request, in units of max_pixels
LOGGERS = ("csv", "tensorboard", "mlflow")
TUNE_METRICS = {"mAP": "maximize", "micro_f1": "maximize", "macro_f1": "maximize", "hamming_loss": "minimize"}

# Settings whose default depends on what the model takes; None in TrainConfig means "the modality's default".
MODALITY_DEFAULTS: dict[str, dict[str, Any]] = {
    # Lite0 and Lite2 side by side: 5-fold CV mAP 0.956 on miml-scene vs 0.948 for Lite0 alone (benchmarks/RESULTS.md)
    "image": {"backbone": "efficientnet_lite0+efficientnet_lite2", "head_hidden": 0, "finetune_lr": 3e-4,
              "augment": "basic", "objective": "f1"},
    # a linear head on unit-length sentence embeddings underfits (GoEmotions macro-F1 0.22 vs 0.41); a transformer
    # forgets its pretraining at the image fine-tuning rate. An unset finetune is off for images and tables; for text the
    # recipe is chosen by the data's size and the time budget (tagnet.modalities.text.TextModality.recipe)
    "text": {"backbone": "minilm_l6", "head_hidden": 1024, "finetune_lr": 5e-5, "objective": "f1"},
    # tables are judged on Hamming loss (the MULAN literature's first metric): p >= 0.5 and the head chosen for it
    "tabular": {"backbone": "mlp", "head_hidden": 256, "select": "auto", "objective": "hamming"},
}
# The models of text and tables; image models are any other registered or timm model.
MODALITY_BACKBONES: dict[str, tuple[str, ...]] = {"text": ("minilm_l6",), "tabular": ("mlp",)}
# Settings a modality has no use for: giving one is an error, not silently ignored.
MODALITY_REFUSES: dict[str, tuple[str, ...]] = {
    "image": ("select", "select_metric"),
    "text": ("image_size", "augment", "weights", "select", "select_metric"),
    "tabular": ("image_size", "augment", "weights", "finetune", "finetune_lr"),
}


def _setting(default: Any, help: str, **kw: Any) -> Any:
    """A dataclass field with its meaning (help), and optionally its CLI flag, choices, minimum and maximum, and `multiple`
    (a str setting whose flag may be repeated: the values are joined by commas)."""
    return field(default=default, metadata={"help": help, **kw})


# How fitted thresholds become label sets: settings of both `tagnet train` and `tagnet calibrate`.
_DECISIONS: dict[str, dict[str, Any]] = {
    "objective": dict(default="f1", help=f"what the fitted thresholds optimise: {OBJECTIVES}", flag="--objective"),
    "confidence": dict(default=None, help="with precision>=P or recall>=R: guarantee the target per label with this "
                                          "confidence (e.g. 0.9); labels that cannot be guaranteed are reported",
                       flag="--confidence"),
    "min_labels": dict(default=0, help="every item gets at least this many labels (the most probable ones)",
                       flag="--min-labels", min=0),
    "max_labels": dict(default=None, help="at most this many labels per item (the most probable passing ones)",
                       flag="--max-labels", min=1),
    "if_empty": dict(default="none", help="what an item with no label passing gets: none, or top1 (its most probable "
                                          "label)", flag="--if-empty", choices=IF_EMPTY),
}
DECISION_SETTINGS = tuple(_DECISIONS)


@dataclass
class TrainConfig:
    """Settings of one training run. `tagnet settings` lists them; `--set KEY=VALUE` sets any of them."""

    backbone: str | None = _setting(None, "model name: efficientnet_lite0+efficientnet_lite2 (images: both side by "
                                          "side), minilm_l6 (text), mlp (tables); "
                                          "for images also seed_cnn or any timm model", flag="--backbone")
    pretrained: bool = _setting(True, "start from the backbone's pretrained weights (offline)", flag="--pretrained")
    weights: str | None = _setting(None, "images: a local pretrained weights file for the backbone", flag="--weights")
    image_size: int | None = _setting(None, "images: input size in pixels; default the backbone's own", flag="--image-size", min=1,
                                   max=MAX_IMAGE_SIZE)
    epochs: int = _setting(15, "maximum training epochs of every phase (heads, fine-tuning, the whole network)",
                           flag="--epochs", min=1)
    batch_size: int = _setting(32, "inputs per training batch", flag="--batch-size", min=1, max=MAX_BATCH_SIZE)
    lr: float = _setting(3e-3, "peak learning rate of AdamW", flag="--lr")
    weight_decay: float = _setting(1e-4, "AdamW weight decay", flag="--weight-decay")
    dropout: float = _setting(0.2, "dropout in the label head", flag="--dropout")
    head_hidden: int | None = _setting(None, "width of a hidden layer in the head (0 = linear); default 0 for images, "
                                             "1024 for text, 256 for tables")
    schedule: str = _setting("onecycle", "learning-rate schedule", choices=("onecycle", "cosine", "constant"))
    loss: str = _setting("bce", "loss", flag="--loss", choices=("bce", "weighted_bce", "focal", "asl"))
    focal_gamma: float = _setting(2.0, "focal loss gamma")
    asl_gamma_neg: float = _setting(4.0, "asymmetric loss gamma for negatives")
    asl_gamma_pos: float = _setting(0.0, "asymmetric loss gamma for positives")
    asl_clip: float = _setting(0.05, "asymmetric loss probability margin for negatives")
    label_smoothing: float = _setting(0.0, "label smoothing towards 0.5", flag="--label-smoothing")
    mixup: float = _setting(0.0, "mixup alpha (0 = off)", flag="--mixup")
    augment: str | None = _setting(None, "images: augmentation; basic (rotate 20, shift 20%, flip) by default",
                                   flag="--augment", choices=("none", "basic", "randaugment", "trivialaugment"))
    finetune: bool | None = _setting(None, "after the head, fine-tune the whole pretrained network (kept only if "
                                           "better); --no-finetune: the head only. Default off for images; for text "
                                           "chosen by the data's size and the time budget", flag="--finetune")
    finetune_epochs: int = _setting(3, "epochs of full fine-tuning with --finetune (at most --epochs)", min=1)
    finetune_lr: float | None = _setting(None, "peak learning rate of fine-tuning; default 3e-4 for images, 5e-5 for text")
    patience: int = _setting(5, "early stopping: epochs without a better validation mAP", flag="--patience", min=1)
    val_fraction: float = _setting(0.2, "validation share split off when no --val file is given")
    threshold_mode: str | None = _setting(None, "thresholds: per-label or global (fitted for the objective on validation), "
                                          "top-k, or fixed (fixed_threshold for every label); default follows the "
                                          "objective: fixed (p >= 0.5) for hamming, per-label otherwise",
                                          flag="--threshold-mode", choices=THRESHOLD_MODES)
    fixed_threshold: float = _setting(0.5, "the threshold of every label in fixed mode (0.5 minimises expected Hamming loss)")
    top_k: int = _setting(1, "labels per item in top-k threshold mode", min=1, max=MAX_LABELS)
    min_positives: int = _setting(5, "labels with fewer validation positives use the global threshold", min=0)
    objective: str | None = _setting(**{**_DECISIONS["objective"], "default": None, "help": (
        f"what the thresholds (and --select) optimise: {OBJECTIVES}; default hamming for tables, f1 otherwise")})
    confidence: float | None = _setting(**_DECISIONS["confidence"])
    min_labels: int = _setting(**_DECISIONS["min_labels"])
    max_labels: int | None = _setting(**_DECISIONS["max_labels"])
    if_empty: str = _setting(**_DECISIONS["if_empty"])
    ensemble: int = _setting(1, "heads on a frozen encoder trained one after another, each holding out its own "
                                "validation split, their probabilities averaged", flag="--ensemble", min=1,
                                max=MAX_ENSEMBLE)
    cv: int = _setting(0, "k-fold cross-validation on the training file (0 = off): one head per fold on a frozen "
                          "encoder, the validation report and thresholds out of fold with each fold's spread; the "
                          "model averages the fold heads, so together they learn from every row", flag="--cv", min=0,
                       max=MAX_ENSEMBLE)
    select: str | None = _setting(None, "tables: the head, chosen by k-fold CV on the training file (auto: linear "
                                        "logistic regression, the MLP or an ensemble of 5 MLP heads) or given",
                                  flag="--select", choices=("auto", "mlp", "linear", "ensemble"))
    select_metric: str | None = _setting(None, "tables: what --select auto compares; default the objective's: "
                                               "hamming_loss for hamming (or fixed thresholds), micro_f1 for f1, "
                                               "else mAP", choices=tuple(TUNE_METRICS))
    cv_folds: int = _setting(5, "tables: folds of the cross-validation that --select auto runs", flag="--cv-folds",
                             min=2)
    time_budget: str | None = _setting(None, "wall time training may take, e.g. 300, 90s, 5m, 1h30m: the recipe that fits "
                                             "is chosen and said (e.g. head only, fine-tuning if time is left); "
                                             "default 15m for text's default recipe (fine-tuning sized to fit), "
                                             "else no limit", flag="--time-budget")
    seed: int = _setting(0, "random seed of splits, weights and augmentation", flag="--seed")
    num_workers: int = _setting(0, "DataLoader worker processes", min=0)
    devices: str = _setting("auto", "Lightning devices: a count or auto", flag="--devices")
    accelerator: str = _setting("auto", "Lightning accelerator: auto, cpu, gpu")
    strategy: str = _setting("auto", "Lightning strategy, e.g. ddp", flag="--strategy")
    num_nodes: int = _setting(1, "machines taking part in distributed training", flag="--num-nodes", min=1)
    precision: str | None = _setting(None, "Lightning precision; default bf16-mixed where supported, else 32-true",
                                     flag="--precision", choices=PRECISIONS)
    cache_dir: str | None = _setting(None, "folder for decoded-image, feature and embedding caches; default RUN/cache")
    loggers: str = _setting("", "Lightning loggers besides tagnet's own metrics.csv, comma-separated: csv "
                                "(RUN/logs/csv), tensorboard (RUN/logs/tensorboard), mlflow (mlflow_uri)",
                            flag="--logger", multiple=True)
    mlflow_uri: str | None = _setting(None, "MLflow tracking URI (file:, sqlite:, http:) of --logger mlflow; "
                                            "default the file store RUN/mlruns")

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict of every setting."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any], *, source: str = "config") -> "TrainConfig":
        """Build from a dict, rejecting unknown keys with a 'did you mean' hint and bad values."""
        check_known(values, cls, source=source)
        config = cls(**values)
        config.validate(source=source)
        return config

    def updated(self, **changes: Any) -> "TrainConfig":
        """A copy with the non-None `changes` applied and validated."""
        merged = self.to_dict()
        merged.update({k: v for k, v in changes.items() if v is not None})
        return TrainConfig.from_dict(merged)

    def validate(self, *, source: str = "config") -> None:
        """Raise ConfigError naming the first setting whose value is of the wrong type or out of range."""
        validate_settings(self, source=source)
        if not 0.0 < self.val_fraction < 1.0:
            raise ConfigError(f"{source}: val_fraction must be between 0 and 1, got {self.val_fraction}")
        if not 0.0 <= self.fixed_threshold <= 1.0:
            raise ConfigError(f"{source}: fixed_threshold must be in [0, 1], got {self.fixed_threshold}")
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"{source}: dropout must be in [0, 1), got {self.dropout}")
        if self.time_budget is not None:
            parse_duration(self.time_budget, source=f"{source}: time_budget")
        if self.cv == 1:
            raise ConfigError(f"{source}: cv is 1; expected 0 (off) or at least 2 folds")
        resolved = dataclasses.replace(self, objective=self.objective or "f1")
        validate_decisions(resolved, mode=self.threshold_mode or decision_mode(resolved.objective), source=source)
        unknown = [name for name in self.logger_names() if name not in LOGGERS]
        if unknown:
            raise ConfigError(f"{source}: loggers has {unknown[0]!r}; expected a comma-separated list of "
                              f"{', '.join(LOGGERS)}")
        for name in ("lr", "finetune_lr"):
            if getattr(self, name) is not None and getattr(self, name) <= 0:
                raise ConfigError(f"{source}: {name} must be > 0, got {getattr(self, name)!r}")

    def budget_seconds(self) -> float | None:
        """The time budget in seconds (None: no limit)."""
        return None if self.time_budget is None else parse_duration(self.time_budget)

    def logger_names(self) -> tuple[str, ...]:
        """The loggers setting as names, without blanks and repeats."""
        return tuple(dict.fromkeys(name.strip() for name in self.loggers.split(",") if name.strip()))

    def for_modality(self, modality: str) -> "TrainConfig":
        """These settings with the modality's defaults filled in (MODALITY_DEFAULTS).

        Raises ConfigError for a setting the modality refuses (MODALITY_REFUSES) and for an ensemble with fine-tuning.
        """
        if modality not in MODALITIES:
            raise ConfigError(f"modality {modality!r} is not one of {list(MODALITIES)}")
        given = [name for name in MODALITY_REFUSES[modality] if getattr(self, name) not in (None, False)]
        if given:
            raise ConfigError(f"setting(s) {', '.join(f'{n}={getattr(self, n)!r}' for n in given)} do not apply to "
                              f"{modality} models; remove them")
        if self.cv and self.ensemble not in (1, self.cv):
            raise ConfigError(f"cv={self.cv} with ensemble={self.ensemble}: cross-validation trains one head per fold "
                              "(an ensemble of cv heads); give one of them")
        if self.cv and self.finetune:
            raise ConfigError(f"cv={self.cv} with finetune: cross-validation trains heads on the frozen encoder; "
                              "fine-tune a single model instead")
        if self.ensemble > 1 and self.finetune:
            raise ConfigError(f"ensemble={self.ensemble} with finetune: an ensemble shares one frozen encoder; "
                              "fine-tune a single model (ensemble=1) instead")
        defaults = {name: value for name, value in MODALITY_DEFAULTS[modality].items() if getattr(self, name) is None}
        if self.cv:
            defaults["ensemble"] = self.cv
        if self.objective is None and self.threshold_mode == "top-k":  # top-k optimises nothing: keep it valid
            defaults["objective"] = "f1"
        resolved = dataclasses.replace(self, **defaults)
        if resolved.threshold_mode is None:
            resolved = dataclasses.replace(resolved, threshold_mode=decision_mode(resolved.objective))
        others = {name for kind, names in MODALITY_BACKBONES.items() if kind != modality for name in names}
        if resolved.backbone not in MODALITY_BACKBONES.get(modality, (resolved.backbone,)) or resolved.backbone in others:
            wanted = ", ".join(MODALITY_BACKBONES.get(modality, ("an image model (seed_cnn, efficientnet_lite0, any timm "
                                                                  "model)",)))
            raise ConfigError(f"backbone {resolved.backbone!r} does not take {modality} inputs; expected {wanted}")
        return resolved


_DURATION = re.compile(r"(?:(\d+(?:\.\d+)?)h)?(?:(\d+(?:\.\d+)?)m)?(?:(\d+(?:\.\d+)?)s?)?")


def parse_duration(text: str | int | float, *, source: str = "duration") -> float:
    """Seconds of a duration: a number of seconds, or hours/minutes/seconds such as 90s, 5m, 1h30m, 2.5m.

    Raises ConfigError for anything else or a duration that is not positive."""
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        seconds = float(text)
    else:
        match = _DURATION.fullmatch(str(text).strip().lower()) if str(text).strip() else None
        if match is None or not any(match.groups()):
            raise ConfigError(f"{source} is {text!r}; expected seconds or a duration such as 90s, 5m, 1h30m")
        hours, minutes, rest = (float(part or 0) for part in match.groups())
        seconds = hours * 3600 + minutes * 60 + rest
    if not seconds > 0 or seconds == float("inf"):
        raise ConfigError(f"{source} is {text!r}; expected a positive duration")
    return seconds


def validate_decisions(settings: Any, *, mode: str, source: str = "config") -> None:
    """Raise ConfigError for a bad objective, confidence or label-count rule (of TrainConfig or CalibrateSettings)
    for thresholds of `mode`, before any data is read."""
    goal = parse_objective(settings.objective)
    if (mode == "top-k" and goal.kind != "f1") or (mode == "fixed" and goal.kind not in ("f1", "hamming")):
        raise ConfigError(f"{source}: objective {goal} applies to per-label and global thresholds, not to {mode!r}")
    if settings.confidence is not None and not (0.0 < settings.confidence < 1.0 and mode == "per-label"
                                                and goal.kind in ("precision", "recall")):
        raise ConfigError(f"{source}: confidence={settings.confidence!r}: expected a number in (0, 1) with a "
                          f"precision>=P or recall>=R objective and per-label thresholds (got objective {goal}, "
                          f"mode {mode!r})")
    if settings.max_labels is not None and settings.max_labels < settings.min_labels:
        raise ConfigError(f"{source}: max_labels={settings.max_labels} is below min_labels={settings.min_labels}")


@dataclass
class CalibrateSettings:
    """Settings of `tagnet calibrate`; the decision settings left unset keep the model's."""

    objective: str = _setting(**_DECISIONS["objective"])
    confidence: float | None = _setting(**_DECISIONS["confidence"])
    min_labels: int = _setting(**_DECISIONS["min_labels"])
    max_labels: int | None = _setting(**_DECISIONS["max_labels"])
    if_empty: str = _setting(**_DECISIONS["if_empty"])
    temperature: bool = _setting(True, "also fit per-label temperature scaling of the probabilities", flag="--temperature")


@dataclass
class PredictSettings:
    """Settings of `tagnet predict` (and of the Predictor the API builds)."""

    batch_size: int = _setting(32, "inputs per model call", flag="--batch-size", min=1, max=MAX_BATCH_SIZE)
    runtime: str = _setting("auto", "auto (ONNX Runtime when the artifact has a model.onnx from `tagnet export`), "
                                    "torch or onnx", flag="--runtime", choices=RUNTIMES)


@dataclass
class ServeSettings:
    """Settings of `tagnet serve`."""

    host: str = _setting("127.0.0.1", "address to listen on (0.0.0.0 for every interface)", flag="--host")
    port: int = _setting(8000, "port to listen on", flag="--port", min=0, max=65535)
    runtime: str = _setting("auto", "auto (ONNX Runtime when the artifact has a model.onnx), torch or onnx",
                            flag="--runtime", choices=RUNTIMES)
    batch_size: int = _setting(32, "most inputs per model call", flag="--batch-size", min=1, max=MAX_BATCH_SIZE)
    batch_window_ms: float = _setting(5.0, "how long to wait for more requests to batch with the first",
                                      flag="--batch-window-ms", min=0)
    max_upload_mb: float = _setting(20.0, "largest request body in MB", flag="--max-upload-mb", min=0.001)
    max_items: int = _setting(64, "most images, texts or rows in one request", flag="--max-items", min=1,
                            max=MAX_BATCH_SIZE)
    max_pixels: int = _setting(40_000_000, "most pixels (width x height) of one uploaded image", min=1)


@dataclass
class ExportSettings:
    """Settings of `tagnet export`."""

    format: str = _setting("onnx", "export format", flag="--format", choices=("onnx",))
    opset: int = _setting(18, "ONNX opset version", flag="--opset", min=17)
    quantize: bool = _setting(False, "also write model.int8.onnx (int8 dynamic quantisation)", flag="--quantize")


@dataclass
class TuneSettings:
    """Settings of `tagnet tune`."""

    trials: int = _setting(20, "trials the study should hold in all; a rerun continues it", flag="--trials", min=1)
    timeout: float | None = _setting(None, "start no new trial after this many seconds", flag="--timeout", min=0)
    metric: str = _setting("mAP", "what to optimise on validation (F1 and Hamming loss at the fitted thresholds)",
                           flag="--metric", choices=tuple(TUNE_METRICS))


SETTINGS_CLASSES = (TrainConfig, CalibrateSettings, PredictSettings, ServeSettings, ExportSettings, TuneSettings)


def setting_types(cls: type) -> dict[str, type]:
    """{setting: its Python type, Optional removed} of a settings dataclass."""
    hints = typing.get_type_hints(cls)
    out = {}
    for name, hint in hints.items():
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        out[name] = args[0] if args else hint
    return out


def check_known(values: dict[str, Any], cls: type, *, source: str) -> None:
    """Raise ConfigError for the first key of `values` that is not a setting of `cls`, with a 'did you mean'."""
    known = [f.name for f in fields(cls)]
    for key in values:
        if key not in known:
            hint = difflib.get_close_matches(key, known, n=1)
            raise ConfigError(f"{source}: unknown setting {key!r}" + (f"; did you mean {hint[0]!r}?" if hint else ""))


def validate_settings(settings: Any, *, source: str | None = None, flags: bool = False) -> None:
    """Check every field of a settings dataclass against its type, choices, min and max; raise ConfigError
    (its message starts with `source`, e.g. the config file, when given, and names the CLI flag when `flags`)."""
    types = setting_types(type(settings))
    prefix = f"{source}: " if source else ""
    for f in fields(settings):
        value = getattr(settings, f.name)
        name = f.metadata.get("flag", f.name) if flags else f.name
        if value is None:
            if f.default is not None:
                raise ConfigError(f"{prefix}{name} must be set, got None")
            continue
        wanted = types[f.name]
        fits = isinstance(value, wanted) and not (wanted is not bool and isinstance(value, bool))
        if wanted is float and isinstance(value, int) and not isinstance(value, bool):
            fits = True
        if not fits:
            raise ConfigError(f"{prefix}{name} is {value!r}; expected a {wanted.__name__}")
        choices = f.metadata.get("choices")
        if choices and value not in choices:
            raise ConfigError(f"{prefix}{name} is {value!r}; expected one of {', '.join(choices)}")
        if "min" in f.metadata and value < f.metadata["min"]:
            raise ConfigError(f"{prefix}{name} is {value!r}; expected at least {f.metadata['min']}")
        if "max" in f.metadata and value > f.metadata["max"]:
            raise ConfigError(f"{prefix}{name} is {value!r}; expected at most {f.metadata['max']}")


def describe_settings(cls: type = TrainConfig) -> list[tuple[str, str, str, str]]:
    """(name, type, default, meaning) for every setting of a settings dataclass."""
    types = setting_types(cls)
    return [(f.name, types[f.name].__name__, "per modality" if f.name in MODALITY_DEFAULTS["image"] and f.default is None
             else repr(f.default), f.metadata["help"]) for f in fields(cls)]


def parse_value(name: str, text: str, cls: type = TrainConfig) -> Any:
    """A setting's value from its text, converted to the setting's type; raises ConfigError."""
    wanted = setting_types(cls)[name]
    default = next(f.default for f in fields(cls) if f.name == name)
    if text.lower() in ("none", "null") and default is None:
        return None
    if wanted is bool:
        if text.lower() not in ("true", "false", "1", "0", "yes", "no"):
            raise ConfigError(f"{name}: {text!r} is not a bool (true or false)")
        return text.lower() in ("true", "1", "yes")
    try:
        return wanted(text)
    except ValueError:
        raise ConfigError(f"{name}: {text!r} is not a valid {wanted.__name__}") from None


def parse_overrides(pairs: list[str]) -> dict[str, Any]:
    """`KEY=VALUE` strings -> {key: value}, each value converted to its setting's type."""
    values: dict[str, Any] = {}
    for pair in pairs:
        key, sep, text = pair.partition("=")
        key = key.strip().replace("-", "_")
        if not sep:
            raise ConfigError(f"--set {pair!r}: expected KEY=VALUE")
        check_known({key: None}, TrainConfig, source=f"--set {pair!r}")
        try:
            values[key] = parse_value(key, text)
        except ConfigError as exc:
            raise ConfigError(f"--set {pair!r}: {exc}") from None
    return values


CONFIG_SUFFIXES = (".json", ".yaml", ".yml")


def load_config(path: str | Path) -> TrainConfig:
    """Read a TrainConfig from a JSON or YAML file, chosen by its suffix (.json, .yaml, .yml)."""
    import yaml

    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in CONFIG_SUFFIXES:
        raise ConfigError(f"{path}: config file suffix {path.suffix or 'none'!r}; expected one of "
                          f"{', '.join(CONFIG_SUFFIXES)}")
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    try:
        values = json.loads(text) if suffix == ".json" else yaml.safe_load(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path}: not valid JSON ({exc.msg} at line {exc.lineno})") from None
    except yaml.YAMLError as exc:
        where = getattr(exc, "problem_mark", None)
        raise ConfigError(f"{path}: not valid YAML ({getattr(exc, 'problem', None) or exc}"
                          + (f" at line {where.line + 1})" if where else ")")) from None
    if not isinstance(values, dict):
        raise ConfigError(f"{path}: expected a mapping of settings, got {type(values).__name__}")
    return TrainConfig.from_dict(values, source=str(path))
