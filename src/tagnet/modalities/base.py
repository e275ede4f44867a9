"""The Modality protocol: everything that varies by input kind (images, texts, feature rows), and nothing else."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Sequence

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from tagnet.training.budget import Throughput
from tagnet.config.settings import MODALITY_DEFAULTS, TrainConfig
from tagnet.data.label_table import LabelTable
from tagnet.errors import ArtifactError, DataError, RequestError
from tagnet.models import TagnetModel, create_model

if TYPE_CHECKING:
    from tagnet.inference.predictor import Predictor

# (low, high, log scale) of every float setting `tagnet tune` searches; the names are TrainConfig fields.
SEARCH_RANGES: dict[str, tuple[float, float, bool]] = {
    "lr": (1e-4, 3e-2, True),
    "weight_decay": (1e-6, 1e-1, True),
    "dropout": (0.0, 0.5, False),
    "focal_gamma": (0.5, 4.0, False),
    "asl_gamma_neg": (1.0, 6.0, False),
    "asl_gamma_pos": (0.0, 1.5, False),
    "asl_clip": (0.0, 0.2, False),
}


@dataclass
class LabeledInputs:
    """A label table and, row for row, its inputs: image paths (then cached images), texts, or feature rows.

    `inputs` supports len() and indexing by an integer array (a NumPy array, or CachedImages).
    """

    table: LabelTable
    inputs: Any
    skipped: dict[str, str] = field(default_factory=dict)  # inputs that could not be read: source -> reason
    feature_names: list[str] | None = None  # feature tables only
    encoding: dict | None = None  # feature tables: how nominal attributes became numbers (FeatureTable.encoding)

    def __len__(self) -> int:
        return len(self.table)

    def subset(self, rows: np.ndarray) -> LabeledInputs:
        """The rows at `rows`."""
        rows = np.asarray(rows, dtype=np.int64)
        return LabeledInputs(self.table.subset(rows), self.inputs[rows], self.skipped, self.feature_names, self.encoding)

    def followed_by(self, other: LabeledInputs) -> LabeledInputs:
        """These rows, then `other`'s (whose labels must be aligned to these)."""
        table = LabelTable(self.table.items + other.table.items, self.table.label_names,
                           np.concatenate([self.table.targets, other.table.targets]),
                           np.concatenate([self.table.known, other.table.known]), self.table.source_format, {})
        return LabeledInputs(table, np.concatenate([self.inputs, other.inputs]), {**self.skipped, **other.skipped},
                             self.feature_names, self.encoding)


@dataclass
class HeadInputs:
    """What a head trains on: the frozen encoder's output for every row (N, F), and optionally an augmented copy
    (images: the mirror images' features) that training rows add."""

    values: torch.Tensor
    augmented: torch.Tensor | None = None

    def loader(self, table: LabelTable, rows: np.ndarray, *, batch_size: int, train: bool) -> DataLoader:
        """Batches (inputs, targets, known, index) of `rows`, shuffled and with the augmented copy when `train`."""
        index = torch.from_numpy(np.asarray(rows, dtype=np.int64))
        x, targets, known = self.values[index], table.targets[rows], table.known[rows]
        if train and self.augmented is not None:
            x = torch.cat([x, self.augmented[index]])
            targets, known = np.concatenate([targets, targets]), np.concatenate([known, known])
        dataset = TensorDataset(x, torch.as_tensor(targets, dtype=torch.float32), torch.as_tensor(known, dtype=torch.bool),
                                torch.arange(len(x)))
        return DataLoader(dataset, batch_size=batch_size if train else 1024, shuffle=train)


@dataclass
class OnnxGraph:
    """What one modality exports: the module (graph inputs -> probabilities), its input name and dynamic axes, and
    sample batches both as the predictor takes them (`samples`) and as the graph does (`graph_inputs`)."""

    module: nn.Module
    input_name: str
    dynamic_axes: dict[int, Any]
    samples: list[Any]
    graph_inputs: list[torch.Tensor]
    metadata: dict[str, str]


