"""The seed article's small CNN: two conv-pool blocks and a 64-unit dense layer as features."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from tagnet.errors import ModelError
from tagnet.models.base import BackboneBuild, PreprocessConfig
from tagnet.models.registry import register_model
from tagnet.models.weights import load_backbone_weights

DEFAULT_IMAGE_SIZE = 150
MIN_IMAGE_SIZE = 10


class SeedCNN(nn.Module):
    """Conv(3→32, 3x3)-ReLU-MaxPool2 → Conv(32→64, 3x3)-ReLU-MaxPool2 → Flatten → Dense 64 + ReLU.

    Works with channels-last inputs and weights: Flatten reshapes whatever the memory layout.
    """

    def __init__(self, *, image_size: int = DEFAULT_IMAGE_SIZE) -> None:
        super().__init__()
        if image_size < MIN_IMAGE_SIZE:
            raise ModelError(f"seed_cnn image_size is {image_size}; expected at least {MIN_IMAGE_SIZE} pixels")
        side = ((image_size - 2) // 2 - 2) // 2
        self.num_features = 64
        self.features = nn.Sequential(
            nn.Conv2d(3, 32, kernel_size=3),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
            nn.Conv2d(32, 64, kernel_size=3),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(2),
        )
        self.flatten = nn.Flatten()
        self.dense = nn.Sequential(nn.Linear(64 * side * side, self.num_features), nn.ReLU(inplace=True))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return features (B, 64) of images (B, 3, image_size, image_size) scaled to [0, 1]."""
        return self.dense(self.flatten(self.features(x)))


@register_model("seed_cnn")
def seed_cnn(*, pretrained: bool, weights: Path | None, image_size: int | None) -> BackboneBuild:
    """Build the seed CNN (there are no published weights, so `pretrained` is ignored).

    Inputs are only scaled to [0, 1] (mean 0, std 1): the 1/255 scaling the article forgot.
    A `weights` file, if given, is loaded into the backbone.
    """
    size = image_size or DEFAULT_IMAGE_SIZE
    backbone = SeedCNN(image_size=size)
    if weights is not None:
        load_backbone_weights(backbone, weights)
    preprocess = PreprocessConfig(image_size=size, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))
    return BackboneBuild(module=backbone, num_features=backbone.num_features, preprocess=preprocess)
