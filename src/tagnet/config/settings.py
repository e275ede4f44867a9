"""Every setting of every command once: its type, default, meaning and constraint; per-modality defaults declared here."""

from __future__ import annotations

import dataclasses
import difflib
import json
import re
import typing
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Mapping

from tagnet.config.constraints import AnyOf, Checked, CommaList, Interval, Options, Rule, broken_rule
from tagnet.decisions.objectives import confidence_problem, modes_help, objectives_help, parse_objective, targets_help
from tagnet.decisions.shrinkage import SHRINKABLE, parse_shrinkage, shrinkage_problem
from tagnet.decisions.thresholds import IF_EMPTY, decision_mode
from tagnet.decisions.thresholds import MODES as THRESHOLD_MODES
from tagnet.errors import ConfigError
from tagnet.modalities import REGISTRY

MODALITIES = tuple(REGISTRY)
RUNTIMES = ("auto", "torch", "onnx", "openvino")  # a Predictor's (tagnet.inference.runtime.graph_runtimes)
RUNTIME_HELP = ("auto (the model.onnx of `tagnet export` on ONNX Runtime, else PyTorch; TAGNET_RUNTIME may name "
                "another), torch, onnx (ONNX Runtime) or openvino (OpenVINO where it agrees with ONNX Runtime on the "
                "first batch)")
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

# Per-modality facts, declared once per modality in tagnet.modalities.specs; these are views of those declarations.
# Settings whose default depends on what the model takes; None in TrainConfig means "the modality's default".
MODALITY_DEFAULTS: dict[str, Mapping[str, Any]] = {name: spec.defaults for name, spec in REGISTRY.items()}
# The models of text and tables; image models are any other registered or timm model.
MODALITY_BACKBONES: dict[str, tuple[str, ...]] = {name: spec.backbones for name, spec in REGISTRY.items() if spec.backbones}
# Settings a modality has no use for: giving one is an error, not silently ignored.
MODALITY_REFUSES: dict[str, tuple[str, ...]] = {name: spec.refuses for name, spec in REGISTRY.items()}


def _setting(default: Any, help: str, constraint: Any = None, **kw: Any) -> Any:
    """A dataclass field with its meaning (help), its declared constraint (tagnet.config.constraints: Interval,
    Options, ...; None: its type only), and optionally its CLI `flag` and `multiple` (a str setting whose flag may be
    repeated: the values are joined by commas). An Options constraint's values are also its `choices`."""
    choices = {"choices": constraint.values} if isinstance(constraint, Options) else {}
    return field(default=default, metadata={"help": help, "constraint": constraint, **choices, **kw})


def _objective(value: Any, *, source: str) -> None:
    parse_objective(value)


def _duration(value: Any, *, source: str) -> None:
    parse_duration(value, source=source)


POSITIVE = Interval(0, None, closed="neither")
AT_LEAST_0 = Interval(0, None)
AT_LEAST_1 = Interval(1, None)
SHARE = Interval(0, 1, closed="left")  # [0, 1): dropout, label smoothing, a probability margin


# How fitted thresholds become label sets: settings of both `tagnet train` and `tagnet calibrate`.
_DECISIONS: dict[str, dict[str, Any]] = {
    "objective": dict(default="f1", help=f"what the fitted thresholds optimise: {objectives_help()}",
                      flag="--objective", constraint=Checked(_objective, objectives_help())),
    "confidence": dict(default=None, help=f"with {targets_help()}: guarantee the target per label with this "
                                          "confidence (e.g. 0.9); labels that cannot be guaranteed are reported",
                       flag="--confidence"),
    "min_labels": dict(default=0, help="every item gets at least this many labels (the most probable ones)",
                       flag="--min-labels", constraint=AT_LEAST_0),
    "max_labels": dict(default=None, help="at most this many labels per item (the most probable passing ones)",
                       flag="--max-labels", constraint=AT_LEAST_1),
    "if_empty": dict(default="none", help="what an item with no label passing gets: none, or top1 (its most probable "
                                          "label)", flag="--if-empty", constraint=Options(IF_EMPTY)),
    "threshold_shrinkage": dict(default=None, help="per-label f1/fbeta thresholds pulled toward the global one by each "
                                "label's positive count n: (n t + m t_global) / (n + m); m a number >= 0 or auto "
                                "(chosen by cross-fitting on the validation rows for the mean of micro- and macro-F); "
                                "none: per-label as fitted",
                                constraint=Checked(parse_shrinkage, "a number >= 0 or auto")),
}
DECISION_SETTINGS = tuple(_DECISIONS)

