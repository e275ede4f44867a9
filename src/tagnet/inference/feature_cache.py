"""One disk cache of frozen-encoder outputs (image backbone features, sentence embeddings): computed once per data set."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from tagnet.data.images import ensure_free_space
from tagnet.files import atomic_write


def encoder_digest(encoder: nn.Module, *parts: object) -> "hashlib._Hash":
    """A SHA-1 over `parts` and a sample of every weight of `encoder`: other weights give other features."""
    digest = hashlib.sha1("|".join(str(part) for part in parts).encode())
    for tensor in encoder.state_dict().values():
        digest.update(tensor.flatten()[:64].float().numpy().tobytes())
    return digest


def cached_path(cache_dir: str | Path, kind: str, digest: "hashlib._Hash") -> Path:
    """Where cached_tensor keeps the tensor of `kind` and `digest`."""
    return Path(cache_dir) / f"{kind}-{digest.hexdigest()[:16]}.safetensors"


def cached_tensor(cache_dir: str | Path, kind: str, digest: "hashlib._Hash",
                  compute: Callable[[], torch.Tensor]) -> torch.Tensor:
    """`compute()`, stored as CACHE_DIR/KIND-DIGEST.safetensors and read from there when it exists."""
    path = cached_path(cache_dir, kind, digest)
    if path.exists():
        return load_file(path)["values"]
    values = compute().contiguous()
    path.parent.mkdir(parents=True, exist_ok=True)
    ensure_free_space(path.parent, values.nbytes + (1 << 20), f"the {kind} cache")
    atomic_write(path, lambda temp: save_file({"values": values}, temp))
    return values
