"""Models: create_model/list_models over tagnet's own networks and timm, and the TagnetModel wrapper."""

from tagnet.models import mlp, pretrained, seed_cnn, text  # noqa: F401  (importing registers the built-in models)
from tagnet.models.base import (BackboneBuild, GrownHead, HeadEnsemble, PreprocessConfig, TagnetModel, grow_head,
                                grown_base_spec, head_members, make_head, set_backbone_trainable)
from tagnet.models.registry import create_model, list_models, register_model

__all__ = [
    "BackboneBuild",
    "GrownHead",
    "HeadEnsemble",
    "PreprocessConfig",
    "TagnetModel",
    "create_model",
    "grow_head",
    "grown_base_spec",
    "head_members",
    "list_models",
    "make_head",
    "register_model",
    "set_backbone_trainable",
]