# How work is spread over processes and machines (Lightning): settings of `tagnet train` and `tagnet predict`.
_PROCESSES: dict[str, dict[str, Any]] = {
    "devices": dict(default="auto", help="Lightning devices: a count or auto", flag="--devices"),
    "strategy": dict(default="auto", help="Lightning strategy, e.g. ddp", flag="--strategy"),
    "num_nodes": dict(default=1, help="machines taking part in distributed training", flag="--num-nodes",
                      constraint=AT_LEAST_1),
}


@dataclass
class TrainConfig:
    """Settings of one training run. `tagnet settings` lists them; `--set KEY=VALUE` sets any of them."""

    backbone: str | None = _setting(None, "model name: efficientnet_lite0+efficientnet_lite1+efficientnet_lite2 "
                                          "(images: the three side by side), minilm_l6 (text), mlp (tables); "
                                          "for images also seed_cnn or any timm model", flag="--backbone")
    pretrained: bool = _setting(True, "start from the backbone's pretrained weights (offline)", flag="--pretrained")
    weights: str | None = _setting(None, "images: a local pretrained weights file for the backbone", flag="--weights")
    image_size: int | None = _setting(None, "images: input size in pixels; default the backbone's own", flag="--image-size",
                                   constraint=Interval(1, MAX_IMAGE_SIZE))
    epochs: int = _setting(15, "maximum training epochs of every phase (heads, fine-tuning, the whole network)",
                           flag="--epochs", constraint=AT_LEAST_1)
    batch_size: int = _setting(32, "inputs per training batch", flag="--batch-size",
                               constraint=Interval(1, MAX_BATCH_SIZE))
    lr: float = _setting(3e-3, "peak learning rate of AdamW", flag="--lr", constraint=POSITIVE)
    weight_decay: float = _setting(1e-4, "AdamW weight decay", flag="--weight-decay",
                                   constraint=AT_LEAST_0)
    dropout: float = _setting(0.2, "dropout in the label head", flag="--dropout", constraint=SHARE)
    head_hidden: int | None = _setting(None, "width of a hidden layer in the head (0 = linear); default 0 for images, "
                                             "1024 for text, 256 for tables", constraint=AT_LEAST_0)
    schedule: str = _setting("onecycle", "learning-rate schedule", constraint=Options(("onecycle", "cosine", "constant")))
    loss: str | None = _setting(None, "loss; auto: bce, weighted_bce or asl, whichever a short probe of heads on the "
                                      "frozen encoder scores best on the early-stopping rows (validation mAP); "
                                      "default bce for images and tables, auto for text", flag="--loss",
                                constraint=Options(("bce", "weighted_bce", "focal", "asl", "auto")))
    focal_gamma: float = _setting(2.0, "focal loss gamma", constraint=AT_LEAST_0)
    asl_gamma_neg: float = _setting(4.0, "asymmetric loss gamma for negatives", constraint=AT_LEAST_0)
    asl_gamma_pos: float = _setting(0.0, "asymmetric loss gamma for positives", constraint=AT_LEAST_0)
    asl_clip: float = _setting(0.05, "asymmetric loss probability margin for negatives",
                              constraint=SHARE)
    label_smoothing: float | None = _setting(None, "label smoothing towards 0.5; unset: 0, or for an image head "
                                                   "chosen by its k-fold CV (--label-smoothing-cv)",
                                             flag="--label-smoothing", constraint=SHARE)
    label_smoothing_cv: bool = _setting(True, "an image head without --label-smoothing: choose it, 0 or 0.1, by the "
                                              "k-fold CV that chooses its epochs (photos: micro-F1 +0.004), its "
                                              "probabilities re-spread by per-label temperatures fitted out of fold",
                                        flag="--label-smoothing-cv")
    mixup: float = _setting(0.0, "mixup alpha (0 = off)", flag="--mixup", constraint=AT_LEAST_0)
    augment: str | None = _setting(None, "images: augmentation; basic (rotate 20, shift 20%, flip) by default",
                                   flag="--augment", constraint=Options(("none", "basic", "randaugment", "trivialaugment")))
    finetune: bool | None = _setting(None, "after the head, fine-tune the whole pretrained network (kept only if "
                                           "better); --no-finetune: the head only. Default off for images; for text "
                                           "chosen by the data's size and the time budget", flag="--finetune")
    finetune_epochs: int = _setting(3, "epochs of full fine-tuning with --finetune (at most --epochs)",
                                    constraint=AT_LEAST_1)
    finetune_lr: float | None = _setting(None, "peak learning rate of fine-tuning; default 3e-4 for images, 5e-5 for text",
                                        constraint=POSITIVE)
    finetune_frozen_layers: int = _setting(0, "text: the encoder's lowest N transformer layers (and its embedding "
                                               "block) stay fixed while the rest fine-tunes, so a step skips their "
                                               "backward", constraint=AT_LEAST_0)
    patience: int = _setting(5, "early stopping: epochs without a better validation mAP", flag="--patience",
                            constraint=AT_LEAST_1)
    val_fraction: float = _setting(0.2, "validation share split off when no --val file is given",
                                  constraint=Interval(0, 1, closed="neither"))
    threshold_share: float | None = _setting(None, "share of the held-out rows kept apart for the thresholds: the "
                                                   "rest choose the epoch (and the loss, and whether fine-tuning is "
                                                   "kept), so thresholds never see rows that chose the epoch; 0: both "
                                                   "on the same rows; default 0.7 for text, 0 for images and "
                                                   "tables",
                                             constraint=SHARE)
    threshold_mode: str | None = _setting(None, "thresholds: per-label or global (fitted for the objective on validation), "
                                          "top-k, or fixed (fixed_threshold for every label); default follows the "
                                          "objective: fixed (p >= 0.5) for hamming, per-label otherwise",
                                          flag="--threshold-mode", constraint=Options(THRESHOLD_MODES))
    fixed_threshold: float = _setting(0.5, "the threshold of every label in fixed mode (0.5 minimises expected Hamming loss)",
                                     constraint=Interval(0, 1))
    top_k: int = _setting(1, "labels per item in top-k threshold mode", constraint=Interval(1, MAX_LABELS))
    min_positives: int = _setting(5, "labels with fewer validation positives use the global threshold",
                                 constraint=AT_LEAST_0)
    objective: str | None = _setting(**{**_DECISIONS["objective"], "default": None, "help": (
        f"what the thresholds (and --select) optimise: {objectives_help()}; default hamming for tables, f1 otherwise")})
    confidence: float | None = _setting(**_DECISIONS["confidence"])
    min_labels: int = _setting(**_DECISIONS["min_labels"])
    max_labels: int | None = _setting(**_DECISIONS["max_labels"])
    if_empty: str = _setting(**_DECISIONS["if_empty"])
    threshold_shrinkage: str | None = _setting(**_DECISIONS["threshold_shrinkage"])
    ensemble: int = _setting(1, "heads on a frozen encoder trained one after another, each holding out its own "
                                "validation split, their probabilities averaged", flag="--ensemble",
                                constraint=Interval(1, MAX_ENSEMBLE))
    cv: int = _setting(0, "k-fold cross-validation on the training file (0 = off): one head per fold on a frozen "
                          "encoder, the validation report and thresholds out of fold with each fold's spread; the "
                          "model averages the fold heads, so together they learn from every row", flag="--cv",
                   constraint=AnyOf((Options((0,)), Interval(2, MAX_ENSEMBLE)), f"0 (off) or 2 to {MAX_ENSEMBLE} folds"))
    select: str | None = _setting(None, "tables: the head, chosen by k-fold CV on the training file (auto: linear "
                                        "logistic regression, the MLP, an ensemble of 5 MLP heads, the random "
                                        "forest or the gradient-boosted trees) or given",
                                  flag="--select",
                                  constraint=Options(("auto", "mlp", "linear", "ensemble", "forest", "boosted")))
    select_metric: str | None = _setting(None, "tables: what --select auto compares; default the objective's: "
                                               "hamming_loss for hamming (or fixed thresholds), micro_f1 for f1, "
                                               "else mAP", constraint=Options(tuple(TUNE_METRICS)))
    cv_folds: int = _setting(5, "folds of the cross-validation that --select auto (tables) and --refit run",
                             flag="--cv-folds", constraint=Interval(2, None))
    forest_trees: int = _setting(100, "tables: trees of the random-forest candidate of --select auto (one "
                                      "multi-output forest for every label, exported as ONNX-ML trees); 0 leaves "
                                      "it out", flag="--forest-trees", constraint=AT_LEAST_0)
    boosted_rounds: int = _setting(100, "tables: boosting rounds of the gradient-boosted-trees candidate of --select "
                                        "auto (scikit-learn HistGradientBoostingClassifier per label: learning rate "
                                        "0.1, 15 leaves, half the features per split; every label's trees in one "
                                        "ONNX-ML graph); 0 leaves it out", flag="--boosted-rounds",
                                   constraint=AT_LEAST_0)
    refit_seeds: int = _setting(5, "a refitted head of one Linear layer (an image head): the mean of the weights of "
                                   "this many fits from seeds seed, seed+1, ..., one linear head whose logits are "
                                   "their mean, with less of one seed's noise (photos: micro-F1 +0.003 by nested "
                                   "CV); 1: one fit", constraint=Interval(1, MAX_ENSEMBLE))
    refit: bool | None = _setting(None, "the final head trained on every row of the training file, its epochs (or C) "
                                        "and thresholds chosen by cv_folds-fold CV, the validation report out of "
                                        "fold; default on for a head on the frozen encoder of images and tables "
                                        "without a --val file, --cv, fine-tuning or an image --ensemble; --no-refit: "
                                        "the head holds out val_fraction of the rows", flag="--refit")
    time_budget: str | None = _setting(None, "wall time training may take, e.g. 300, 90s, 5m, 1h30m: the recipe that fits "
                                             "is chosen and said (e.g. head only, fine-tuning if time is left); "
                                             "default 15m for text's default recipe (fine-tuning sized to fit), "
                                             "else no limit", flag="--time-budget",
                                   constraint=Checked(_duration, "seconds or a duration such as 90s, 5m, 1h30m"))
    dp_epsilon: float | None = _setting(None, "train the head with differentially private SGD (Opacus) to this "
                                              "privacy budget ε (e.g. 8); the frozen encoder stays public, the head "
                                              "trains a fixed number of epochs, thresholds default to p >= 0.5",
                                        flag="--dp-epsilon", constraint=POSITIVE)
    dp_delta: float | None = _setting(None, "with --dp-epsilon: the privacy parameter δ; default 1/n for n training "
                                            "rows", flag="--dp-delta", constraint=Interval(0, 1, closed="neither"))
    dp_public_val: bool = _setting(False, "with --dp-epsilon: the --val file is public data, so thresholds may be "
                                          "fitted (and metrics reported) on it outside the privacy budget",
                                   flag="--dp-public-val")
    dp_max_grad_norm: float = _setting(1.0, "with --dp-epsilon: the norm each row's gradient is clipped to",
                                       constraint=POSITIVE)
    dp_batch_size: int = _setting(256, "with --dp-epsilon: the expected size of DP-SGD's Poisson batches (large "
                                       "batches: less noise per row)", constraint=Interval(1, MAX_BATCH_SIZE))
    dp_epochs: int = _setting(30, "with --dp-epsilon: the epochs DP-SGD trains (fixed: early stopping would read the "
                                  "private validation rows)", constraint=AT_LEAST_1)
    dp_lr: float = _setting(1e-2, "with --dp-epsilon: peak learning rate of DP-SGD's AdamW (clipped, noisy gradients "
                                  "take larger steps than the head's lr)", constraint=POSITIVE)
    seed: int = _setting(0, "random seed of splits, weights and augmentation", flag="--seed")
    num_workers: int = _setting(0, "DataLoader worker processes", constraint=AT_LEAST_0)
    devices: str = _setting(**_PROCESSES["devices"])
    accelerator: str = _setting("auto", "Lightning accelerator: auto, cpu, gpu")
    strategy: str = _setting(**_PROCESSES["strategy"])
    num_nodes: int = _setting(**_PROCESSES["num_nodes"])
    precision: str | None = _setting(None, "Lightning precision; default bf16-mixed where supported, else 32-true",
                                     flag="--precision", constraint=Options(PRECISIONS))
    cache_dir: str | None = _setting(None, "folder for decoded-image, feature and embedding caches; default RUN/cache")
    hierarchy: str | None = _setting(None, "a label hierarchy: a file of paths (animal/dog, one per line) or a YAML tree "
                                           "(.yaml, .yml); training adds each label's ancestors to the targets and "
                                           "predictions stay consistent (a label only with its parent)",
                                     flag="--hierarchy")
    hierarchy_separator: str | None = _setting(None, "what separates a hierarchy path's parts: in the --hierarchy file "
                                                     "(default /), or, without a file, in the label names themselves "
                                                     "(animal/dog is dog under animal)", flag="--hierarchy-separator")
    loggers: str = _setting("", "Lightning loggers besides tagnet's own metrics.csv, comma-separated: csv "
                                "(RUN/logs/csv), tensorboard (RUN/logs/tensorboard), mlflow (mlflow_uri)",
                            flag="--logger", multiple=True, constraint=CommaList(LOGGERS))
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
        """Raise ConfigError naming the first setting whose value is of the wrong type or breaks its declared
        constraint, or the first rule between settings (TRAIN_RULES) they break."""
        validate_settings(self, source=source)
        message = broken_rule(self, TRAIN_RULES)
        if message:
            raise ConfigError(f"{source}: {message}")

    def budget_seconds(self) -> float | None:
        """The time budget in seconds (None: no limit)."""
        return None if self.time_budget is None else parse_duration(self.time_budget)

    def logger_names(self) -> tuple[str, ...]:
        """The loggers setting as names, without blanks and repeats."""
        return tuple(dict.fromkeys(name.strip() for name in self.loggers.split(",") if name.strip()))

    def for_modality(self, modality: str) -> "TrainConfig":
        """These settings with the modality's defaults filled in (MODALITY_DEFAULTS).

        Raises ConfigError for a setting the modality refuses (MODALITY_REFUSES) and for settings that break a rule
        between them (TRAIN_RULES), e.g. an ensemble with fine-tuning.
        """
        if modality not in MODALITIES:
            raise ConfigError(f"modality {modality!r} is not one of {list(MODALITIES)}")
        given = [name for name in MODALITY_REFUSES[modality] if getattr(self, name) not in (None, False)]
        if given:
            raise ConfigError(f"setting(s) {', '.join(f'{n}={getattr(self, n)!r}' for n in given)} do not apply to "
                              f"{modality} models; remove them")
        message = broken_rule(self, TRAIN_RULES)
        if message:
            raise ConfigError(message)
        defaults = {name: value for name, value in MODALITY_DEFAULTS[modality].items() if getattr(self, name) is None}
        if self.cv:
            defaults["ensemble"] = self.cv
        if self.dp_epsilon is not None:  # DP-SGD trains the configured head only, on the frozen encoder
            defaults.pop("select", None)
            defaults["finetune"] = False if self.finetune is None else self.finetune
            if defaults.get("loss") == "auto":  # the loss probe would train heads on the private rows outside DP-SGD
                defaults["loss"] = "bce"
        if self.objective is None and self.threshold_mode == "top-k":  # top-k optimises nothing: keep it valid
            defaults["objective"] = "f1"
        resolved = dataclasses.replace(self, **defaults)
        if resolved.threshold_mode is None:
            resolved = dataclasses.replace(resolved, threshold_mode=_default_mode(resolved))
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


