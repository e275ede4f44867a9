"""CelebA-style attribute lists: an optional row count, a line of attribute names, rows 'id -1 1 ...'."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tagnet.data.formats.source import Fit, FormatInfo, Source
from tagnet.data.label_table import LabelTable
from tagnet.errors import DataError

NAME = "celeba"
INFO = FormatInfo(NAME, "CelebA-style attribute list: [row count], names line, then 'id -1 1 ...' rows (1 = has it, -1 = not)",
                  layout="file", own_names=True, specific=True)
_VALUES = ("-1", "1", "0")


def _lines(text: str) -> tuple[int | None, list[str], list[tuple[int, list[str]]]]:
    """(declared count, names, (line number, fields) of each row) of whitespace-separated text."""
    lines = [(n, line.split()) for n, line in enumerate(text.splitlines(), start=1) if line.strip()]
    count = None
    if lines and len(lines[0][1]) == 1 and lines[0][1][0].isdigit():
        count = int(lines[0][1][0])
        lines = lines[1:]
    if not lines:
        return count, [], []
    return count, lines[0][1], lines[1:]


def detect(src: Source) -> Fit | None:
    """A names line one field shorter than the rows (no id header), and rows of -1/1 values."""
    if not src.path.is_file() or src.path.suffix.lower() not in (".txt", ".csv", ".tsv", ""):
        return None
    count, names, rows = _lines(src.head())
    rows = rows[:-1] if len(rows) > 1 else rows  # the head may cut the last row
    if not names or not rows or any(len(fields) != len(names) + 1 for _, fields in rows):
        return None
    values = np.array([fields[1:] for _, fields in rows])
    if not np.isin(values, _VALUES).all():
        return None
    counted = "a row count, " if count is not None else ""
    return Fit(NAME, 0.95, f"{counted}a line of {len(names)} names, then rows of an id and -1/1 values")


def read(src: Source) -> tuple[LabelTable, list[str]]:
    """Each row: the item and its attributes (1 = present, -1 or 0 = absent; all known)."""
    count, names, rows = _lines(src.text())
    if not names:
        raise DataError(f"{src.path}: expected a line of attribute names, then one row per item")
    locations = [f"{src.path.name} line {n}" for n, _ in rows]
    for (_, fields), where in zip(rows, locations):
        if len(fields) != len(names) + 1:
            raise DataError(f"{where}: {len(fields)} fields; expected the id and {len(names)} values (-1 or 1)")
    values = np.array([fields[1:] for _, fields in rows], dtype=str).reshape(len(rows), len(names))
    bad = ~np.isin(values, _VALUES)
    if bad.any():
        i, j = map(int, np.argwhere(bad)[0])
        raise DataError(f"{locations[i]}, attribute {names[j]!r}: value {str(values[i, j])!r} is not -1 or 1")
    notes = []
    if count is not None and count != len(rows):
        notes.append(f"line 1 says {count} rows, the file has {len(rows)}: read them all")
    if len(set(names)) != len(names):
        raise DataError(f"{src.path}: attribute names repeat: {names}")
    order = sorted(range(len(names)), key=names.__getitem__)
    targets = (values == "1").astype(np.uint8)[:, order]
    meta = {"count_line": count is not None, **({"notes": notes} if notes else {})}
    table = LabelTable([src.item(fields[0], where) for (_, fields), where in zip(rows, locations)],
                       [names[j] for j in order], targets, np.ones_like(targets, dtype=bool), NAME, meta)
    return table, locations


def write(table: LabelTable, path: Path, meta: dict) -> None:
    """The row count (unless meta says the file had none), the names line, then 'id v v ...' with -1/1 values."""
    if any(" " in n or not n for n in table.label_names) or any(not i.strip() or len(i.split()) > 1 for i in table.items):
        raise DataError(f"cannot write {path} as celeba: item ids and label names must be single words")
    lines = [str(len(table))] if meta.get("count_line", True) else []
    lines.append(" ".join(table.label_names))
    signs = np.where(table.targets == 1, " 1", "-1")
    lines += [item + " " + " ".join(row) for item, row in zip(table.items, signs)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
