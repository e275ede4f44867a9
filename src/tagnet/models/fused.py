"""Several image backbones as one: each sees the same normalised image, their pooled features are concatenated."""

from __future__ import annotations

import torch
from torch import nn

from tagnet.errors import ModelError
from tagnet.models.base import BackboneBuild

SEPARATOR = "+"


class FusedBackbone(nn.Module):
    """Backbones named `names` run side by side on one input; features (B, sum of widths) in their order."""

    def __init__(self, members: list[nn.Module], names: list[str], widths: list[int]) -> None:
        super().__init__()
        self.members = nn.ModuleList(members)
        self.names = list(names)
        self.widths = list(widths)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([member(x) for member in self.members], dim=1)


def member_names(name: str) -> list[str]:
    """The backbone names of a fused name such as "efficientnet_lite0+efficientnet_lite2" (one name: itself).

    Raises ModelError for an empty part or a name given twice."""
    names = [part.strip() for part in name.split(SEPARATOR)]
    if any(not part for part in names):
        raise ModelError(f"model {name!r} has an empty part; expected names joined by '+', e.g. "
                         "efficientnet_lite0+efficientnet_lite2")
    if len(set(names)) != len(names):
        raise ModelError(f"model {name!r} names a backbone twice; expected different backbones joined by '+'")
    return names


def fuse(names: list[str], builds: list[BackboneBuild]) -> BackboneBuild:
    """One BackboneBuild of `builds` (built for one image size) side by side.

    Raises ModelError when their preprocessing differs (sizes, mean or std): they must take the same input."""
    first = builds[0].preprocess
    for name, build in zip(names, builds):
        if build.preprocess is None:
            raise ModelError(f"model {name!r} does not take images; only image backbones can be fused with '+'")
        if build.preprocess != first:
            raise ModelError(f"fused backbones must take the same input; {names[0]} wants {first.to_dict()}, "
                             f"{name} wants {build.preprocess.to_dict()} (give --image-size, or fuse backbones with the "
                             "same normalisation)")
    widths = [build.num_features for build in builds]
    module = FusedBackbone([build.module for build in builds], names, widths)
    return BackboneBuild(module=module, num_features=sum(widths), preprocess=first)