def _mode(settings: Any) -> str:
    """The threshold mode of unresolved settings: the given one, else the objective's (f1's when unset)."""
    return settings.threshold_mode or decision_mode(settings.objective or "f1")


def _default_mode(settings: Any) -> str:
    """The threshold mode when none is given: the objective's; with --dp-epsilon and no public --val file p >= 0.5
    where the objective allows it (fitting thresholds on private validation rows is outside the privacy budget)."""
    private = settings.dp_epsilon is not None and not settings.dp_public_val
    if private and "fixed" in parse_objective(settings.objective or "f1").modes:
        return "fixed"
    return decision_mode(settings.objective or "f1")


def _dp_conflict(c: Any) -> str | None:
    """The first setting that does not go with DP-SGD (dp_epsilon), or a dp_ setting given without it."""
    if c.dp_epsilon is None:
        given = [f"{name}={getattr(c, name)!r}" for name in ("dp_delta", "dp_public_val") if getattr(c, name)]
        return f"{given[0]} without dp_epsilon: give --dp-epsilon to train privately" if given else None
    why = {"cv": (c.cv, "cross-validation trains one head per fold on the same rows, each spending the budget"),
           "ensemble": (c.ensemble > 1 and c.ensemble, "every head of an ensemble spends the budget on the same rows"),
           "select": (c.select, "the head's choice by k-fold CV reads the private rows outside the budget"),
           "mixup": (c.mixup, "mixing rows makes one row's gradient depend on another's, which per-row clipping "
                              "cannot bound"),
           "loss": (c.loss == "weighted_bce" and c.loss, "its label weights are counted on the private rows")}
    for name, (value, reason) in why.items():
        if value:
            fix = "choose another loss" if name == "loss" else f"leave {name} out"
            return f"{name}={value!r} with dp_epsilon={c.dp_epsilon!r}: {reason}; {fix}"
    return None


