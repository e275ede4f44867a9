"""Any timm model as a backbone: pooled features, preprocessing from its config, local weights only."""

from __future__ import annotations

from pathlib import Path

import timm
from timm.models import get_pretrained_cfg

from tagnet.errors import ModelError
from tagnet.models.base import BackboneBuild, PreprocessConfig
from tagnet.models.weights import load_backbone_weights


def classifier_prefixes(name: str) -> tuple[str, ...]:
    """Return the module names of a timm model's classifier head(s), e.g. ("fc",) for resnet18."""
    cfg = get_pretrained_cfg(name)
    classifier = cfg.classifier if cfg is not None else None
    if classifier is None:
        return ()
    return (classifier,) if isinstance(classifier, str) else tuple(classifier)


def create_timm_backbone(
    name: str,
    *,
    image_size: int | None = None,
    mean: tuple[float, float, float] | None = None,
    std: tuple[float, float, float] | None = None,
) -> BackboneBuild:
    """Create a randomly initialised timm model without a classifier (never downloads anything).

    Preprocessing comes from timm's pretrained config (input size, mean, std) unless overridden.
    Models with a fixed input size (ViT and kin) are built for `image_size` when it is given.
    """
    cfg = get_pretrained_cfg(name)
    kwargs = {}
    if image_size is not None and cfg is not None and cfg.fixed_input_size:
        kwargs["img_size"] = image_size
    module = timm.create_model(name, pretrained=False, num_classes=0, **kwargs)
    pretrained_cfg = module.pretrained_cfg
    num_features = getattr(module, "head_hidden_size", None) or module.num_features
    preprocess = PreprocessConfig(
        image_size=image_size or int(pretrained_cfg["input_size"][-1]),
        mean=tuple(float(v) for v in (mean or pretrained_cfg["mean"])),
        std=tuple(float(v) for v in (std or pretrained_cfg["std"])),
    )
    return BackboneBuild(module=module, num_features=int(num_features), preprocess=preprocess)


def build_timm_backbone(name: str, *, pretrained: bool, weights: Path | None, image_size: int | None) -> BackboneBuild:
    """Build timm model `name` as a backbone; pretrained weights come only from a local `weights` file.

    Raises ModelError when pretrained weights are asked for without a file, or the file does not fit.
    """
    if weights is None and pretrained:
        raise ModelError(
            f"model {name!r} has no built-in offline weights (only efficientnet_lite0, lite1 and lite2 do) and tagnet never "
            f"downloads: pass --weights FILE (a .safetensors or .pth state dict of {name}), or train from "
            "scratch with --no-pretrained"
        )
    build = create_timm_backbone(name, image_size=image_size)
    if weights is not None:
        load_backbone_weights(build.module, weights, drop_prefixes=classifier_prefixes(name))
    return build
