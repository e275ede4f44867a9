"""The roles of a CSV/TSV file's columns (id, tags, 0/1 labels, class id, list literals), shared by the table formats."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

import numpy as np

from tagnet.data.columns import (ANNOTATION_COLUMNS, ID_COLUMNS, LABEL_COLUMNS, PLURAL_LABEL_COLUMNS, ColumnKinds,
                                 cell_array, column_kinds, normalized, pick_column)
from tagnet.data.formats.source import Source

NOT_TABLES = (".json", ".jsonl", ".ndjson", ".manifest", ".xml", ".parquet", ".arrow", ".arff", ".yaml", ".yml",
              ".names")
TAG_SEPARATORS = (",", ";", "|")  # tried before whitespace, which may sit inside a multi-word label


@dataclass(frozen=True)
class Plan:
    """What each column of a table file holds, and the tag reading's column.

    Attributes:
        header, rows: as Source.csv gives them; cells: the rows' cells as a stripped string array.
        id_at: the item id column.
        kinds: the kind of values of every column.
        label_at: the column of the tag reading (None: no column fits one); never a one-hot column.
        label_why: why that column (for the reading's reason).
        label_score: how well the tag reading fits, before long-format evidence.
        ids_repeat: the id column holds some id twice.
        long_why: why the rows look like one annotation each (None: they do not).
    """

    header: list[str]
    rows: list
    cells: np.ndarray
    id_at: int
    kinds: ColumnKinds
    label_at: int | None
    label_why: str
    label_score: float
    ids_repeat: bool
    long_why: str | None


def is_table(src: Source) -> bool:
    """Whether the source is a file the CSV/TSV formats may read."""
    return src.path.is_file() and src.path.suffix.lower() not in NOT_TABLES


def plan(src: Source) -> Plan:
    """The column roles of `src` (computed once per source)."""
    return src.memo("plan", lambda: _plan(src))


def _plan(src: Source) -> Plan:
    header, rows = src.csv()
    cells = cell_array([fields for _, fields in rows], len(header))
    kinds = column_kinds(cells)
    id_at = src.column(header, src.id_column, ID_COLUMNS, "item id", 0)
    label_at, why, score = _tag_column(src, header, kinds, id_at)
    ids = [fields[id_at].strip() for _, fields in rows]
    repeat = len(set(ids)) < len(ids)
    long_why = None
    if repeat and label_at is not None and label_at not in kinds.lists:
        singular = normalized(header[label_at]) not in PLURAL_LABEL_COLUMNS
        if singular or len(header) > 2 or _one_tag_each(fields[label_at] for _, fields in rows):
            long_why = (f"ids in {header[id_at]!r} repeat and each row has one {header[label_at]!r} "
                        + ("(one row per annotation)" if singular or len(header) == 2 else "beside other per-row columns"))
    return Plan(header, rows, cells, id_at, kinds, label_at, why, score, repeat, long_why)


def _tag_column(src: Source, header: list[str], kinds: ColumnKinds, id_at: int) -> tuple[int | None, str, float]:
    """The column a tag reading takes, why, and how well it fits."""
    others = [j for j in range(len(header)) if j != id_at and header[j] != src.text_column]
    other_set = set(others)
    if src.labels_column is not None:
        at = src.named_column(header, src.labels_column, "labels")
        return at, f"column {header[at]!r} (--labels-column)", 0.95
    if src.no_header:
        at = 0 if id_at == 1 else 1
        return at, f"column {at} (no header: the one after the id)", 0.9
    lists = [j for j in kinds.lists if j in other_set]
    if lists:
        return lists[0], f"column {header[lists[0]]!r} holds list literals", 0.85
    named = pick_column([header[j] for j in others], LABEL_COLUMNS + ANNOTATION_COLUMNS)
    binary = [j for j in kinds.binary if j in other_set]
    if named is not None and (others[named] not in kinds.binary or len(binary) > 2):  # 0/1 beside 0/1 columns: an id
        at = others[named]
        return at, f"column {header[at]!r} by its name", 0.8
    ids = [j for j in kinds.integers if j in other_set and _class_ids(src, j, len(binary))]
    if binary and ids:
        return ids[0], f"column {header[ids[0]]!r} holds one class id per row (integers within 0..{len(binary)})", 0.6
    if len(others) == 1 and others[0] not in kinds.binary and others[0] not in kinds.empty:
        return others[0], f"column {header[others[0]]!r}, the one beside the id", 0.6
    if not binary and others and not other_set <= set(kinds.empty):
        at = 0 if id_at == 1 else 1
        return at, f"column {header[at]!r}, the one after the id (no column is named labels or tags)", 0.5
    return None, "", 0.0


def class_id_column(found: Plan) -> int | None:
    """The tag reading's column when it is named as labels but holds 0/1 beside other 0/1 columns (a class id of
    two classes, not a label of its own)."""
    binary = set(found.kinds.binary) - {found.id_at}
    return found.label_at if found.label_at in binary and len(binary) > 2 else None


def _class_ids(src: Source, j: int, n_binary: int) -> bool:
    """Whether column j's integers fit class ids of `n_binary` 0/1 columns (0..n-1 or 1..n)."""
    values = [int(fields[j]) for _, fields in src.csv()[1] if fields[j].strip()]
    return bool(values) and n_binary > 1 and min(values) >= 0 and max(values) <= n_binary


def one_label_cells(name: str, cells: list[str]) -> bool:
    """Whether a column's cells each hold one label: its name says one class (class, class_name, label_name,
    category) and no cell holds a , ; | separator."""
    return (normalized(name) in {normalized(n) for n in ANNOTATION_COLUMNS}
            and not any(sep in cell for cell in cells for sep in TAG_SEPARATORS))


def _one_tag_each(cells: Iterable[str]) -> bool:
    """Whether no cell holds two tags (at the separator the cells use)."""
    cells = [cell.strip() for cell in cells]
    sep = detect_separator(cells)
    return all(len(split_tags(cell, sep)) <= 1 for cell in cells)


def detect_separator(cells: Iterable[str]) -> str:
    """The tag separator used in `cells`: the most common of , ; | or else whitespace (" ")."""
    counts = {sep: 0 for sep in TAG_SEPARATORS}
    for cell in cells:
        for sep in TAG_SEPARATORS:
            counts[sep] += sep in cell
    best = max(TAG_SEPARATORS, key=counts.get)
    return best if counts[best] else " "


def split_tags(cell: str, sep: str) -> list[str]:
    """The tags of one cell split at `sep` (any whitespace for " "), stripped, empty ones dropped."""
    parts = cell.split() if sep.isspace() else cell.split(sep)
    return [p.strip() for p in parts if p.strip()]