def _objective_fits_mode(settings: Any) -> str | None:
    goal, mode = parse_objective(settings.objective or "f1"), _mode(settings)
    if mode in ("top-k", "fixed") and mode not in goal.modes:
        return f"objective {goal} applies to per-label and global thresholds, not to {mode!r}"
    return None


def _shrinkage_fits(settings: Any) -> str | None:
    return shrinkage_problem(settings.threshold_shrinkage, parse_objective(settings.objective or "f1"),
                             _mode(settings), settings.confidence)


def _confidence_guards_a_target(settings: Any) -> str | None:
    return confidence_problem(parse_objective(settings.objective or "f1"), _mode(settings), settings.confidence)


def _named_trees_fit(settings: Any) -> str | None:
    if settings.select not in ("forest", "boosted"):
        return None
    size = "forest_trees" if settings.select == "forest" else "boosted_rounds"
    if not getattr(settings, size):
        return f"select {settings.select} with {size}=0: give its size, or another select"
    if settings.ensemble != 1 or settings.cv or settings.hierarchy or settings.hierarchy_separator:
        return (f"select {settings.select} trains one tree head, without ensemble, cv or a label hierarchy (its graph "
                "does not apply the hierarchy's rule); give one of them")
    return None


# Rules between settings, in one place: validate() and for_modality() check them, `tagnet settings` lists them.
# (Rules that need the data or the model, e.g. cv with a --val file, are checked where those are known: the trainer.)
TRAIN_RULES = (
    Rule("cv > 0 trains one head per fold: ensemble is 1 or cv", lambda c: (
        f"cv={c.cv} with ensemble={c.ensemble}: cross-validation trains one head per fold (an ensemble of cv heads); "
        "give one of them") if c.cv and c.ensemble not in (1, c.cv) else None),
    Rule("cv > 0 trains heads on the frozen encoder: no finetune", lambda c: (
        f"cv={c.cv} with finetune: cross-validation trains heads on the frozen encoder; fine-tune a single model "
        "instead") if c.cv and c.finetune else None),
    Rule("refit trains a head on the frozen encoder on every row: no cv, no finetune", lambda c: (
        f"refit with {'cv=' + str(c.cv) if c.cv else 'finetune'}: refit trains one head on every row of the training "
        "file (fine-tuning and --cv keep validation splits); give one of them") if c.refit and (c.cv or c.finetune)
        else None),
    Rule("ensemble > 1 shares one frozen encoder: no finetune", lambda c: (
        f"ensemble={c.ensemble} with finetune: an ensemble shares one frozen encoder; fine-tune a single model "
        "(ensemble=1) instead") if c.ensemble > 1 and c.finetune else None),
    Rule(f"top-k thresholds optimise {modes_help('top-k')} only; fixed ones {modes_help('fixed')}", _objective_fits_mode),
    Rule(f"confidence in (0, 1) only with a {targets_help()} objective and per-label thresholds",
         _confidence_guards_a_target),
    Rule(f"threshold_shrinkage only with per-label thresholds of {' or '.join(SHRINKABLE)}", _shrinkage_fits),
    Rule("dp_epsilon trains one head (cv 0, ensemble 1, no select, no mixup, not weighted_bce); dp_delta and "
         "dp_public_val only with dp_epsilon", _dp_conflict),
    Rule("select forest or boosted: one tree head (its size > 0, ensemble 1, cv 0, no hierarchy)", _named_trees_fit),
    Rule("max_labels >= min_labels", lambda c: (
        f"max_labels={c.max_labels} is below min_labels={c.min_labels}")
        if c.max_labels is not None and c.max_labels < c.min_labels else None),
)


