"""The built-in demo data: small images of coloured shapes and striped patches, with their boxes."""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from tagnet.data.label_table import LabelTable

SHAPES = ["circle", "cross", "square", "stripes", "triangle"]
OBJECT_COUNT_PROBS = (0.1, 0.35, 0.35, 0.2)  # P(0..3 objects): each label on ~33% of images
SIZE_RANGE = (0.28, 0.45)  # object side as a share of the image side
MAX_OVERLAP = 0.25  # largest share of an object's box another box may cover
PLACEMENT_TRIES = 30
NOISE_STD = 6.0

Box = tuple[int, int, int, int]


@dataclass(frozen=True)
class SyntheticDataset:
    """Where write_synthetic_dataset put the data, and its labels as a LabelTable."""

    images_dir: Path
    labels_csv: Path
    boxes_json: Path
    table: LabelTable


def _colour(rng: np.random.Generator, avoid: np.ndarray) -> np.ndarray:
    """A random colour far (L1 distance > 200) from `avoid`, or the farthest of a few draws."""
    best = rng.integers(0, 256, 3)
    for _ in range(10):
        candidate = rng.integers(0, 256, 3)
        if np.abs(candidate - avoid).sum() > 200:
            return candidate
        if np.abs(candidate - avoid).sum() > np.abs(best - avoid).sum():
            best = candidate
    return best


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    """A linear gradient between two random colours in a random direction, float (size, size, 3)."""
    a, b = rng.integers(0, 256, 3), rng.integers(0, 256, 3)
    angle = rng.uniform(0, 2 * np.pi)
    yy, xx = np.mgrid[0:size, 0:size] / max(size - 1, 1)
    t = xx * np.cos(angle) + yy * np.sin(angle)
    t = (t - t.min()) / max(np.ptp(t), 1e-9)
    return a[None, None, :] * (1 - t[..., None]) + b[None, None, :] * t[..., None]


def _overlap(box: Box, other: Box) -> float:
    """Share of the smaller box's area covered by the intersection of the two boxes."""
    w = min(box[2], other[2]) - max(box[0], other[0])
    h = min(box[3], other[3]) - max(box[1], other[1])
    if w <= 0 or h <= 0:
        return 0.0
    smaller = min((box[2] - box[0]) * (box[3] - box[1]), (other[2] - other[0]) * (other[3] - other[1]))
    return w * h / smaller


def _place(rng: np.random.Generator, size: int, taken: list[Box]) -> Box | None:
    """A square box of 28-45% of the image side that barely overlaps `taken`, or None."""
    for _ in range(PLACEMENT_TRIES):
        side = int(round(rng.uniform(*SIZE_RANGE) * size))
        x0, y0 = (int(v) for v in rng.integers(0, size - side + 1, 2))
        box = (x0, y0, x0 + side, y0 + side)
        if all(_overlap(box, other) <= MAX_OVERLAP for other in taken):
            return box
    return None


