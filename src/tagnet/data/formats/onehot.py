"""One-hot CSV/TSV: an id column and one 0/1 column per label (empty or -1 = unknown)."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from tagnet.data.columns import ONEHOT_VALUES
from tagnet.data.formats import table as tables
from tagnet.data.formats.source import Fit, FormatInfo, preview, Source
from tagnet.data.formats.tags import delimiter
from tagnet.data.label_table import LabelTable
from tagnet.errors import DataError

NAME = "onehot"
INFO = FormatInfo(NAME, "CSV/TSV: an id column and one 0/1 column per label (empty or -1 = unknown)",
                  layout="file", texts=True)
WRITES_UNKNOWN = True  # its files can say "not known" for a label
_POSITIVE = ("1", "1.0")


def detect(src: Source) -> Fit | None:
    """The 0/1 columns (or --label-columns); two or more fit well, a single one less."""
    if not tables.is_table(src) or (src.label_columns is None and (src.labels_column is not None or src.no_header)):
        return None
    if src.label_columns is not None:
        return Fit(NAME, 0.95, f"columns {preview(src.label_columns)} (--label-columns)",
                   pick="--label-columns " + ",".join(src.label_columns))
    found = tables.plan(src)
    skip = (found.id_at, tables.class_id_column(found))
    binary = [j for j in found.kinds.binary if j not in skip and found.header[j] != src.text_column]
    empty = [j for j in found.kinds.empty if j not in (found.id_at, found.label_at) and found.header[j] != src.text_column]
    if not binary and empty and found.label_at is None:
        return Fit(NAME, 0.55, f"{len(empty)} columns with every cell empty: a one-hot file of unknown values "
                   "(label requests)", pick="--label-columns " + ",".join(found.header[j] for j in empty))
    if not binary:
        return None
    names = [found.header[j] for j in binary]
    why = f"{len(binary)} column(s) of 0/1 values ({preview(names, 5)})"
    pick = "--label-columns " + ",".join(names)
    if found.ids_repeat:
        return Fit(NAME, 0.35, f"{why}, one item per row although ids in {found.header[found.id_at]!r} repeat", pick=pick)
    return Fit(NAME, 0.85 if len(binary) > 1 else 0.6, why, pick=pick)


def read(src: Source) -> tuple[LabelTable, list[str]]:
    """Each row: the item id and a 0/1/unknown value per label column."""
    header, rows = src.csv()
    found = tables.plan(src)
    id_at = found.id_at
    if src.label_columns is not None:
        cols = [src.named_column(header, c, "labels") for c in src.label_columns]
    else:
        class_at = tables.class_id_column(found)
        if class_at is not None:
            src.notes.append(f"column {header[class_at]!r} is named as the labels but holds 0/1 beside the other 0/1 "
                             "columns: a class id, not a label (choose the columns with --label-columns)")
        tags_at = found.label_at if found.label_at not in found.kinds.binary else None
        cols = _label_columns(src, header, rows, [i for i in range(len(header))
                                                   if i not in (id_at, class_at) and header[i] != src.text_column],
                              tags_at)
    if not cols:
        raise DataError(f"{src.path}: no label columns besides the id column {header[id_at]!r}")
    if id_at in cols:
        raise DataError(f"{src.path}: column {header[id_at]!r} is both the id and a label column")
    names = _names(src, [header[c] for c in cols])
    locations = [f"{src.path.name} line {line}" for line, _ in rows]
    items = [src.item(fields[id_at], where) for (_, fields), where in zip(rows, locations)]
    cells = found.cells[:, cols]
    bad = ~np.isin(cells, list(ONEHOT_VALUES))
    if bad.any():
        i, j = map(int, np.argwhere(bad)[0])
        raise DataError(f"{locations[i]}, column {names[j]!r}: value {str(cells[i, j])!r} is not 0 or 1 "
                        "(empty or -1 = unknown)")
    targets = np.isin(cells, _POSITIVE).astype(np.uint8)
    unknown = ["", "-1", "-1.0"]
    if not np.isin(cells, ["0", "0.0"]).any() and np.isin(cells, ["-1", "-1.0"]).any():
        unknown = [""]  # -1/1 coding (CelebA's attribute CSV): with no 0 anywhere, -1 is the negative
        src.notes.append("the label columns hold -1 and 1 and never 0: -1 read as absent (CelebA-style -1/1 coding), "
                         "not as unknown")
    known = ~np.isin(cells, unknown)
    if len(set(names)) != len(names):
        raise DataError(f"{src.path}: label names repeat: {names}")
    order = sorted(range(len(names)), key=names.__getitem__)
    meta = {"delimiter": src.delim, "header": not src.no_header, "id_column": header[id_at], "columns": names}
    table = LabelTable(items, [names[j] for j in order], targets[:, order], known[:, order], NAME, meta)
    return table, locations


def _names(src: Source, names: list[str]) -> list[str]:
    if src.no_header:
        if src.names_file is None:
            raise DataError(f"{src.path}: a one-hot file without a header needs label_names_file "
                            "to name its label columns")
        found = src.names_from_file()
        if len(found) != len(names):
            raise DataError(f"{src.names_file} names {len(found)} labels but {src.path} has "
                            f"{len(names)} label columns")
        return found
    if src.names_file is not None:
        raise DataError(f"label_names_file names the columns of a headerless one-hot file only; {src.path} has a header")
    return names


def _label_columns(src: Source, header: list[str], rows: list, cols: list[int], tags_at: int | None) -> list[int]:
    """`cols` without the columns that hold values other than 0/1 in many rows (a class id, a size, a name) and
    without the tag reading's column `tags_at`, when other columns are 0/1; each column left out is named in a note.
    A column with a slip (one bad cell) stays, and the read reports that cell."""
    if not rows:
        return cols
    cells = tables.plan(src).cells[:, cols]
    other = (~np.isin(cells, list(ONEHOT_VALUES))).sum(axis=0)
    dropped = [c for c, n in zip(cols, other) if n >= max(2, 0.1 * len(rows)) or (c == tags_at and n)]
    keep = [c for c in cols if c not in dropped]
    if keep and dropped:
        names = ", ".join(repr(header[c]) for c in dropped)
        src.notes.append(f"column(s) {names} hold values other than 0/1 (a class id?): not read as labels; "
                         f"the labels are the 0/1 columns {preview([header[c] for c in keep])} "
                         "(choose others with --label-columns)")
        return keep
    return cols


def write(table: LabelTable, path: Path, meta: dict) -> None:
    """An id column and one 0/1 column per label; unknown values as empty cells."""
    header = meta.get("header", True)
    with path.open("w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f, delimiter=delimiter(path, meta), lineterminator="\n")
        if header:
            writer.writerow([meta.get("id_column", "image"), *table.label_names])
        for item, row, known in zip(table.items, table.targets, table.known):
            writer.writerow([item, *(str(int(v)) if k else "" for v, k in zip(row, known))])