@dataclass
class CalibrateSettings:
    """Settings of `tagnet calibrate`; the decision settings left unset keep the model's."""

    objective: str = _setting(**_DECISIONS["objective"])
    confidence: float | None = _setting(**_DECISIONS["confidence"])
    min_labels: int = _setting(**_DECISIONS["min_labels"])
    max_labels: int | None = _setting(**_DECISIONS["max_labels"])
    if_empty: str = _setting(**_DECISIONS["if_empty"])
    threshold_shrinkage: str | None = _setting(**_DECISIONS["threshold_shrinkage"])
    temperature: bool = _setting(True, "also fit per-label temperature scaling of the probabilities", flag="--temperature")


@dataclass
class PredictSettings:
    """Settings of `tagnet predict` (and of the Predictor the API builds)."""

    batch_size: int = _setting(32, "inputs per model call", flag="--batch-size",
                               constraint=Interval(1, MAX_BATCH_SIZE))
    runtime: str = _setting("auto", RUNTIME_HELP, flag="--runtime", constraint=Options(RUNTIMES))
    devices: str = _setting(**{**_PROCESSES["devices"], "help": "Lightning devices (a count or auto) sharing a "
                                                                 "streamed --output with --strategy ddp"})
    strategy: str = _setting(**{**_PROCESSES["strategy"], "help": "auto (one process) or ddp (--devices processes "
                                                                   "per machine, rank 0 writes --output)"})
    num_nodes: int = _setting(**{**_PROCESSES["num_nodes"], "help": "machines taking part in a ddp prediction"})


