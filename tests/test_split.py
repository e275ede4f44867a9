"""Stratified train/val/test splits: label shares, determinism, file output."""

import numpy as np
import pytest

from tagnet.data.labels import read_labels
from tagnet.data.split import split_file, split_table
from tagnet.data.label_table import LabelTable
from tagnet.errors import ConfigError, DataError


def shares(table: LabelTable) -> np.ndarray:
    return table.label_counts() / len(table)


def test_miml_scene_split_keeps_label_shares(shared_data):
    table = read_labels(shared_data / "miml-scene" / "labels.csv")
    parts = split_table(table, val=0.2, test=0.1, seed=0)
    assert list(parts) == ["train", "val", "test"]
    sizes = {name: len(part) for name, part in parts.items()}
    assert sum(sizes.values()) == 1600
    assert abs(sizes["val"] - 320) <= 16 and abs(sizes["test"] - 160) <= 16
    items = [item for part in parts.values() for item in part.items]
    assert sorted(items) == sorted(table.items)
    whole = shares(table)
    for part in parts.values():
        assert np.abs(shares(part) - whole).max() < 0.03
        assert part.label_names == table.label_names
        positions = [table.items.index(i) for i in part.items]
        assert positions == sorted(positions)  # original order kept


def test_split_is_deterministic_for_a_seed(shared_data):
    table = read_labels(shared_data / "miml-scene" / "labels.csv")
    first = split_table(table, val=0.25, seed=7)
    second = split_table(table, val=0.25, seed=7)
    other = split_table(table, val=0.25, seed=8)
    assert list(first) == ["train", "val"]
    assert first["val"].items == second["val"].items
    assert first["val"].items != other["val"].items


def test_unknown_cells_count_as_absent_and_single_label_tables():
    rng = np.random.default_rng(0)
    targets = (rng.random((60, 3)) < 0.3).astype(np.uint8)
    known = rng.random((60, 3)) < 0.8
    table = LabelTable([f"i{k}" for k in range(60)], ["a", "b", "c"], targets, known, "onehot")
    parts = split_table(table, val=0.25, seed=1)
    assert len(parts["train"]) + len(parts["val"]) == 60
    np.testing.assert_array_equal(parts["val"].known, known[[int(i[1:]) for i in parts["val"].items]])
    single = LabelTable.from_label_sets([str(k) for k in range(40)], [["x"] if k % 4 == 0 else [] for k in range(40)])
    val = split_table(single, val=0.5, seed=0)["val"]
    assert len(val) == 20 and val.label_counts().tolist() == [5]


def test_bad_fractions_and_too_few_items():
    table = LabelTable.from_label_sets(["a", "b", "c"], [["x"], ["y"], ["x", "y"]])
    for val, test in [(0.0, 0.0), (1.0, 0.0), (0.2, -0.1), (0.5, 0.5)]:
        with pytest.raises(ConfigError):
            split_table(table, val=val, test=test)
    with pytest.raises(DataError, match="too few"):
        split_table(table, val=0.1)


def test_split_file_writes_the_input_format(tmp_path):
    rows = [f"i{k},{'' if k % 5 == 0 else 1},{k % 2}" for k in range(20)]
    src = tmp_path / "oh.csv"
    src.write_text("image,a,b\n" + "\n".join(rows) + "\n")
    paths = split_file(src, out_dir=tmp_path / "out", val=0.2, test=0.2, seed=0)
    assert {k: p.name for k, p in paths.items()} == {"train": "train.csv", "val": "val.csv", "test": "test.csv"}
    parts = {k: read_labels(p) for k, p in paths.items()}
    assert all(part.source_format == "onehot" for part in parts.values())
    assert sum(len(p) for p in parts.values()) == 20
    assert sum(int((~p.known).sum()) for p in parts.values()) == 4
    assert paths["val"].read_text().splitlines()[0] == "image,a,b"


def test_split_file_never_overwrites_its_input(tmp_path):
    src = tmp_path / "train.jsonl"
    src.write_text("".join(f'{{"image": "i{k}", "labels": ["{"xy"[k % 2]}"]}}\n' for k in range(10)))
    with pytest.raises(DataError, match="would overwrite the input"):
        split_file(src, out_dir=tmp_path, val=0.2)
    paths = split_file(src, out_dir=tmp_path / "s", val=0.2)
    assert paths["val"].suffix == ".jsonl" and read_labels(paths["val"]).source_format == "jsonl"


@pytest.mark.parametrize("seed", [0, 1])
def test_split_sizes_follow_the_fractions_on_dense_labels(seed):
    y = (np.random.default_rng(seed).random((600, 20)) < 0.3).astype(np.uint8)
    table = LabelTable([f"i{i}" for i in range(600)], [f"l{j}" for j in range(20)], y, np.ones_like(y, bool), "tags", {})
    parts = split_table(table, val=0.2, test=0.1, seed=seed)  # plain stratification gave e.g. 206 and 111 of 1000
    assert {name: len(part) for name, part in parts.items()} == {"train": 420, "val": 120, "test": 60}
    shares = np.stack([part.targets.mean(axis=0) for part in parts.values()])
    assert (shares.max(axis=0) - shares.min(axis=0)).max() < 0.15  # a random split of 60 test items: ~0.25