class Modality:
    """One kind of input. Subclasses fill in the class attributes and the methods marked "per modality"."""

    name: ClassVar[str]
    page: ClassVar[str] = "lines.html"  # the served web page
    request_key: ClassVar[str]  # the JSON body's key of the inputs in POST /predict
    head_widths: ClassVar[tuple[int, ...]]  # what `tagnet tune` tries for head_hidden
    search_ranges: ClassVar[dict[str, tuple[float, float, bool]]] = SEARCH_RANGES
    mixes_network_inputs: ClassVar[bool] = False  # whether mixup applies when the whole network trains
    explainable: ClassVar[bool] = False  # Grad-CAM heatmaps
    takes_files: ClassVar[bool] = False  # POST /predict takes uploaded files (multipart) besides JSON
    thumbnails: ClassVar[bool] = False  # the report shows its inputs as pictures
    # a duration: without --finetune/--no-finetune the recipe is chosen to fit this time budget (recipes.choose_by_budget)
    default_budget: ClassVar[str | None] = None
    head_first_up_to: ClassVar[int] = 0  # choose_by_budget: up to this many training inputs a head comes first

    @property
    def defaults(self) -> dict[str, Any]:
        """The settings this modality fills in when they are not given (declared in tagnet.config.settings)."""
        return MODALITY_DEFAULTS[self.name]

    # ---- reading ----
    def read_options(self, options: dict[str, Any]) -> dict[str, Any]:
        """The given (not None/False) read options, checked for this modality; raises ConfigError."""
        return {key: value for key, value in options.items() if value is not None and value is not False}

    def read(self, path: str | Path, *, options: dict[str, Any], images_dir: str | Path | None = None,
             text_column: str | int | None = None, state: dict[str, Any] | None = None,
             label_names: list[str] | None = None) -> LabeledInputs:
        """A labelled file and its inputs (per modality). `state` and `label_names` are a trained model's, when the
        file is read to evaluate it: its inputs are then read as that model takes them."""
        raise NotImplementedError

    # ---- the model and its fitted state ----
    def build_model(self, config: TrainConfig, data: LabeledInputs) -> TagnetModel:
        """A new model for `data` (per modality where the input width matters)."""
        return create_model(config.backbone, num_labels=data.table.num_labels, pretrained=config.pretrained,
                            dropout=config.dropout, head_hidden=config.head_hidden, ensemble=config.ensemble)

    def resolved_config(self, config: TrainConfig, model: TagnetModel) -> TrainConfig:
        """The settings as the run used them (images record the model's input size)."""
        return config

    def fit_state(self, model: TagnetModel, data: LabeledInputs, train_rows: np.ndarray, *,
                  text_column: str | int | None, read_options: dict[str, Any]) -> dict[str, Any]:
        """The JSON-able fitted state the artifact keeps: how an input becomes the model's input (per modality)."""
        raise NotImplementedError

    def rebuild_model(self, spec: dict[str, Any], state: dict[str, Any], *, source: str) -> TagnetModel:
        """The architecture of an artifact, without weights, from its spec and fitted state; raises ArtifactError."""
        return create_model(spec["name"], num_labels=spec["num_labels"], pretrained=False, dropout=spec["dropout"],
                            head_hidden=spec["head_hidden"], ensemble=spec.get("ensemble", 1))

    def check_state(self, state: dict[str, Any], *, source: str) -> None:
        """Raise ArtifactError when a fitted state lacks a key this modality needs."""
        missing = [key for key in self.state_keys if key not in state]
        if missing:
            raise ArtifactError(f"{source}: the {self.name} model's input state lacks {', '.join(missing)}")

    state_keys: ClassVar[tuple[str, ...]] = ()

    def state_from_format_1(self, preprocess: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
        """The fitted state of a format-1 artifact (tagnet 0.1.0), which kept it in `preprocess` and `extra`; the keys
        taken are removed from `extra` (per modality)."""
        raise NotImplementedError

    def labels_info(self, predictor: Predictor) -> dict[str, Any]:
        """What GET /labels says about the inputs beside the labels and thresholds."""
        return {"modality": self.name}

    # ---- training ----
    def prepare(self, data: LabeledInputs, model: TagnetModel, *, cache_dir: Path) -> tuple[LabeledInputs, np.ndarray]:
        """Inputs made ready for training (images: decoded into a disk cache); returns (data, rows kept)."""
        return data, np.arange(len(data))

    def frozen(self, config: TrainConfig) -> bool:
        """Whether heads train on a frozen encoder's cached output (before any fine-tuning)."""
        return True

    def head_inputs(self, model: TagnetModel, data: LabeledInputs, state: dict[str, Any], *, cache_dir: Path,
                    progress: bool) -> HeadInputs:
        """The frozen encoder's output for every row (per modality)."""
        raise NotImplementedError

    def budget_plan(self, config: TrainConfig, model: TagnetModel, data: LabeledInputs, budget: Any, *,
                    cache_dir: Path) -> tuple[TrainConfig, str | None]:
        """Under a time budget: the settings that fit before training starts (e.g. a smaller backbone) and the line
        saying so (None: nothing to say). By default the settings stay."""
        return config, None

    def throughput(self, model: TagnetModel | None, data: LabeledInputs, split: tuple[np.ndarray, np.ndarray],
                   config: TrainConfig) -> Throughput | None:
        """Measured training and inference inputs/s of the whole network on a few of the first split's (training,
        validation) rows: what a time budget sizes fine-tuning by (None: not measurable)."""
        return None

    def network_loaders(self, model: TagnetModel, train: LabeledInputs, val: LabeledInputs,
                        config: TrainConfig) -> tuple[DataLoader, DataLoader]:
        """Loaders for training the whole network on raw inputs (fine-tuning; per modality that has it)."""
        raise NotImplementedError

    def normalization(self, model: TagnetModel) -> tuple[Sequence[float], Sequence[float]] | None:
        """(mean, std) the training module applies to uint8 image batches; None for other inputs."""
        return None

    # ---- prediction ----
    def read_unlabeled(self, paths: Sequence[str | Path], predictor: Predictor) -> tuple[list[str], list, dict[str, str]]:
        """(sources, items, errors) of the inputs in files given to `tagnet predict` (per modality)."""
        raise NotImplementedError

    def default_sources(self, items: Sequence) -> list[str]:
        """Names of in-memory inputs in results: row numbers from 1 unless a modality knows better."""
        return [str(i + 1) for i in range(len(items))]

    def probabilities(self, predictor: Predictor, items: Sequence) -> tuple[np.ndarray, list[int], dict[str, str]]:
        """(probabilities of the readable items, their positions in `items`, {source: reason} of the others)."""
        raise NotImplementedError

    def features(self, predictor: Predictor, items: Sequence) -> tuple[np.ndarray, np.ndarray, list[int], dict[str, str]]:
        """(probabilities, the frozen encoder's output (the head's inputs), positions kept, errors) of `items`, in one
        pass of the predictor's PyTorch model (for modalities whose `probabilities` runs the items in order)."""
        captured: list[torch.Tensor] = []
        hook = predictor.model.head.register_forward_pre_hook(lambda module, args: captured.append(args[0].float()))
        try:
            probs, kept, errors = self.probabilities(predictor, items)
        finally:
            hook.remove()
        features = torch.cat(captured).numpy() if captured else np.zeros((0, predictor.model.num_features), np.float32)
        return probs, features, kept, errors

    def request_items(self, body: Any, predictor: Predictor, *, max_items: int,
                      max_pixels: int) -> tuple[list[str], list]:
        """(sources, items) of a parsed JSON request body {request_key: [...]}; raises RequestError."""
        raise NotImplementedError

    def oip_inputs(self, predictor: Predictor) -> list[dict[str, Any]]:
        """The Open Inference Protocol input tensors the model takes: {name, datatype, shape} (-1 = any), per modality."""
        raise NotImplementedError

    def oip_items(self, name: str, array: np.ndarray, predictor: Predictor, *,
                  max_pixels: int) -> tuple[list[str], list]:
        """(sources, items) of one OIP input tensor `name`, of the datatype and shape oip_inputs declares (BYTES: an
        object array of bytes, or of str from JSON); raises RequestError (per modality)."""
        raise NotImplementedError

    # ---- export ----
    def onnx_graph(self, predictor: Predictor, *, out: Path) -> OnnxGraph:
        """The module, input and sample batches of the ONNX export to `out` (per modality)."""
        raise NotImplementedError


def check_items(items: Any, *, what: str) -> list:
    """`items` as a list; DataError unless it is a non-string sequence."""
    if isinstance(items, (str, bytes)) or not hasattr(items, "__len__"):
        raise DataError(f"{what}: expected a list of inputs, got {type(items).__name__}")
    return list(items)


def bytes_text(value: bytes | str, *, what: str) -> str:
    """One element of a BYTES tensor as text (UTF-8); raises RequestError 400."""
    if isinstance(value, str):
        return value
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        raise RequestError(400, f"{what} is not UTF-8 text") from None