@dataclass
class ServeSettings:
    """Settings of `tagnet serve`."""

    host: str = _setting("127.0.0.1", "address to listen on (0.0.0.0 for every interface)", flag="--host")
    port: int = _setting(8000, "port to listen on", flag="--port", constraint=Interval(0, 65535))
    runtime: str = _setting("auto", RUNTIME_HELP, flag="--runtime", constraint=Options(RUNTIMES))
    batch_size: int = _setting(32, "most inputs per model call", flag="--batch-size",
                               constraint=Interval(1, MAX_BATCH_SIZE))
    batch_window_ms: float = _setting(5.0, "how long to wait for more requests to batch with the first",
                                      flag="--batch-window-ms", constraint=AT_LEAST_0)
    max_upload_mb: float = _setting(20.0, "largest request body in MB", flag="--max-upload-mb",
                                    constraint=Interval(0.001, None))
    max_items: int = _setting(64, "most images, texts or rows in one request", flag="--max-items",
                            constraint=Interval(1, MAX_BATCH_SIZE))
    max_pixels: int = _setting(40_000_000, "most pixels (width x height) of one uploaded image",
                                  constraint=AT_LEAST_1)


@dataclass
class ExportSettings:
    """Settings of `tagnet export`."""

    format: str = _setting("onnx", "export format", flag="--format", constraint=Options(("onnx",)))
    opset: int = _setting(18, "ONNX opset version", flag="--opset", constraint=Interval(17, None))
    quantize: bool = _setting(False, "also write model.int8.onnx (int8 dynamic quantisation)", flag="--quantize")


