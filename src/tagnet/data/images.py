"""Image inputs: decode and resize each image once into a memory-mapped cache, then augment uint8 tensors."""

from __future__ import annotations

import hashlib
import json
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset
from torchvision.transforms import v2

from tagnet.data.decode import IMAGE_SUFFIXES, decode_image, resolve_image_paths, to_rgb  # noqa: F401 (resolve_image_paths: imported from here)
from tagnet.errors import DataError


def to_model_size(image: Image.Image, size: int) -> np.ndarray:
    """The one resize of every image, in training, prediction and serving: RGB uint8 (size, size, 3) (to_rgb first)."""
    return _resized(to_rgb(image), size)


def load_image(path: str | Path, size: int) -> np.ndarray:
    """Decode one image file (decode_image) to an RGB uint8 (size, size, 3) array; raises DataError if unreadable."""
    return _resized(decode_image(path, draft_size=size), size)


def _resized(rgb: Image.Image, size: int) -> np.ndarray:
    return np.asarray(rgb.resize((size, size), Image.BILINEAR), dtype=np.uint8)


@dataclass
class ImageCache:
    """A memory-mapped uint8 array of N decoded, resized images plus which ones failed to decode.

    Attributes:
        array: (N, size, size, 3) uint8, read-only memmap on disk.
        paths: the source files, one per row.
        failures: {row: message} for images that were missing or unreadable (their rows are zero).
    """

    array: np.ndarray
    paths: list[Path]
    failures: dict[int, str]
    key: str = ""


def _cache_key(paths: Sequence[Path], size: int) -> str:
    digest = hashlib.sha1(str(size).encode())
    for path in paths:
        try:
            stat = path.stat()
            digest.update(f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}\n".encode())
        except OSError:
            digest.update(f"{path}|missing\n".encode())
    return digest.hexdigest()[:16]


def build_image_cache(paths: Sequence[Path], *, size: int, cache_dir: str | Path, workers: int | None = None) -> ImageCache:
    """Decode every image once into `cache_dir` (reused while the files are unchanged).

    Memory stays bounded: images are written into the memmap as they are decoded.
    Returns an ImageCache; unreadable or missing images are listed in `failures`, not raised.
    """
    cache_dir = Path(cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    key = _cache_key(paths, size)
    data_path, index_path = cache_dir / f"images-{size}-{key}.u8", cache_dir / f"images-{size}-{key}.json"
    shape = (len(paths), size, size, 3)
    if data_path.exists() and index_path.exists():
        failures = {int(k): v for k, v in json.loads(index_path.read_text())["failures"].items()}
        return ImageCache(np.memmap(data_path, np.uint8, "r", shape=shape), list(paths), failures, key)

    tmp_path = data_path.with_suffix(f".{os.getpid()}.tmp")  # ranks of a distributed run may build it at once
    array = np.memmap(tmp_path, np.uint8, "w+", shape=shape)
    failures: dict[int, str] = {}

    def decode(row: int) -> None:
        try:
            array[row] = load_image(paths[row], size)
        except DataError as exc:
            failures[row] = str(exc)

    with ThreadPoolExecutor(max_workers=workers or min(8, (os.cpu_count() or 1) * 2)) as pool:
        list(pool.map(decode, range(len(paths))))
    array.flush()
    os.replace(tmp_path, data_path)
    tmp_index = index_path.with_suffix(f".{os.getpid()}.tmp")
    tmp_index.write_text(json.dumps({"size": size, "paths": [str(p) for p in paths], "failures": failures}))
    os.replace(tmp_index, index_path)
    return ImageCache(np.memmap(data_path, np.uint8, "r", shape=shape), list(paths), failures, key)


def augmentation(name: str) -> v2.Transform | None:
    """The training augmentation on uint8 CHW tensors: none, basic (the article's: rotation ±20°,
    shifts 20%, horizontal flip), or basic plus RandAugment / TrivialAugment."""
    if name == "none":
        return None
    basic = [v2.RandomAffine(degrees=20, translate=(0.2, 0.2)), v2.RandomHorizontalFlip()]
    extra = {"basic": [], "randaugment": [v2.RandAugment()], "trivialaugment": [v2.TrivialAugmentWide()]}
    return v2.Compose(basic + extra[name])


class CachedImageDataset(Dataset):
    """Rows of an ImageCache with their targets; yields (uint8 CHW image, float targets, bool known, index)."""

    def __init__(self, cache: ImageCache, rows: np.ndarray, targets: np.ndarray, known: np.ndarray,
                 transform: v2.Transform | None = None) -> None:
        self.cache, self.rows, self.transform = cache, np.asarray(rows), transform
        self.targets = torch.as_tensor(targets, dtype=torch.float32)
        self.known = torch.as_tensor(known, dtype=torch.bool)

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, int]:
        image = torch.from_numpy(np.array(self.cache.array[self.rows[index]])).permute(2, 0, 1)
        if self.transform is not None:
            image = self.transform(image)
        return image, self.targets[index], self.known[index], index


def normalize_batch(images: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """uint8 (B, 3, H, W) -> float, scaled to [0, 1] then normalised, channels-last."""
    mean_t = torch.tensor(mean, dtype=torch.float32, device=images.device).view(1, -1, 1, 1)
    std_t = torch.tensor(std, dtype=torch.float32, device=images.device).view(1, -1, 1, 1)
    out = (images.float() / 255.0 - mean_t) / std_t
    return out.contiguous(memory_format=torch.channels_last)


def find_images(inputs: Sequence[str | Path]) -> list[Path]:
    """Expand files, folders (recursively, image suffixes) and glob patterns into image paths."""
    found: list[Path] = []
    for entry in inputs:
        text = str(entry)
        path = Path(text)
        if any(ch in text for ch in "*?["):
            anchor = Path(path.anchor or ".")
            pattern = str(path.relative_to(anchor)) if path.is_absolute() else text
            found.extend(sorted(p for p in anchor.glob(pattern) if p.is_file()))
        elif path.is_dir():
            found.extend(sorted(p for p in path.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()))
        else:
            found.append(path)
    if not found:
        raise DataError(f"no images found in {[str(i) for i in inputs]}")
    return found
