"""Images: label files beside an images folder, decoded once into a memory-mapped cache, frozen backbone features."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from safetensors.torch import load_file
from torch import nn
from torch.utils.data import DataLoader

from tagnet.config.settings import TrainConfig
from tagnet.data.images import (CachedImageDataset, ImageCache, augmentation, build_image_cache, find_images,
                                load_image, normalize_batch, prefetched, resolve_image_paths, to_model_size)
from tagnet.data.decode import images_folder
from tagnet.data.labels import read_labels
from tagnet.errors import ArtifactError, DataError, TagnetError
from tagnet.training.budget import Throughput, duration, feature_seconds
from tagnet.inference.runtime import Spread, chosen_runtime, fastest_forward
from tagnet.inference.feature_cache import cached_path, cached_tensor, encoder_digest
from tagnet.models import PreprocessConfig, TagnetModel, create_model
from tagnet.models.fused import FusedBackbone, member_names
from tagnet.modalities.base import HeadInputs, LabeledInputs, Modality, check_items
from tagnet.modalities.codecs import ImageCodec
from tagnet.modalities.onnx_specs import ImageOnnx
from tagnet.modalities.specs import IMAGE

# Small batches run the EfficientNets fastest on a 2-core CPU (Lite2 at 260 px: 41 images/s at 8, 23 at 32, 24 at
# 64: large batches' activations spend the time in page faults); benchmarks/RESULTS.md has the measurement.
FEATURE_BATCH = 8
PREFETCH = 2  # batches read and normalised ahead of the encoder (each FEATURE_BATCH x views images in float32)


@dataclasses.dataclass
class CachedImages:
    """Rows of an ImageCache, indexable like an array (the inputs of prepared image data); `encoded_seconds`: the
    seconds of decoding them with their frozen features computed alongside (0 when they were not)."""

    cache: ImageCache
    rows: np.ndarray
    encoded_seconds: float = 0.0

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index: np.ndarray) -> CachedImages:
        return CachedImages(self.cache, self.rows[index])


def preprocess_of(state: dict[str, Any]) -> PreprocessConfig:
    """The PreprocessConfig an image model's fitted state records."""
    return PreprocessConfig.from_dict(state)


def prepare_image(image: Image.Image | np.ndarray, size: int) -> np.ndarray:
    """A PIL image or HxWx3 uint8 array -> uint8 (size, size, 3), exactly as the training cache stores it."""
    if isinstance(image, np.ndarray):
        if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
            raise DataError(f"an array of {image.dtype} {image.shape}; expected uint8 (height, width, 3)")
        if image.shape == (size, size, 3):
            return image  # already prepared (load_image, the server's decoder): resizing would only copy it
        image = Image.fromarray(image)
    return to_model_size(image, size)


