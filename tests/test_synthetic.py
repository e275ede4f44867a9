"""Tests of the built-in synthetic demo data."""

import csv
import json

import numpy as np
from PIL import Image

from tagnet.data.synthetic import SHAPES, make_synthetic_item, write_synthetic_dataset


def test_item_is_deterministic_for_a_seed():
    a = make_synthetic_item(np.random.default_rng(5), size=48)
    b = make_synthetic_item(np.random.default_rng(5), size=48)
    assert np.array_equal(a[0], b[0]) and a[1:] == b[1:]
    others = [make_synthetic_item(np.random.default_rng(s), size=48)[0] for s in range(6, 9)]
    assert not any(np.array_equal(a[0], o) for o in others)


def test_items_have_boxes_inside_the_image():
    rng = np.random.default_rng(0)
    size = 64
    counts = []
    for _ in range(200):
        pixels, labels, boxes = make_synthetic_item(rng, size=size)
        assert pixels.shape == (size, size, 3) and pixels.dtype == np.uint8
        assert labels == sorted(boxes) and set(labels) <= set(SHAPES)
        counts.append(len(labels))
        for x0, y0, x1, y1 in boxes.values():
            assert 0 <= x0 < x1 <= size and 0 <= y0 < y1 <= size
            assert 0.25 * size <= x1 - x0 <= 0.46 * size and x1 - x0 == y1 - y0
    assert set(counts) == {0, 1, 2, 3}


def test_dataset_files_and_label_frequencies(tmp_path):
    data = write_synthetic_dataset(tmp_path / "demo", n=400, size=40, seed=0)
    table = data.table
    assert table.label_names == SHAPES and len(table) == 400
    frequency = table.targets.mean(axis=0)
    assert ((frequency >= 0.25) & (frequency <= 0.45)).all(), frequency
    assert table.targets.sum(axis=1).max() <= 3

    with data.labels_csv.open(newline="") as handle:
        rows = list(csv.reader(handle))
    assert rows[0] == ["image", "labels"]
    assert [r[0] for r in rows[1:]] == table.items
    assert [r[1].split() for r in rows[1:]] == table.label_sets()

    boxes = json.loads(data.boxes_json.read_text())
    assert sorted(boxes) == sorted(table.items)
    for item, labels in zip(table.items, table.label_sets()):
        assert sorted(boxes[item]) == labels
    for item in table.items[:20]:
        with Image.open(data.images_dir / item) as image:
            assert image.size == (40, 40) and image.mode == "RGB"


def test_dataset_is_reproducible(tmp_path):
    a = write_synthetic_dataset(tmp_path / "a", n=30, size=32, seed=3)
    b = write_synthetic_dataset(tmp_path / "b", n=30, size=32, seed=3)
    c = write_synthetic_dataset(tmp_path / "c", n=30, size=32, seed=4)
    assert a.labels_csv.read_bytes() == b.labels_csv.read_bytes()
    assert a.boxes_json.read_bytes() == b.boxes_json.read_bytes()
    assert all((a.images_dir / i).read_bytes() == (b.images_dir / i).read_bytes() for i in a.table.items)
    assert a.boxes_json.read_bytes() != c.boxes_json.read_bytes()
