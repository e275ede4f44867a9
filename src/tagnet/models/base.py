"""The model every backbone is wrapped in: backbone features, a multi-label head, preprocessing."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from tagnet.config.settings import MAX_IMAGE_SIZE
from tagnet.errors import ModelError


@dataclass(frozen=True)
class PreprocessConfig:
    """How images must be prepared for a model: square size in pixels, then (x/255 - mean) / std."""

    image_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]

    def to_dict(self) -> dict[str, Any]:
        """Return a JSON-able dict."""
        return {"image_size": self.image_size, "mean": list(self.mean), "std": list(self.std)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PreprocessConfig:
        """Rebuild from `to_dict()` output; raises ModelError naming a missing or bad key."""
        for key in ("image_size", "mean", "std"):
            if key not in data:
                raise ModelError(f"preprocess settings lack the key {key!r}; expected image_size, mean and std")
        size = data["image_size"]
        if not isinstance(size, int) or isinstance(size, bool) or not 1 <= size <= MAX_IMAGE_SIZE:
            raise ModelError(f"preprocess image_size is {size!r}; expected an integer from 1 to {MAX_IMAGE_SIZE}")
        channels = {}
        for key in ("mean", "std"):
            value = data[key]
            if not isinstance(value, (list, tuple)) or len(value) != 3 or not all(isinstance(v, (int, float)) for v in value):
                raise ModelError(f"preprocess {key} is {value!r}; expected three numbers (R, G, B)")
            channels[key] = tuple(float(v) for v in value)
        if min(channels["std"]) <= 0:
            raise ModelError(f"preprocess std is {list(channels['std'])}; expected three positive numbers")
        return cls(image_size=size, mean=channels["mean"], std=channels["std"])


@dataclass
class BackboneBuild:
    """What a registered builder returns: a module mapping images to pooled features, its width, preprocessing."""

    module: nn.Module
    num_features: int
    preprocess: PreprocessConfig | None = None  # image backbones only


def make_head(num_features: int, num_labels: int, *, dropout: float, head_hidden: int) -> nn.Sequential:
    """Return the label head: Dropout + Linear, or Linear-ReLU-Dropout-Linear when head_hidden > 0."""
    if head_hidden > 0:
        return nn.Sequential(
            nn.Linear(num_features, head_hidden), nn.ReLU(inplace=True), nn.Dropout(dropout), nn.Linear(head_hidden, num_labels)
        )
    return nn.Sequential(nn.Dropout(dropout), nn.Linear(num_features, num_labels))


def fold_logit_map(head: nn.Module, slopes: Sequence[float], intercepts: Sequence[float]) -> bool:
    """Make label j's logit z_j of `head` slopes[j] z_j + intercepts[j], in its last Linear (row j and bias j times
    the slope, plus the intercept on the bias), so the model itself, its Predictor and its ONNX graph give the mapped
    probabilities. False, with nothing changed, when `head` does not end in a Linear of one output per slope."""
    last = head[-1] if isinstance(head, nn.Sequential) and len(head) else None
    if not isinstance(last, nn.Linear) or last.out_features != len(slopes):
        return False
    with torch.no_grad():
        slope = torch.as_tensor(slopes, dtype=last.weight.dtype, device=last.weight.device)
        last.weight.mul_(slope[:, None])
        last.bias.mul_(slope).add_(torch.as_tensor(intercepts, dtype=last.bias.dtype, device=last.bias.device))
    return True


class HeadEnsemble(nn.Module):
    """Several label heads trained independently; outputs the logit of their mean probability per label.

    So sigmoid(output), as every loss and predictor applies it, is the ensemble's averaged probability
    (clamped to [PROBABILITY_EPS, 1 - PROBABILITY_EPS]).
    """

    PROBABILITY_EPS = 1e-7

    def __init__(self, members: list[nn.Module]) -> None:
        super().__init__()
        self.members = nn.ModuleList(members)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        mean = torch.stack([torch.sigmoid(member(features).float()) for member in self.members]).mean(0)
        return torch.logit(mean, eps=self.PROBABILITY_EPS)


class GrownHead(nn.Module):
    """A head whose hidden layer or members several labels share (MLP, ensemble), grown by `tagnet train --from`: the
    former head untouched (`base`), a linear head (Dropout, Linear) on the same features for the labels added or
    refitted since (`extra`), and `take`: which of cat(base, extra)'s outputs is each label's logit."""

    def __init__(self, base: nn.Module, extra: nn.Sequential, take: torch.Tensor, *, base_labels: int) -> None:
        super().__init__()
        self.base, self.extra, self.base_labels = base, extra, base_labels
        self.register_buffer("take", torch.as_tensor(take, dtype=torch.int64))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.base(features), self.extra(features)], dim=1).index_select(1, self.take)

    def spec(self) -> dict[str, int]:
        """How many outputs the former head and the linear head have (rebuilt by grow_head)."""
        return {"base_labels": self.base_labels, "extra_labels": self.extra[1].out_features}


def grown_base_spec(spec: dict[str, Any]) -> dict[str, Any]:
    """The architecture spec of a grown model's former head (`spec` itself for a model never grown)."""
    grown = spec.get("grown")
    return spec if grown is None else {**spec, "num_labels": grown["base_labels"]}


