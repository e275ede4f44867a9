"""The multilayer perceptron for feature vectors (tabular data): standardised features straight into the label head."""

from __future__ import annotations

from pathlib import Path

from torch import nn

from tagnet.errors import ModelError
from tagnet.models.base import BackboneBuild
from tagnet.models.registry import register_model

MLP = "mlp"


@register_model(MLP)
def mlp(*, pretrained: bool, weights: Path | None, image_size: int | None, input_dim: int | None = None) -> BackboneBuild:
    """Build the MLP's trunk: the identity on `input_dim` features; the head's hidden layer (head_hidden) does the rest.

    With head_hidden=H the model is Linear(input_dim, H)-ReLU-Dropout-Linear(H, labels). There are no
    pretrained weights, so `pretrained` is ignored. Raises ModelError without `input_dim` or with `weights`.
    """
    if input_dim is None:
        raise ModelError(f"model {MLP!r} needs input_dim, the number of features of each row")
    if weights is not None:
        raise ModelError(f"model {MLP!r} has no backbone weights to load; got weights file {weights}")
    return BackboneBuild(module=nn.Identity(), num_features=input_dim)
