"""The Modality bundle: one input kind's reading, fitted state, training inputs and prediction, holding its roles."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Sequence

import numpy as np
import scipy.sparse as sp
import torch
from torch.utils.data import DataLoader, TensorDataset

from tagnet.training.budget import Throughput
from tagnet.config.source import DataSource
from tagnet.config.settings import TrainConfig
from tagnet.data.label_table import LabelTable
from tagnet.errors import ArtifactError, DataError
from tagnet.models import TagnetModel, create_model
from tagnet.modalities.codecs import RequestCodec
from tagnet.modalities.onnx_specs import OnnxSpec
from tagnet.modalities.specs import ModalitySpec

if TYPE_CHECKING:
    from tagnet.inference.predictor import Predictor
    from tagnet.inference.runtime import Spread

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
        sparse = sp.issparse(self.inputs) or sp.issparse(other.inputs)
        inputs = (sp.vstack([sp.csr_matrix(self.inputs), sp.csr_matrix(other.inputs)], format="csr") if sparse
                  else np.concatenate([self.inputs, other.inputs]))
        return LabeledInputs(table, inputs, {**self.skipped, **other.skipped}, self.feature_names, self.encoding)


@dataclass
class HeadInputs:
    """What a head trains on: the frozen encoder's output for every row (N, F), and optionally an augmented copy
    (images: the mirror images' features) that training rows add. Sparse table rows stay a scipy CSR matrix
    (float32), made dense one batch at a time. `earlier_seconds`: time spent on them before they were asked for
    (images: features computed while the images decoded), which the run's phase line adds; `runtime`: what computed
    them in this process (images: tagnet.inference.runtime.fastest_forward's choice; None: read from the cache), which
    the phase line names."""

    values: torch.Tensor | sp.csr_matrix
    augmented: torch.Tensor | None = None
    earlier_seconds: float = 0.0
    runtime: str | None = None

    def array(self, *, dense: bool = False) -> np.ndarray | sp.csr_matrix:
        """The values as NumPy: the CSR matrix of sparse rows (unless `dense`), else an array."""
        if sp.issparse(self.values):
            return self.values.toarray() if dense else self.values
        return self.values.numpy()

    def subset(self, rows: np.ndarray) -> HeadInputs:
        """The rows `rows` (of the values and of the augmented copy); sparse rows stay a CSR matrix."""
        at = np.asarray(rows, dtype=np.int64)
        index = torch.from_numpy(at)
        return HeadInputs(self.values[at] if sp.issparse(self.values) else self.values[index],
                          None if self.augmented is None else self.augmented[index])

    def followed_by(self, other: HeadInputs | None) -> HeadInputs:
        """These rows, then `other`'s (sparse when either is); `self` when `other` is None."""
        if other is None:
            return self
        sparse = sp.issparse(self.values) or sp.issparse(other.values)
        values = (sp.vstack([sp.csr_matrix(self.values), sp.csr_matrix(other.values)], format="csr") if sparse
                  else torch.cat([self.values, other.values]))
        augmented = None if self.augmented is None else torch.cat([self.augmented, other.augmented])
        return HeadInputs(values, augmented)

    def loader(self, table: LabelTable, rows: np.ndarray, *, batch_size: int, train: bool) -> DataLoader:
        """Batches (inputs, targets, known, index) of `rows`, shuffled and with the augmented copy when `train`."""
        if sp.issparse(self.values):
            sparse = SparseRows(self.values[rows], table.targets[rows], table.known[rows])
            return DataLoader(sparse, batch_size=batch_size if train else 1024, shuffle=train, collate_fn=sparse.batch)
        index = torch.from_numpy(np.asarray(rows, dtype=np.int64))
        x, targets, known = self.values[index], table.targets[rows], table.known[rows]
        if train and self.augmented is not None:
            x = torch.cat([x, self.augmented[index]])
            targets, known = np.concatenate([targets, targets]), np.concatenate([known, known])
        dataset = TensorDataset(x, torch.as_tensor(targets, dtype=torch.float32), torch.as_tensor(known, dtype=torch.bool),
                                torch.arange(len(x)))
        return DataLoader(dataset, batch_size=batch_size if train else 1024, shuffle=train)


class SparseRows(torch.utils.data.Dataset):
    """Rows of a CSR matrix with their targets and known-mask, batched as (dense float32 rows, targets, known, index)."""

    def __init__(self, x: sp.csr_matrix, targets: np.ndarray, known: np.ndarray) -> None:
        self.x, self.targets, self.known = x, targets, known

    def __len__(self) -> int:
        return self.x.shape[0]

    def __getitem__(self, i: int) -> int:
        return i

    def batch(self, index: list[int]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """The rows at `index` made dense."""
        at = np.asarray(index, dtype=np.int64)
        return (torch.from_numpy(self.x[at].toarray()), torch.as_tensor(self.targets[at], dtype=torch.float32),
                torch.as_tensor(self.known[at], dtype=torch.bool), torch.from_numpy(at))


class Modality:
    """One kind of input. Subclasses name their roles (spec: the declared facts; codec: serving requests; onnx: the
    export) and fill in the methods marked "per modality"."""

    spec: ClassVar[ModalitySpec]  # what it declares: served page, request key, defaults, refusals, search space
    codec: ClassVar[RequestCodec]  # how a served request (HTTP body, Open Inference Protocol tensor) becomes its inputs
    onnx: ClassVar[OnnxSpec]  # what its ONNX export takes and writes
    mixes_network_inputs: ClassVar[bool] = False  # whether mixup applies when the whole network trains

    @property
    def name(self) -> str:
        """"image", "text" or "tabular" (ModalitySpec.name)."""
        return self.spec.name

    # ---- reading ----
    def read_options(self, options: dict[str, Any]) -> dict[str, Any]:
        """The given (not None/False) read options, checked for this modality; raises ConfigError."""
        return {key: value for key, value in options.items() if value is not None and value is not False}

    def read(self, source: DataSource, *, state: dict[str, Any] | None = None,
             label_names: list[str] | None = None) -> LabeledInputs:
        """A labelled file and its inputs, as `source` (tagnet.config.source.DataSource) says (per modality). `state`
        and `label_names` are a trained model's, when the file is read to evaluate it: its inputs are then read as
        that model takes them."""
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

    # ---- training ----
    def prepare(self, data: LabeledInputs, model: TagnetModel, *, cache_dir: Path,
                encode: bool = False) -> tuple[LabeledInputs, np.ndarray]:
        """Inputs made ready for training (images: decoded into a disk cache); returns (data, rows kept). `encode`: the
        run will need the frozen encoder's outputs of every input, so a modality may compute them meanwhile."""
        return data, np.arange(len(data))

    def frozen(self, config: TrainConfig) -> bool:
        """Whether heads train on a frozen encoder's cached output (before any fine-tuning): not for a backbone the
        modality trains whole (ModalitySpec.scratch_backbones), nor, where it says so, for one not pretrained."""
        return config.backbone not in self.spec.scratch_backbones and \
            (config.pretrained or not self.spec.frozen_needs_pretrained)

    def head_inputs(self, model: TagnetModel, data: LabeledInputs, state: dict[str, Any], *, cache_dir: Path,
                    progress: bool, spread: Spread | None = None) -> HeadInputs:
        """The frozen encoder's output for every row (per modality); `spread`: the run's processes, for a modality
        whose encoder runs across them (images)."""
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
        hook = predictor.model.head.register_forward_pre_hook(lambda module, args: captured.append(args[0].float().cpu()))
        try:
            probs, kept, errors = self.probabilities(predictor, items)
        finally:
            hook.remove()
        features = torch.cat(captured).numpy() if captured else np.zeros((0, predictor.model.num_features), np.float32)
        return probs, features, kept, errors


def check_items(items: Any, *, what: str) -> list:
    """`items` as a list; DataError unless it is a non-string sequence."""
    if isinstance(items, (str, bytes)) or not hasattr(items, "__len__"):
        raise DataError(f"{what}: expected a list of inputs, got {type(items).__name__}")
    return list(items)

