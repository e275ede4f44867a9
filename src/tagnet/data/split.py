"""Train/validation/test splits that keep each label's share (iterative stratification)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from tagnet.data.labels import read_labels, write_labels
from tagnet.data.label_table import LabelTable
from tagnet.errors import ConfigError, DataError


def split_table(table: LabelTable, *, val: float = 0.2, test: float = 0.0, seed: int = 0) -> dict[str, LabelTable]:
    """Split `table` into "train", "val" (and "test" when `test` > 0) by iterative stratification.

    Each part keeps close to the whole table's share of every label and of items without
    labels (Sechidis et al. 2011, via the iterative-stratification package). Unknown cells
    count as absent. Rows keep their original order within a part; the same seed gives the
    same split.

    Raises:
        ConfigError: a fraction outside (0, 1), or val + test >= 1.
        DataError: too few items to give every part at least one.
    """
    if not 0 < val < 1:
        raise ConfigError(f"val fraction must be between 0 and 1 (exclusive), got {val}")
    if not 0 <= test < 1:
        raise ConfigError(f"test fraction must be between 0 (none) and 1, got {test}")
    if val + test >= 1:
        raise ConfigError(f"val + test fractions must leave items for training, got {val} + {test}")
    names = ["train", "val"] + (["test"] if test > 0 else [])
    shares = np.array([1 - val - test, val] + ([test] if test > 0 else []))
    n = len(table)
    if n < len(names) or (np.round(shares * n) < 1).any():
        raise DataError(f"{n} items are too few to split into {', '.join(names)} with val={val}, test={test}")
    y = table.targets.astype(bool) & table.known
    if y.shape[1] < 2:  # iterstrat needs two or more columns; a label and its absence stratify it alone
        y = np.column_stack([y, ~y]) if y.shape[1] == 1 else np.zeros((n, 2), dtype=bool)
    from iterstrat.ml_stratifiers import IterativeStratification  # imports scikit-learn: 0.7 s of CLI start-up

    rng = np.random.RandomState(seed)
    order = rng.permutation(n)
    folds = np.empty(n, dtype=np.int64)
    folds[order] = IterativeStratification(labels=y[order], r=shares, random_state=rng)
    folds = _to_sizes(folds, y, _part_sizes(shares, n))  # stratification alone can miss a share by 1% of n or more
    parts = {name: table.subset(np.flatnonzero(folds == k)) for k, name in enumerate(names)}
    empty = [name for name, part in parts.items() if not len(part)]
    if empty:
        raise DataError(f"{n} items are too few to split: part(s) {', '.join(empty)} came out empty")
    return parts


def _part_sizes(shares: np.ndarray, n: int) -> np.ndarray:
    """Item counts of the parts: shares * n rounded so that they add up to n (largest remainders round up)."""
    raw = shares * n
    sizes = np.floor(raw).astype(np.int64)
    sizes[np.argsort(sizes - raw, kind="stable")[:n - sizes.sum()]] += 1
    return sizes


def _to_sizes(folds: np.ndarray, y: np.ndarray, sizes: np.ndarray) -> np.ndarray:
    """Move items from parts over their size to parts under it, each time the item carrying most of the labels the
    receiving part lacks and the giving part has in excess, so that label shares stay as even as they can."""
    y = y.astype(np.float64)
    want = sizes[:, None] * y.mean(axis=0)  # each part's label counts at its share
    counts = np.stack([y[folds == k].sum(axis=0) for k in range(len(sizes))])
    while True:
        have = np.bincount(folds, minlength=len(sizes))
        over, under = np.flatnonzero(have > sizes), np.flatnonzero(have < sizes)
        if not len(over):
            return folds
        give, take = over[0], under[0]
        members = np.flatnonzero(folds == give)
        moved = members[np.argmax(y[members] @ ((want[take] - counts[take]) - (want[give] - counts[give])))]
        folds[moved] = take
        counts[give] -= y[moved]
        counts[take] += y[moved]


def write_split(parts: dict[str, LabelTable], out_dir: str | Path, *, source: str | Path) -> dict[str, Path]:
    """Write each part as OUT_DIR/<part><ext> in the format it was read from (see write_labels).

    `source` is the label file the parts came from: its suffix is kept for tags, one-hot and
    JSON files (coco/voc/folders sources are written as .csv), and it is never overwritten.
    """
    source = Path(source).expanduser()
    out_dir = Path(out_dir).expanduser()
    paths = {}
    for name, part in parts.items():
        ext = ".csv" if part.source_format in ("coco", "voc", "folders") else source.suffix or ".csv"
        path = out_dir / f"{name}{ext}"
        if path.exists() and path.resolve() == source.resolve():
            raise DataError(f"writing the {name} part to {path} would overwrite the input; choose another --out")
        paths[name] = path
    return {name: write_labels(parts[name], path) for name, path in paths.items()}


def split_file(path: str | Path, *, out_dir: str | Path, val: float = 0.2, test: float = 0.0, seed: int = 0,
               **read_kwargs: Any) -> dict[str, Path]:
    """Read a label file, split it with split_table and write the parts with write_split."""
    parts = split_table(read_labels(path, **read_kwargs), val=val, test=test, seed=seed)
    return write_split(parts, out_dir, source=path)


def kfold_rows(table: LabelTable, *, folds: int, seed: int = 0) -> list[np.ndarray]:
    """Row numbers of `folds` stratified folds of `table` (each row in exactly one; iterative stratification).

    Raises DataError when there are fewer items than folds.
    """
    n = len(table)
    if n < folds:
        raise DataError(f"{n} items are too few for {folds}-fold cross-validation")
    y = table.targets.astype(bool) & table.known
    if y.shape[1] < 2:
        y = np.column_stack([y, ~y]) if y.shape[1] == 1 else np.zeros((n, 2), dtype=bool)
    from iterstrat.ml_stratifiers import MultilabelStratifiedKFold

    splitter = MultilabelStratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    return [np.sort(val) for _, val in splitter.split(np.zeros((n, 1)), y.astype(int))]


def train_val_splits(targets: np.ndarray, known: np.ndarray, *, rows: np.ndarray | None = None, folds: int = 0,
                     heads: int = 1, val_fraction: float = 0.2, seed: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    """(training rows, validation rows) among `rows` (default every row) of a (targets, known) matrix: with `folds`,
    one pair per stratified fold (kfold_rows), the fold held out; else one pair per head, head k holding out its own
    stratified `val_fraction` (split_table, seed + k). The one splitter of holdout, k-fold and selection folds."""
    rows = np.arange(len(targets)) if rows is None else np.asarray(rows, dtype=np.int64)
    numbered = LabelTable([str(i) for i in range(len(rows))], [str(j) for j in range(targets.shape[1])],
                          targets[rows], known[rows])
    if folds:
        return [(rows[np.setdiff1d(np.arange(len(rows)), held)], rows[held])
                for held in kfold_rows(numbered, folds=folds, seed=seed)]
    splits = []
    for k in range(heads):
        parts = split_table(numbered, val=val_fraction, seed=seed + k)
        splits.append(tuple(rows[np.array([int(i) for i in parts[name].items], dtype=np.int64)]
                            for name in ("train", "val")))
    return splits
