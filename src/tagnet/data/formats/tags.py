"""Tags CSV/TSV: an id column and a column of tags (space, comma, ; or | between them, or list literals)."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Sequence

from tagnet.data.columns import list_cell
from tagnet.data.formats import table as tables
from tagnet.data.formats.source import Fit, FormatInfo, preview, Source, TAB_SUFFIXES
from tagnet.data.label_table import LabelTable
from tagnet.errors import DataError

NAME = "tags"
INFO = FormatInfo(NAME, "CSV/TSV: an id column and a tags column, tags split at space , ; | or written as a list literal",
                  layout="file", texts=True)


def detect(src: Source) -> Fit | None:
    """A tag reading: the column named labels/tags/..., a column of list literals, a class id beside 0/1 columns,
    or the column beside the id; weak when ids repeat with one label a row (a long file)."""
    if src.label_columns is not None or not tables.is_table(src):
        return None
    found = tables.plan(src)
    if found.label_at is None:
        if not found.kinds.binary:  # the message if no other format fits either
            raise DataError(f"{src.path}: no labels column; available columns: {', '.join(found.header)}")
        return None
    pick = f"--labels-column {found.header[found.label_at]}"
    if found.long_why is not None:
        return Fit(NAME, 0.3, f"{found.label_why}, one item per row although {found.long_why}", pick=pick)
    return Fit(NAME, found.label_score, found.label_why, {"labels_column": found.header[found.label_at]}, pick)


def read(src: Source) -> tuple[LabelTable, list[str]]:
    """Each row: the item id and its tags (split at the separator, or parsed from a list literal)."""
    found = tables.plan(src)
    header, rows = found.header, found.rows
    id_at = found.id_at
    labels_at = found.label_at
    if labels_at is None:
        raise DataError(f"{src.path}: no labels column; available columns: {', '.join(header)}")
    if labels_at == id_at:
        raise DataError(f"{src.path}: the id column and the labels column are both {header[id_at]!r}")
    locations = [f"{src.path.name} line {line}" for line, _ in rows]
    cells = [fields[labels_at].strip() for _, fields in rows]
    if labels_at in found.kinds.lists and src.separator is None:
        sep = "list"
        tag_lists = [list_cell(cell, f"{where}, column {header[labels_at]!r}") for cell, where in zip(cells, locations)]
        src.notes.append(f"column {header[labels_at]!r} holds list literals ({cells[0][:40]!r}, ...): each read as "
                         "a list of labels")
    elif src.separator is None and tables.one_label_cells(header[labels_at], cells):
        sep = "whole"
        tag_lists = [[cell] if cell else [] for cell in cells]
        if any(" " in cell for cell in cells):
            src.notes.append(f"column {header[labels_at]!r} names one class per row: each cell read whole (e.g. "
                             f"{next(c for c in cells if ' ' in c)!r}); give --separator to split cells")
    else:
        sep = src.separator if src.separator is not None else tables.detect_separator(cells)
        tag_lists = [tables.split_tags(cell, sep) for cell in cells]
    items = [src.item(fields[id_at], where) for (_, fields), where in zip(rows, locations)]
    meta = {"delimiter": src.delim, "header": not src.no_header,
            "id_column": header[id_at], "labels_column": header[labels_at], "separator": sep}
    return src.from_tags(items, tag_lists, locations, NAME, meta)


def write(table: LabelTable, path: Path, meta: dict) -> None:
    """Columns (id, tags) with the delimiter, column names and separator of `meta` (list literals as JSON lists)."""
    header = meta.get("header", True)
    separator = meta.get("separator", " ")
    separator = "," if separator == "whole" else separator  # a class column with several labels: split at commas
    if separator != "list":
        separator = writable_separator(table.label_names, separator)
    index = {n: i for i, n in enumerate(meta["index_names"])} if meta.get("labels_are_indices") else None
    with path.open("w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f, delimiter=delimiter(path, meta), lineterminator="\n")
        if header:
            writer.writerow([meta.get("id_column", "image"), meta.get("labels_column", "labels")])
        for item, labels in zip(table.items, table.label_sets()):
            tags = [str(index[label]) for label in labels] if index is not None else labels
            if separator == "list":
                writer.writerow([item, "[" + ", ".join(repr(t) for t in tags) + "]"])
            else:
                writer.writerow([item, separator.join(tags)])


def delimiter(path: Path, meta: dict) -> str:
    """The field delimiter to write: tab for .tsv, else the one read (a tab not kept in a .csv)."""
    if path.suffix.lower() in TAB_SUFFIXES:
        return "\t"
    found = meta.get("delimiter", ",")
    return "," if found == "\t" and path.suffix.lower() == ".csv" else found


def writable_separator(names: Sequence[str], preferred: str) -> str:
    """`preferred`, or the first of , ; | that no label name contains."""
    def clashes(sep: str) -> bool:
        return any((any(c.isspace() for c in n) if sep.isspace() else sep in n) for n in names)
    for sep in (preferred, *tables.TAG_SEPARATORS):
        if not clashes(sep):
            return sep
    raise DataError(f"every tag separator occurs inside some label name ({preview(names)})")