@dataclass
class TuneSettings:
    """Settings of `tagnet tune`."""

    trials: int = _setting(20, "trials the study should hold in all; a rerun continues it", flag="--trials",
                         constraint=AT_LEAST_1)
    timeout: float | None = _setting(None, "start no new trial after this many seconds", flag="--timeout",
                                    constraint=POSITIVE)
    metric: str = _setting("mAP", "what to optimise on validation (F1 and Hamming loss at the fitted thresholds)",
                           flag="--metric", constraint=Options(tuple(TUNE_METRICS)))


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


def validate_settings(settings: Any, *, source: str | None = None, flags: bool = False,
                      names: tuple[str, ...] | None = None) -> None:
    """Check every field (or those in `names`) of a settings dataclass against its type and declared constraint;
    raise ConfigError "{name} is {value!r}; expected ..." (after `source`, e.g. the config file, when given; naming
    the CLI flag when `flags`)."""
    types = setting_types(type(settings))
    prefix = f"{source}: " if source else ""
    for f in fields(settings):
        if names is not None and f.name not in names:
            continue
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
        constraint = f.metadata.get("constraint")
        try:
            message = constraint.check(name, value) if constraint is not None else None
        except ConfigError as exc:
            raise ConfigError(f"{prefix}{exc}") from None
        if message:
            raise ConfigError(prefix + message)


def describe_settings(cls: type = TrainConfig) -> list[tuple[str, str, str, str, str]]:
    """(name, type, default, constraint, meaning) for every setting of a settings dataclass."""
    types = setting_types(cls)
    return [(f.name, types[f.name].__name__, "per modality" if f.name in MODALITY_DEFAULTS["image"] and f.default is None
             else repr(f.default), str(f.metadata.get("constraint") or ""), f.metadata["help"]) for f in fields(cls)]


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