class ImageModality(Modality):
    """Images: the default modality."""

    spec = IMAGE
    codec = ImageCodec(IMAGE)
    onnx = ImageOnnx()
    mixes_network_inputs = True
    state_keys = ("image_size", "mean", "std")

    def read(self, source, *, state=None, label_names=None) -> LabeledInputs:
        """A label file of any format read_labels reads; its items resolved to files under the source's images_dir
        (or the folder its format implies: a VOC set's JPEGImages, a folder-per-label root)."""
        table = read_labels(source.labels, **source.read_options)
        paths = np.empty(len(table), dtype=object)
        paths[:] = resolve_image_paths(table.items, images_folder(table.meta, source.images_dir))
        return LabeledInputs(table, paths)

    def build_model(self, config: TrainConfig, data: LabeledInputs) -> TagnetModel:
        return create_model(config.backbone, num_labels=data.table.num_labels, pretrained=config.pretrained,
                            weights=config.weights, dropout=config.dropout, head_hidden=config.head_hidden,
                            image_size=config.image_size, ensemble=config.ensemble)

    def resolved_config(self, config: TrainConfig, model: TagnetModel) -> TrainConfig:
        return config.updated(image_size=model.preprocess.image_size)

    def fit_state(self, model, data, train_rows, *, text_column, read_options) -> dict[str, Any]:
        """The preprocessing: square size, mean and std (the backbone's)."""
        return model.preprocess.to_dict()

    def rebuild_model(self, spec, state, *, source) -> TagnetModel:
        try:
            preprocess = preprocess_of(state)
        except TagnetError as exc:
            raise ArtifactError(f"{source}: {exc}") from None
        model = create_model(spec["name"], num_labels=spec["num_labels"], pretrained=False, dropout=spec["dropout"],
                             head_hidden=spec["head_hidden"], image_size=preprocess.image_size,
                             ensemble=spec.get("ensemble", 1))
        model.preprocess = preprocess  # the saved preprocessing is authoritative
        return model

    def state_from_format_1(self, preprocess, extra) -> dict[str, Any]:
        return preprocess

    def prepare(self, data, model, *, cache_dir, encode=False) -> tuple[LabeledInputs, np.ndarray]:
        """Every image decoded and resized once into the cache; unreadable ones are dropped into `skipped`. With
        `encode`, when the images are decoded here (not cached yet) the backbone's features of every image and of its
        mirror image are computed while they decode (each batch once its images are in) into the feature cache,
        where head_inputs reads them."""
        started, encoded = time.perf_counter(), []

        def alongside(building: ImageCache) -> None:
            everything = CachedImages(building, np.arange(len(building.paths)))
            for name, backbone in backbone_members(model):
                member_views(name, backbone, model.preprocess, everything, cache_dir=cache_dir)
            encoded.append(True)

        cache = build_image_cache(list(data.inputs), size=model.preprocess.image_size, cache_dir=cache_dir,
                                  alongside=alongside if encode else None)
        kept = np.setdiff1d(np.arange(len(data), dtype=np.int64), np.fromiter(cache.failures, np.int64))
        skipped = {str(cache.paths[row]): message for row, message in sorted(cache.failures.items())}
        seconds = time.perf_counter() - started if encoded else 0.0
        return LabeledInputs(data.table.subset(kept), CachedImages(cache, kept, seconds), skipped), kept

    def head_inputs(self, model, data, state, *, cache_dir, progress, spread=None) -> HeadInputs:
        """Pooled backbone features of every image and of its mirror image, float32, cached on disk; across the run's
        processes when `spread` says so (each gets all features, in input order)."""
        images: CachedImages = data.inputs
        members = [member_views(name, backbone, model.preprocess, images, cache_dir=cache_dir, spread=spread)
                   for name, backbone in backbone_members(model)]
        photos, mirrors = ([member[view] for member in members] for view in range(2))
        runtimes = {chosen_runtime(backbone) for _name, backbone in backbone_members(model)} - {None}
        return HeadInputs(*(torch.cat(parts, dim=1) if len(parts) > 1 else parts[0] for parts in (photos, mirrors)),
                          earlier_seconds=images.encoded_seconds, runtime="+".join(sorted(runtimes)) or None)

    def budget_plan(self, config, model, data, budget, *, cache_dir) -> tuple[TrainConfig, str | None]:
        """A fused backbone whose features (not cached yet) would not fit in the time left gives way to the first of
        the spec's budget_steps made of its members that fits, else to its fastest member; estimated from each
        member's measured speed on a few of the images."""
        if not isinstance(model.backbone, FusedBackbone) or budget.seconds is None:
            return config, None
        images: CachedImages = data.inputs
        todo = {name: 0.0 if cached_path(cache_dir, "features", _feature_digest(name, backbone, model.preprocess, images,
                                                                                 False)).exists()
                else feature_seconds(_seconds_per_image(backbone, model.preprocess, images), len(images))
                for name, backbone in backbone_members(model)}
        total = sum(todo.values())
        if budget.fits(total):
            return config, budget.note(f"{config.backbone} features take about {duration(total)}: they fit")
        chosen = budget_step(todo, self.spec.budget_steps, budget.fits)
        return (dataclasses.replace(config, backbone=chosen),
                budget.note(f"{config.backbone} features would take about {duration(total)} of "
                            f"{duration(budget.left())} left; using {chosen}{' alone' if chosen in todo else ''} "
                            f"(about {duration(sum(todo[name] for name in member_names(chosen)))})"))

    def throughput(self, model, data, split, config) -> Throughput:
        """From the whole backbone's measured inference speed on a few cached images (a training step costs
        TRAIN_STEP_FORWARDS forwards)."""
        return Throughput.from_forward_seconds(_seconds_per_image(model.backbone, model.preprocess, data.inputs))

    def network_loaders(self, model, train, val, config) -> tuple[DataLoader, DataLoader]:
        """Augmented uint8 images from the cache (normalised by the training module)."""
        train_ds = CachedImageDataset(train.inputs.cache, train.inputs.rows, train.table.targets, train.table.known,
                                      transform=augmentation(config.augment))
        val_ds = CachedImageDataset(val.inputs.cache, val.inputs.rows, val.table.targets, val.table.known)
        workers = dict(num_workers=config.num_workers, persistent_workers=config.num_workers > 0)
        return (DataLoader(train_ds, batch_size=config.batch_size, shuffle=True,
                           drop_last=len(train_ds) > config.batch_size, **workers),
                DataLoader(val_ds, batch_size=config.batch_size * 2, **workers))

    def normalization(self, model):
        return model.preprocess.mean, model.preprocess.std

    def read_unlabeled(self, paths, predictor) -> tuple[list[str], list, dict[str, str]]:
        """Image files, folders (recursively) and glob patterns."""
        found = find_images(paths)
        return [str(path) for path in found], found, {}

    def default_sources(self, items) -> list[str]:
        return [str(item) if isinstance(item, (str, Path)) else f"image_{i}" for i, item in enumerate(items)]

    def probabilities(self, predictor, items) -> tuple[np.ndarray, list[int], dict[str, str]]:
        """Image paths, PIL images, uint8 arrays, or float32 (3, size, size) arrays already normalised (the model's
        input), decoded batch by batch; unreadable files are skipped."""
        items = check_items(items, what="images")
        pre = predictor.artifact.preprocess
        probs, kept, errors = [], [], {}
        for start in range(0, len(items), predictor.batch_size):
            arrays = []
            for i in range(start, min(start + predictor.batch_size, len(items))):
                item = items[i]
                try:
                    if isinstance(item, (str, Path)):
                        arrays.append(load_image(item, pre.image_size))
                    elif is_model_input(item, pre.image_size):
                        arrays.append(item)
                    elif isinstance(item, (Image.Image, np.ndarray)):
                        arrays.append(prepare_image(item, pre.image_size))
                    else:
                        raise DataError(f"image #{i} is a {type(item).__name__}; expected a path, a PIL image or a "
                                        "uint8 array")
                    kept.append(i)
                except DataError as exc:
                    if not isinstance(item, (str, Path)):
                        raise
                    errors[str(item)] = str(exc)
            if arrays:
                probs.append(predictor.run(model_batch(arrays, pre)))
        return (np.concatenate(probs) if probs else np.zeros((0, len(predictor.label_names)), np.float32)), kept, errors

