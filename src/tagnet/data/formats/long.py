"""Long format: one row (CSV/TSV) or record (JSON Lines) per annotation, grouped by item id."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np

from tagnet.data.columns import ID_COLUMNS, LABEL_COLUMNS, pick_column
from tagnet.data.formats import jsonl
from tagnet.data.formats import table as tables
from tagnet.data.formats.source import Fit, FormatInfo, Source
from tagnet.data.formats.tags import delimiter
from tagnet.data.label_table import LabelTable
from tagnet.errors import DataError

NAME = "long"
INFO = FormatInfo(NAME, "one row (CSV/TSV) or JSON Lines record per annotation (e.g. Open Images boxes): id + one label, "
           "rows grouped by id",
                  layout="file")
CONFIDENCE_COLUMNS = ("confidence",)  # a 0/1 column saying whether the row's label is present (0: verified absent)


def detect(src: Source) -> Fit | None:
    """Ids that repeat with one label on each row (CSV), or with one label string per record (JSON Lines)."""
    if jsonl.is_jsonl(src):
        found = jsonl.scalar_labels(src)
        if found is None or not found[2]:
            return None
        id_key, labels_key, _ = found
        return Fit(NAME, 0.9, f"ids under {id_key!r} repeat and each record has one {labels_key!r} string",
                   pick="--format long")
    if src.label_columns is not None or not tables.is_table(src):
        return None
    found = tables.plan(src)
    if found.label_at is None or not found.ids_repeat or found.label_at in found.kinds.lists:
        return None
    if found.long_why is not None:
        return Fit(NAME, 0.9, found.long_why, pick="--format long")
    return Fit(NAME, 0.4, f"ids in {found.header[found.id_at]!r} repeat, but column {found.header[found.label_at]!r} "
               "is named as a list of tags", pick="--format long")


def read(src: Source) -> tuple[LabelTable, list[str]]:
    """Rows grouped by item id (first appearance order); each row's label cell is one label, read whole."""
    if jsonl.is_jsonl(src):
        records, locations = src.jsonl()
        id_key, labels_key = _keys(src, records, locations)
        ids = [src.item(str(r.get(id_key, "")), where) for r, where in zip(records, locations)]
        labels = [r.get(labels_key) for r in records]
        bad = next((where for value, where in zip(labels, locations)
                    if value is not None and not isinstance(value, (str, int))), None)
        if bad is not None:
            raise DataError(f"{bad}: {labels_key!r} must be one label (a string) in a long file")
        meta = {"id_key": id_key, "labels_key": labels_key, "layout": "jsonl"}
        return _grouped(src, ids, [[] if v is None else [str(v).strip()] for v in labels], locations, meta)
    found = tables.plan(src)
    if found.label_at is None:
        raise DataError(f"{src.path}: no label column; available columns: {', '.join(found.header)}")
    locations = [f"{src.path.name} line {line}" for line, _ in found.rows]
    ids = [src.item(fields[found.id_at], where) for (_, fields), where in zip(found.rows, locations)]
    cells = [fields[found.label_at].strip() for _, fields in found.rows]
    confidence = pick_column(found.header, CONFIDENCE_COLUMNS)
    if confidence is not None and confidence in found.kinds.binary:  # Open Images image labels: 0 = verified absent
        absent = [fields[confidence].strip() in ("0", "0.0") for _, fields in found.rows]
        cells = ["" if no else cell for cell, no in zip(cells, absent)]
        if any(absent):
            src.notes.append(f"{sum(absent)} row(s) with {found.header[confidence]} 0 say the label is absent: "
                             "not read as labels")
    sets = [tables.split_tags(c, src.separator) if src.separator else ([c] if c else []) for c in cells]
    meta = {"delimiter": src.delim, "id_column": found.header[found.id_at],
            "labels_column": found.header[found.label_at], "layout": "csv"}
    return _grouped(src, ids, sets, locations, meta)


def _keys(src: Source, records: list, locations: list[str]) -> tuple[str, str]:
    first, where = (records[0], locations[0]) if records else ({}, str(src.path))
    if not isinstance(first, dict):
        raise DataError(f"{where}: expected an object like {{\"image\": ..., \"label\": ...}}")
    return (src.key(first, src.id_column, ID_COLUMNS, "item id", where),
            src.key(first, src.labels_column, LABEL_COLUMNS, "labels", where))


def _grouped(src: Source, ids: list[str], sets: list[list[str]], locations: list[str],
             meta: dict) -> tuple[LabelTable, list[str]]:
    """One item per distinct id, with the union of its rows' labels; a note says how many rows were grouped."""
    order, first = np.unique(np.array(ids, dtype=object), return_index=True)
    keep = np.sort(first)
    items = [ids[i] for i in keep]
    index = {item: k for k, item in enumerate(items)}
    grouped: list[set[str]] = [set() for _ in items]
    for item, labels in zip(ids, sets):
        grouped[index[item]].update(labels)
    src.notes.append(f"{len(ids)} rows, {len(items)} distinct ids: one row per annotation, grouped by id "
                     f"({meta.get('id_column') or meta.get('id_key')})")
    table, _ = src.from_tags(items, [sorted(s) for s in grouped], [locations[i] for i in keep], NAME, meta)
    return table, [locations[i] for i in keep]


def write(table: LabelTable, path: Path, meta: dict) -> None:
    """One row (or JSON Lines record) per (item, label); an item without labels gets one row with no label."""
    rows = [(item, label) for item, labels in zip(table.items, table.label_sets()) for label in (labels or [""])]
    if meta.get("layout") == "jsonl" or path.suffix.lower() in (".jsonl", ".ndjson"):
        id_key, labels_key = meta.get("id_key", "image"), meta.get("labels_key", "label")
        path.write_text("".join(json.dumps({id_key: item, labels_key: label or None}, ensure_ascii=False) + "\n"
                                for item, label in rows), encoding="utf-8")
        return
    with path.open("w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f, delimiter=delimiter(path, meta), lineterminator="\n")
        writer.writerow([meta.get("id_column", "image"), meta.get("labels_column", "class_name")])
        writer.writerows(rows)
