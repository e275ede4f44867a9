"""Read local weight files (safetensors, or torch state dicts without unpickling code) into backbones."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path

import safetensors.torch
import torch
from safetensors import SafetensorError
from torch import nn

from tagnet.errors import ModelError

_SHOWN = 3


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a flat {name: tensor} dict from a .safetensors file or a torch file (weights_only=True).

    Raises ModelError when the file is missing, unreadable or not a flat dict of tensors.
    """
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"weights file {path} does not exist; expected a .safetensors or .pth/.pt file")
    if path.suffix == ".safetensors":
        try:
            state = safetensors.torch.load_file(path, device="cpu")
        except (SafetensorError, OSError) as exc:
            raise ModelError(f"weights file {path} is not a readable safetensors file: {exc}") from exc
    else:
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # the restricted unpickler raises IndexError, KeyError, ... on foreign bytes
            raise ModelError(
                f"weights file {path} holds something other than tensors and plain data, or is damaged "
                f"({type(exc).__name__}); nothing in it was run. Expected a .safetensors file or a .pth/.pt "
                "state dict that loads with torch.load(weights_only=True)"
            ) from None
    if not isinstance(state, Mapping) or not all(
        isinstance(key, str) and isinstance(value, torch.Tensor) for key, value in state.items()
    ):
        raise ModelError(f"weights file {path} holds a {type(state).__name__}; expected a flat dict of name -> tensor")
    return dict(state)


def _examples(keys: list[str]) -> str:
    shown = ", ".join(keys[:_SHOWN])
    return shown + (", ..." if len(keys) > _SHOWN else "")


def load_state_into(module: nn.Module, state: Mapping[str, torch.Tensor], *, source: str, what: str = "") -> int:
    """Load `state` into `module` after checking names and shapes match exactly; return tensors loaded.

    Raises ModelError listing missing keys, unexpected keys and shape mismatches, naming `source`
    and `what` (default: "<module class> backbone").
    """
    own = module.state_dict()
    missing = [key for key in own if key not in state]
    unexpected = [key for key in state if key not in own]
    mismatched = [
        f"{key} (file {tuple(state[key].shape)}, model {tuple(own[key].shape)})"
        for key in own
        if key in state and state[key].shape != own[key].shape
    ]
    problems = []
    if missing:
        problems.append(f"{len(missing)} missing ({_examples(missing)})")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected ({_examples(unexpected)})")
    if mismatched:
        problems.append(f"{len(mismatched)} with another shape ({_examples(mismatched)})")
    if problems:
        raise ModelError(
            f"weights from {source} do not fit the {what or type(module).__name__ + ' backbone'}: "
            + "; ".join(problems)
            + ". Expected a state dict of the same architecture"
        )
    module.load_state_dict(state)
    return len(own)


def load_backbone_weights(module: nn.Module, path: str | Path, *, drop_prefixes: Iterable[str] = ()) -> int:
    """Load a local weights file into a backbone, dropping tensors under `drop_prefixes` (a classifier head).

    Returns the number of tensors loaded; raises ModelError on a bad file or a mismatch.
    """
    prefixes = tuple(drop_prefixes)
    state = {
        key: value
        for key, value in read_state_dict(path).items()
        if not any(key == prefix or key.startswith(prefix + ".") for prefix in prefixes)
    }
    return load_state_into(module, state, source=str(path))