def backbone_members(model: TagnetModel) -> list[tuple[str, nn.Module]]:
    """(name, module) of each backbone of a fused model, or of the one backbone."""
    if isinstance(model.backbone, FusedBackbone):
        return list(zip(model.backbone.names, model.backbone.members))
    return [(model.name, model.backbone)]


def member_views(name: str, backbone: nn.Module, preprocess: PreprocessConfig, images: CachedImages, *,
                 cache_dir: Path, spread: Spread | None = None) -> list[torch.Tensor]:
    """Features of the images and of their mirror images from one backbone, each read from the feature cache
    (CACHE_DIR/features-DIGEST.safetensors), else taken from the features of every row of the image cache (as
    prepare computes them while decoding) when those are there, else computed in one pass (extract_views); stored."""
    paths = [cached_path(cache_dir, "features", _feature_digest(name, backbone, preprocess, images, flip))
             for flip in (False, True)]
    missing = tuple(flip for flip, path in zip((False, True), paths) if not path.exists())
    everything = CachedImages(images.cache, np.arange(len(images.cache.array)))
    whole = [cached_path(cache_dir, "features", _feature_digest(name, backbone, preprocess, everything, flip))
             for flip in missing]
    if missing and all(path.exists() for path in whole):  # some rows were dropped (unreadable) after decoding
        computed = {flip: load_file(path)["values"][torch.from_numpy(images.rows)] for flip, path in zip(missing, whole)}
    else:
        computed = dict(zip(missing, extract_views(backbone, preprocess, images, views=missing, spread=spread)
                            if missing else []))
    return [cached_tensor(cache_dir, "features", _feature_digest(name, backbone, preprocess, images, flip),
                          lambda flip=flip: computed[flip]) for flip in (False, True)]


def _feature_digest(name: str, backbone: nn.Module, preprocess: PreprocessConfig, images: CachedImages, flip: bool):
    # keyed on each backbone only: head settings (dropout, head_hidden, labels) must not force a recompute, and
    # a fused backbone reuses its members' features cached by earlier runs
    digest = encoder_digest(backbone, name, preprocess, flip, images.cache.key)
    digest.update(np.ascontiguousarray(images.rows).tobytes())
    return digest


def budget_step(todo: dict[str, float], steps: tuple[str, ...], fits: Callable[[float], bool]) -> str:
    """What a fused backbone whose members' features take `todo` seconds (member name -> seconds, 0 when cached)
    gives way to when they do not all fit: the first of the fused names `steps` made of fewer of its members whose
    features `fits`, else the fastest member."""
    for step in steps:
        names = member_names(step)
        if set(names) < set(todo) and fits(sum(todo[name] for name in names)):
            return step
    return min(todo, key=todo.get)