def grow_head(model: "TagnetModel", spec: dict[str, Any]) -> None:
    """Give a model rebuilt from grown_base_spec(spec) the GrownHead that `spec` records (weights loaded after)."""
    grown = spec.get("grown")
    if grown is None:
        return
    counts = [grown.get(key) if isinstance(grown, dict) else None for key in ("base_labels", "extra_labels")]
    if not all(isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in counts):
        raise ModelError(f"model grown is {grown!r}; expected {{\"base_labels\": N, \"extra_labels\": M}} (whole numbers)")
    extra = make_head(model.num_features, grown["extra_labels"], dropout=model.dropout, head_hidden=0)
    model.head = GrownHead(model.head, extra, torch.zeros(spec["num_labels"], dtype=torch.int64),
                           base_labels=grown["base_labels"])
    model.num_labels = spec["num_labels"]


def head_members(model: "TagnetModel") -> list[nn.Module]:
    """The heads to train one by one: the members of an ensemble head, or the single head."""
    return list(model.head.members) if isinstance(model.head, HeadEnsemble) else [model.head]


class TagnetModel(nn.Module):
    """A backbone giving pooled features (B, num_features) and a head giving one logit per label.

    Sigmoid is applied outside (in the loss or the predictor), never here.
    """

    def __init__(
        self,
        backbone: nn.Module,
        *,
        name: str,
        num_features: int,
        num_labels: int,
        preprocess: PreprocessConfig | None = None,
        dropout: float = 0.2,
        head_hidden: int = 0,
        input_dim: int | None = None,
        ensemble: int = 1,
    ) -> None:
        super().__init__()
        self.backbone = backbone
        heads = [make_head(num_features, num_labels, dropout=dropout, head_hidden=head_hidden) for _ in range(ensemble)]
        self.head = heads[0] if ensemble == 1 else HeadEnsemble(heads)
        self.name = name
        self.num_features = num_features
        self.num_labels = num_labels
        self.preprocess = preprocess
        self.dropout = dropout
        self.head_hidden = head_hidden
        self.input_dim = input_dim
        self.batch_norm_frozen = False  # fine-tuning sets it: the backbone's batch-norm statistics stay as pretrained

    def train(self, mode: bool = True) -> "TagnetModel":
        """Training mode, except the backbone's batch-norm layers while `batch_norm_frozen` (they keep normalising with
        their pretrained running statistics instead of those of small CPU batches)."""
        super().train(mode)
        if mode and self.batch_norm_frozen:
            for module in self.backbone.modules():
                if isinstance(module, nn.modules.batchnorm._BatchNorm):
                    module.eval()
        return self

    @property
    def spec(self) -> dict[str, Any]:
        """The architecture (without weights); with the modality's fitted state (image size, feature count) it rebuilds it."""
        spec = {"name": self.name, "num_labels": self.num_labels, "dropout": self.dropout, "head_hidden": self.head_hidden}
        head = self.head.base if isinstance(self.head, GrownHead) else self.head
        if isinstance(head, HeadEnsemble):
            spec["ensemble"] = len(head.members)
        if isinstance(self.head, GrownHead):
            spec["grown"] = self.head.spec()
        return {**spec, **getattr(head, "spec", {})}  # a head not made by make_head says what rebuilds it

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Return pooled features (B, num_features) of normalised images (B, 3, H, W)."""
        return self.backbone(x)

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        """Return logits (B, num_labels) from pooled features."""
        return self.head(features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return logits (B, num_labels) of normalised images (B, 3, H, W)."""
        return self.forward_head(self.forward_features(x))


class ProbabilityGraph(nn.Module):
    """What an exported graph computes: optional standardisation of raw rows ((x - mean) / std, NaN -> 0, as
    tagnet.data.feature_table.standardize), the model, then the sigmoid: probabilities out, not logits; under a label
    hierarchy (`up`: each label's parent index, a root's own; `steps`: levels - 1) made consistent as
    tagnet.hierarchy.tree.Tree.consistent makes them."""

    def __init__(self, model: nn.Module, *, mean=None, std=None, up=None, steps: int = 0) -> None:
        super().__init__()
        self.model = model
        self.standardizes = mean is not None
        if self.standardizes:
            self.register_buffer("mean", torch.as_tensor(mean, dtype=torch.float32))
            self.register_buffer("std", torch.as_tensor(std, dtype=torch.float32))
        self.steps = steps if up is not None else 0  # a label hierarchy: each step takes the minimum with the parent's
        if self.steps:
            self.register_buffer("up", torch.as_tensor(up, dtype=torch.int64))

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        if self.standardizes:
            scaled = (inputs - self.mean) / self.std
            inputs = torch.where(torch.isnan(scaled), torch.zeros_like(scaled), scaled)
        probs = torch.sigmoid(self.model(inputs))
        for _ in range(self.steps):  # tagnet.hierarchy.tree.Tree.consistent, inside the graph
            probs = torch.minimum(probs, probs[:, self.up])
        return probs


def set_backbone_trainable(model: TagnetModel, trainable: bool) -> None:
    """Freeze (trainable=False) or unfreeze the backbone's parameters; the head stays trainable."""
    for parameter in model.backbone.parameters():
        parameter.requires_grad_(trainable)