def _draw(image: Image.Image, label: str, box: Box, rng: np.random.Generator, colour: np.ndarray) -> None:
    """Draw one object of kind `label` filling `box` (x1, y1 exclusive) onto `image`."""
    x0, y0, x1, y1 = box
    side = x1 - x0
    fill = tuple(int(c) for c in colour)
    draw = ImageDraw.Draw(image)
    if label == "circle":
        draw.ellipse((x0, y0, x1 - 1, y1 - 1), fill=fill)
    elif label == "square":
        draw.rectangle((x0, y0, x1 - 1, y1 - 1), fill=fill)
    elif label == "triangle":
        if rng.random() < 0.5:  # pointing up or down
            points = [(x0, y1 - 1), (x1 - 1, y1 - 1), ((x0 + x1 - 1) / 2, y0)]
        else:
            points = [(x0, y0), (x1 - 1, y0), ((x0 + x1 - 1) / 2, y1 - 1)]
        draw.polygon(points, fill=fill)
    elif label == "cross":
        arm = max(side // 4, 2)
        mid_x, mid_y = x0 + (side - arm) // 2, y0 + (side - arm) // 2
        draw.rectangle((mid_x, y0, mid_x + arm - 1, y1 - 1), fill=fill)
        draw.rectangle((x0, mid_y, x1 - 1, mid_y + arm - 1), fill=fill)
    else:  # stripes: a square patch of two alternating colours, horizontal, vertical or diagonal
        period = int(rng.integers(4, 9))
        dx, dy = [(1, 0), (0, 1), (1, 1), (1, -1)][int(rng.integers(4))]
        yy, xx = np.mgrid[0:side, 0:side]
        on = ((xx * dx + yy * dy) % period) < period / 2
        patch = np.where(on[..., None], colour, _colour(rng, colour)).astype(np.uint8)
        image.paste(Image.fromarray(patch), (x0, y0))


def make_synthetic_item(rng: np.random.Generator, *, size: int = 64) -> tuple[np.ndarray, list[str], dict[str, Box]]:
    """One demo image with 0-3 distinct objects on a noisy gradient background.

    Args:
        rng: the random generator (the item depends only on its state).
        size: image side in pixels.
    Returns:
        (uint8 array (size, size, 3), sorted labels present, box per label as (x0, y0, x1, y1)
        pixel coordinates with x1, y1 exclusive).
    """
    n_objects = int(rng.choice(len(OBJECT_COUNT_PROBS), p=OBJECT_COUNT_PROBS))
    kinds = [SHAPES[i] for i in rng.permutation(len(SHAPES))[:n_objects]]
    background = _background(rng, size)
    boxes: dict[str, Box] = {}
    for kind in kinds:
        box = _place(rng, size, list(boxes.values()))
        if box is not None:
            boxes[kind] = box
    image = Image.fromarray(background.astype(np.uint8))
    for kind, (x0, y0, x1, y1) in boxes.items():
        local = background[y0:y1, x0:x1].mean(axis=(0, 1))
        _draw(image, kind, (x0, y0, x1, y1), rng, _colour(rng, local))
    noisy = np.asarray(image, dtype=np.float64) + rng.normal(0, NOISE_STD, (size, size, 3))
    return np.clip(noisy, 0, 255).astype(np.uint8), sorted(boxes), dict(sorted(boxes.items()))


def write_synthetic_dataset(out_dir: str | Path, *, n: int = 600, size: int = 64, seed: int = 0) -> SyntheticDataset:
    """Write `n` demo images as PNG with a tags label file and their boxes; same seed, same files.

    Layout: OUT/images/00000.png ..., OUT/labels.csv ("image,labels", labels space-separated,
    image names relative to OUT/images), OUT/boxes.json ({image: {label: [x0, y0, x1, y1]}}).

    Returns:
        SyntheticDataset with the paths and the labels as a LabelTable (label_names = SHAPES).
    """
    out = Path(out_dir)
    images_dir = out / "images"
    images_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    items, label_sets, all_boxes = [], [], {}
    for i in range(n):
        pixels, labels, boxes = make_synthetic_item(rng, size=size)
        name = f"{i:05d}.png"
        Image.fromarray(pixels).save(images_dir / name, compress_level=1)
        items.append(name)
        label_sets.append(labels)
        all_boxes[name] = {label: list(box) for label, box in boxes.items()}
    labels_csv = out / "labels.csv"
    with labels_csv.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["image", "labels"])
        writer.writerows([item, " ".join(labels)] for item, labels in zip(items, label_sets))
    boxes_json = out / "boxes.json"
    boxes_json.write_text(json.dumps(all_boxes, indent=1))
    meta = {"id_column": "image", "labels_column": "labels", "separator": " ", "delimiter": ","}
    table = LabelTable.from_label_sets(items, label_sets, label_names=SHAPES, source_format="tags", meta=meta)
    return SyntheticDataset(images_dir, labels_csv, boxes_json, table)