def _seconds_per_image(backbone: nn.Module, preprocess: PreprocessConfig, images: CachedImages, *,
                       probe: int = FEATURE_BATCH) -> float:
    """Measured inference seconds per image of `backbone` (as extract_features runs it) on up to `probe` cached images,
    after one warm-up batch."""
    sample = CachedImages(images.cache, images.rows[:probe])
    extract_features(backbone, preprocess, sample)
    started = time.perf_counter()
    extract_features(backbone, preprocess, sample)
    return (time.perf_counter() - started) / max(1, len(sample))


def is_model_input(item: Any, size: int) -> bool:
    """Whether `item` is an image already normalised for the model: float32 (3, size, size)."""
    return isinstance(item, np.ndarray) and item.dtype == np.float32 and item.shape == (3, size, size)


def model_batch(arrays: list[np.ndarray], pre: PreprocessConfig) -> torch.Tensor:
    """The model's input batch of prepared uint8 (size, size, 3) images and normalised float32 (3, size, size) ones."""
    if not any(array.dtype == np.float32 for array in arrays):
        batch = torch.from_numpy(np.ascontiguousarray(np.stack(arrays))).permute(0, 3, 1, 2)
        return normalize_batch(batch, pre.mean, pre.std)
    return torch.stack([torch.from_numpy(np.array(array)) if array.dtype == np.float32 else  # copied: may be read-only
                        normalize_batch(torch.from_numpy(np.array(array[None])).permute(0, 3, 1, 2), pre.mean, pre.std)[0]
                        for array in arrays]).contiguous(memory_format=torch.channels_last)


def extract_features(backbone: nn.Module, preprocess: PreprocessConfig, images: CachedImages, *,
                     batch_size: int = FEATURE_BATCH, flip: bool = False, spread=None) -> torch.Tensor:
    """Pooled features of cached images (of their mirror images when `flip`) from `backbone`, float32 (N, F): the one
    view of extract_views."""
    return extract_views(backbone, preprocess, images, views=(flip,), batch_size=batch_size, spread=spread)[0]


def extract_views(backbone: nn.Module, preprocess: PreprocessConfig, images: CachedImages, *,
                  views: tuple[bool, ...] = (False, True), batch_size: int = FEATURE_BATCH, spread=None,
                  prefetch: int = PREFETCH) -> list[torch.Tensor]:
    """Pooled features of cached images from `backbone`, float32 (N, F) for each of `views` (False: the images, True:
    their mirror images).

    Each batch is read from the cache once and its views go through the encoder one after the other; the next
    batches are read and normalised in a background thread while the encoder runs,
    at most `prefetch` of them waiting (bounded memory). Computed in float32 (or bf16 on a GPU where it agrees to
    1e-3), as the Predictor does, so the head is trained on what it will see. Runs where
    tagnet.inference.runtime.fastest_forward chooses; with a `spread` (tagnet.inference.runtime.Spread, strategy ddp)
    across its processes, every one of them getting all features in input order.
    """
    backbone.eval().to(memory_format=torch.channels_last)  # normalize_batch gives channels-last inputs
    forwards: dict = {}  # device (None: inference_device()) -> forward

    def load(indices) -> torch.Tensor:
        if images.cache.ready is not None:  # the cache is still being built: wait for these rows
            images.cache.ready(images.rows[indices])
        batch = torch.from_numpy(np.array(images.cache.array[images.rows[indices]])).permute(0, 3, 1, 2)
        batch = torch.cat([batch.flip(-1) if flip else batch for flip in views])
        return normalize_batch(batch, preprocess.mean, preprocess.std)

    def step(batch: torch.Tensor, device=None) -> torch.Tensor:
        parts = batch.chunk(len(views))  # one call per view: batches of batch_size run fastest (FEATURE_BATCH)
        if device not in forwards:  # ONNX Runtime or the GPU when they match PyTorch on this first batch
            forwards[device] = fastest_forward(backbone, parts[0], device)[1]
        return torch.cat([forwards[device](part) for part in parts], dim=1)  # (B, views x F): the views side by side

    if spread is not None and spread.active:
        from tagnet.engine.distributed import map_in_order

        chunks = []
        map_in_order(lambda indices, device: (step(load(indices), device).numpy(), {}), lambda: range(len(images)),
                     batch_size=batch_size, spread=spread, everywhere=True,
                     emit=lambda _indices, outputs, _errors: chunks.append(torch.from_numpy(outputs)))
    else:
        batches = [np.arange(start, min(start + batch_size, len(images))) for start in range(0, len(images), batch_size)]
        with torch.inference_mode():
            chunks = [step(batch) for batch in prefetched(load, batches, depth=prefetch)]
    if not chunks:
        return [torch.zeros(0, 0) for _ in views]
    return list(torch.cat(chunks).chunk(len(views), dim=1))
