"""Image inputs: decode and resize each image once into a memory-mapped cache, then augment uint8 tensors."""

from __future__ import annotations

import errno
import hashlib
import json
import os
import re
import shutil
import socket
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Sequence, TypeVar

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset
from tagnet.config.settings import MAX_IMAGE_SIZE
from tagnet.data.decode import IMAGE_SUFFIXES, decode_image, resolve_image_paths, to_rgb  # noqa: F401 (resolve_image_paths: imported from here)
from tagnet.errors import ConfigError, DataError

if TYPE_CHECKING:  # torchvision is imported where images are augmented: its import alone takes seconds
    from torchvision.transforms import v2

Chunk, Loaded = TypeVar("Chunk"), TypeVar("Loaded")


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
        ready: while the cache is still being built (build_image_cache's `alongside`), waits until the given rows are
            decoded (their failures known); None once every row is.
    """

    array: np.ndarray
    paths: list[Path]
    failures: dict[int, str]
    key: str = ""
    ready: Callable[[np.ndarray], None] | None = None


def _cache_key(paths: Sequence[Path], size: int) -> str:
    digest = hashlib.sha1(str(size).encode())
    for path in paths:
        try:
            stat = path.stat()
            digest.update(f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}\n".encode())
        except OSError:
            digest.update(f"{path}|missing\n".encode())
    return digest.hexdigest()[:16]


def _human(nbytes: float) -> str:
    for unit in ("bytes", "KiB", "MiB", "GiB"):
        if nbytes < 1024:
            return f"{nbytes:.0f} {unit}" if unit == "bytes" else f"{nbytes:.1f} {unit}"
        nbytes /= 1024
    return f"{nbytes:.1f} TiB"


def _no_space(folder: Path, nbytes: int, what: str) -> DataError:
    free = shutil.disk_usage(folder).free
    return DataError(f"not enough disk space in {folder} for {what}: needs {_human(nbytes)}, "
                     f"{_human(free)} free; free some space there or write to a larger disk")


def ensure_free_space(folder: str | Path, nbytes: int, what: str) -> None:
    """Raise DataError (what, where, needed, free) unless `folder`'s disk has `nbytes` free."""
    if shutil.disk_usage(folder).free < nbytes:
        raise _no_space(Path(folder), nbytes, what)


def _reserve(path: Path, nbytes: int, what: str) -> None:
    """Create `path` with `nbytes` allocated on disk, so a full disk is a DataError now, not a SIGBUS later."""
    ensure_free_space(path.parent, nbytes, what)
    try:
        with open(path, "wb") as handle:
            try:
                os.posix_fallocate(handle.fileno(), 0, nbytes)
            except OSError as exc:
                if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                    raise _no_space(path.parent, nbytes, what) from None
                handle.truncate(nbytes)  # a file system without fallocate: the free-space check above must do
    except BaseException:
        path.unlink(missing_ok=True)
        raise


_HOST = re.sub(r"[^A-Za-z0-9_-]", "_", socket.gethostname())
_TMP = re.compile(r"images-.*\.(?:(?P<host>[A-Za-z0-9_-]+)-)?(?P<pid>\d+)\.tmp")  # no host: older tagnet


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        pass
    return True


def _clear_stale_tmp(cache_dir: Path) -> None:
    """Remove half-built cache files left by dead processes of this machine (host and pid are in the name)."""
    for path in cache_dir.glob("images-*.tmp"):
        match = _TMP.fullmatch(path.name)
        if match and match["host"] in (_HOST, None) and not _pid_alive(int(match["pid"])):
            path.unlink(missing_ok=True)


def build_image_cache(paths: Sequence[Path], *, size: int, cache_dir: str | Path, workers: int | None = None,
                      alongside: Callable[[ImageCache], None] | None = None) -> ImageCache:
    """Decode every image once into `cache_dir` (reused while the files are unchanged).

    Memory stays bounded: images are written into the memmap as they are decoded (in row order); the file's disk
    space is reserved first. When the cache is built here (not reused), `alongside(cache)` runs while the images
    decode, with the cache being built: its `ready(rows)` waits until those rows are in it, so work on the first rows
    (frozen features) overlaps the decoding of the next ones. Returns an ImageCache; unreadable or missing images are
    listed in `failures`, not raised.
    Raises ConfigError for a size above MAX_IMAGE_SIZE, DataError when the disk cannot hold the cache;
    an exception or Ctrl+C while decoding leaves no temporary file behind.
    """
    if not 1 <= size <= MAX_IMAGE_SIZE:
        raise ConfigError(f"image_size={size}: expected 1 to {MAX_IMAGE_SIZE} px per side "
                          f"(the image cache holds images x size x size x 3 bytes)")
    cache_dir = Path(cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    key = _cache_key(paths, size)
    data_path, index_path = cache_dir / f"images-{size}-{key}.u8", cache_dir / f"images-{size}-{key}.json"
    shape = (len(paths), size, size, 3)
    nbytes = int(np.prod(shape))
    if data_path.exists() and index_path.exists() and data_path.stat().st_size == nbytes:
        failures = {int(k): v for k, v in json.loads(index_path.read_text())["failures"].items()}
        return ImageCache(np.memmap(data_path, np.uint8, "r", shape=shape), list(paths), failures, key)

    _clear_stale_tmp(cache_dir)
    # ranks of a distributed run may build it at once: each writes its own file
    tmp_path, tmp_index = (p.with_name(f"{p.name}.{_HOST}-{os.getpid()}.tmp") for p in (data_path, index_path))
    _reserve(tmp_path, nbytes, f"the image cache ({len(paths)} images at {size}x{size} px)")
    failures: dict[int, str] = {}
    try:
        array = np.memmap(tmp_path, np.uint8, "r+", shape=shape)

        def decode(row: int) -> None:
            try:
                array[row] = load_image(paths[row], size)
            except DataError as exc:
                failures[row] = str(exc)

        pool = ThreadPoolExecutor(max_workers=workers or min(8, (os.cpu_count() or 1) * 2))
        try:
            decoded = [pool.submit(decode, row) for row in range(len(paths))]  # run in this order
            if alongside is not None:
                alongside(ImageCache(array, list(paths), failures, key,
                                     ready=lambda rows: [decoded[row].result() for row in np.asarray(rows).ravel()]))
            for future in decoded:
                future.result()
        finally:
            pool.shutdown(cancel_futures=True)  # on Ctrl+C, stop now rather than decode the rest
        array.flush()
        os.replace(tmp_path, data_path)
        tmp_index.write_text(json.dumps({"size": size, "paths": [str(p) for p in paths], "failures": failures}))
        os.replace(tmp_index, index_path)
    finally:
        tmp_path.unlink(missing_ok=True)
        tmp_index.unlink(missing_ok=True)
    return ImageCache(np.memmap(data_path, np.uint8, "r", shape=shape), list(paths), failures, key)


def prefetched(load: Callable[[Chunk], Loaded], chunks: Iterable[Chunk], *, depth: int) -> Iterator[Loaded]:
    """load(chunk) of each of `chunks`, in order, each computed in one background thread while the caller works on the
    previous ones: a bounded producer/consumer, at most `depth` (>= 1) loads started and not yet taken. Decoding,
    copies and ONNX Runtime release the GIL, so the loads overlap the caller's work. An exception in a load is raised
    here, when its result is taken; leaving early waits only for the loads already started."""
    if depth < 1:
        raise ValueError(f"depth={depth}; expected at least 1")
    chunks = iter(chunks)
    with ThreadPoolExecutor(max_workers=1) as pool:
        pending = deque(pool.submit(load, chunk) for _, chunk in zip(range(depth), chunks))
        try:
            while pending:
                result = pending.popleft().result()
                pending.extend(pool.submit(load, chunk) for _, chunk in zip(range(1), chunks))
                yield result
        finally:
            for future in pending:
                future.cancel()


def augmentation(name: str) -> v2.Transform | None:
    """The training augmentation on uint8 CHW tensors: none, basic (the article's: rotation ±20°,
    shifts 20%, horizontal flip), or basic plus RandAugment / TrivialAugment."""
    if name == "none":
        return None
    from torchvision.transforms import v2

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
