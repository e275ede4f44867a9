"""Which column of a table holds what: the usual names of id and label columns, and each column's kind of values."""

from __future__ import annotations

import ast
import json
import re
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from tagnet.errors import DataError

ID_COLUMNS = ("image", "id", "file", "filename", "path", "item", "image_id", "file_name")
LABEL_COLUMNS = ("labels", "tags", "label", "categories")
ANNOTATION_COLUMNS = ("class", "class_name", "label_name", "category")  # one label per row (a long file's column)
PLURAL_LABEL_COLUMNS = ("labels", "tags", "categories")  # a cell of these names holds a list of tags
ONEHOT_VALUES = {"1": 1, "1.0": 1, "0": 0, "0.0": 0, "-1": None, "-1.0": None, "": None}


def normalized(name: str) -> str:
    """A column name compared loosely: lower case, letters and digits only ("Image_ID" -> "imageid")."""
    return re.sub(r"[^0-9a-z]", "", name.lower())


def pick_column(header: Sequence[str], names: Sequence[str]) -> int | None:
    """The first of `names` that is a column of `header` (case-insensitive; then ignoring _ - and spaces), or None."""
    lowered = [h.lower() for h in header]
    for name in names:
        if name in lowered:
            return lowered.index(name)
    loose = [normalized(h) for h in header]
    for name in names:
        if normalized(name) in loose:
            return loose.index(normalized(name))
    return None


@dataclass(frozen=True)
class ColumnKinds:
    """What the cells of each column of a CSV hold (column numbers; empty cells fit every kind).

    Attributes:
        binary: only 0/1 (and -1 or empty for unknown), at least one 0 or 1.
        integers: only non-negative integers, not all 0/1 (a class id, a count, a size).
        lists: only list literals ("['a', 'b']", '["a"]', "[a, b]").
        empty: every cell empty (a one-hot column of unknown values: label requests).
    """

    binary: list[int]
    integers: list[int]
    lists: list[int]
    empty: list[int]


def cell_array(rows: list[list[str]], n_columns: int) -> np.ndarray:
    """The cells of `rows` as a (rows, columns) array of strings, stripped."""
    return np.char.strip(np.array(rows, dtype=str).reshape(len(rows), n_columns))


def column_kinds(cells: np.ndarray) -> ColumnKinds:
    """The kind of every column of a stripped cell array (cell_array), computed column-wise with numpy."""
    if not len(cells):
        return ColumnKinds([], [], [], list(range(cells.shape[1])))
    empty = cells == ""
    binary = np.isin(cells, list(ONEHOT_VALUES)).all(axis=0) & np.isin(cells, ["0", "1", "0.0", "1.0"]).any(axis=0)
    digits = (np.char.isdigit(cells) | empty).all(axis=0) & ~empty.all(axis=0) & ~binary
    lists = ((np.char.startswith(cells, "[") & np.char.endswith(cells, "]")) | empty).all(axis=0) & ~empty.all(axis=0)
    return ColumnKinds([int(j) for j in np.flatnonzero(binary)], [int(j) for j in np.flatnonzero(digits)],
                       [int(j) for j in np.flatnonzero(lists)], [int(j) for j in np.flatnonzero(empty.all(axis=0))])


def list_cell(cell: str, where: str) -> list[str]:
    """The labels of a list-literal cell: a JSON or Python list of strings ("['cs.CV', 'cs.LG']"), or bare words
    between brackets ("[cs.CV, cs.LG]"). Parsed as data (json / ast.literal_eval), never run."""
    text = cell.strip()
    if not text:
        return []
    for parse in (json.loads, ast.literal_eval):
        try:
            value = parse(text)
        except (ValueError, SyntaxError, RecursionError, MemoryError, TypeError):
            continue
        if isinstance(value, (list, tuple)) and all(isinstance(v, (str, int)) and not isinstance(v, bool)
                                                    for v in value):
            return [str(v).strip() for v in value if str(v).strip()]
        raise DataError(f"{where}: {text[:60]!r} is a list, but not of label names (strings)")
    inner = text[1:-1]
    return [part.strip().strip("'\"").strip() for part in inner.split(",") if part.strip().strip("'\"").strip()]
