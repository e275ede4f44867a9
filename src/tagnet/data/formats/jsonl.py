"""JSON Lines: one record per line, {"image": ..., "labels": [...]} (keys detected or given)."""

from __future__ import annotations

import json
from pathlib import Path

from tagnet.data.columns import ID_COLUMNS, LABEL_COLUMNS, PLURAL_LABEL_COLUMNS
from tagnet.data.formats.source import Fit, FormatInfo, Source
from tagnet.data.label_table import LabelTable
from tagnet.errors import DataError

NAME = "jsonl"
INFO = FormatInfo(NAME, 'JSON Lines records {"image": ..., "labels": [...]}',
                  layout="file", texts=True)
SUFFIXES = (".jsonl", ".ndjson")


def is_jsonl(src: Source) -> bool:
    """Whether the source is a JSON Lines file (by its suffix)."""
    return src.path.is_file() and src.path.suffix.lower() in SUFFIXES


def record_keys(src: Source, record: object) -> tuple[str, str] | None:
    """The id and labels keys a record has (given, or of the usual names), else None."""
    if not isinstance(record, dict):
        return None
    id_key = str(src.id_column) if src.id_column is not None else next((k for k in ID_COLUMNS if k in record),
                                                                        src.text_column)
    labels_key = (str(src.labels_column) if src.labels_column is not None
                  else next((k for k in LABEL_COLUMNS if k in record), None))
    if id_key not in record or labels_key not in record:
        return None
    return id_key, labels_key


def scalar_labels(src: Source) -> tuple[str, str, bool] | None:
    """(id key, labels key, ids repeat) when the records hold one label string each, else None."""
    records, _ = src.jsonl()
    keys = record_keys(src, records[0]) if records else None
    if keys is None or keys[1].lower() in PLURAL_LABEL_COLUMNS or not all(isinstance(r, dict) and isinstance(r.get(keys[1]), (str, type(None))) for r in records):
        return None
    ids = [str(r.get(keys[0])) for r in records]
    return keys[0], keys[1], len(set(ids)) < len(ids)


def detect(src: Source) -> Fit | None:
    """Records with an id key and a labels key (a list, or one label string per item)."""
    if not is_jsonl(src):
        return None
    first = src.first_record()
    keys = record_keys(src, first)
    if keys is None:
        if isinstance(first, dict):  # the message if no other format fits either
            where = f"{src.path.name} line 1"
            src.key(first, src.id_column or src.text_column, ID_COLUMNS, "item id", where)
            src.key(first, src.labels_column, LABEL_COLUMNS, "labels", where)
        return None
    scalar = scalar_labels(src)
    if scalar is not None and scalar[2]:
        return Fit(NAME, 0.3, f"records {{{keys[0]!r}, {keys[1]!r}}}, one item per record although the ids repeat",
                   pick="--format jsonl")
    return Fit(NAME, 0.8, f"records with keys {keys[0]!r} (id) and {keys[1]!r} (labels)")


def read(src: Source) -> tuple[LabelTable, list[str]]:
    """Each record: the item id and its labels (a list, or one label string)."""
    return from_records(src, *src.jsonl(), NAME)


def from_records(src: Source, records: list, locations: list[str], fmt: str) -> tuple[LabelTable, list[str]]:
    """A table of JSON records {id_key: ..., labels_key: [...]}; under a singular key ("label") one string."""
    src.records = (records, locations)
    items, tag_lists, keys = [], [], None
    for record, where in zip(records, locations):
        if not isinstance(record, dict):
            raise DataError(f"{where}: expected an object like {{\"image\": ..., \"labels\": [...]}}, "
                            f"got {type(record).__name__}")
        id_key = src.key(record, src.id_column, ID_COLUMNS, "item id", where)
        labels_key = src.key(record, src.labels_column, LABEL_COLUMNS, "labels", where)
        keys = keys or (id_key, labels_key)
        value = record[id_key]
        if not isinstance(value, (str, int)) or isinstance(value, bool):
            raise DataError(f"{where}: {id_key!r} must be a string, got {value!r}")
        items.append(src.item(str(value), where))
        labels = record[labels_key]
        if isinstance(labels, str) and labels_key.lower() not in PLURAL_LABEL_COLUMNS:
            labels = [labels]  # one label, under a singular key ("label")
        if not isinstance(labels, list) or not all(isinstance(t, (str, int)) and not isinstance(t, bool) for t in labels):
            raise DataError(f"{where}: {labels_key!r} must be a list of label names, got {labels!r}")
        tag_lists.append([str(t).strip() for t in labels if str(t).strip()])
    id_key, labels_key = keys or ("image", "labels")
    return src.from_tags(items, tag_lists, locations, fmt, {"id_key": id_key, "labels_key": labels_key})


def records_of(table: LabelTable, meta: dict) -> list[dict]:
    """The table as JSON records with the id and labels keys of `meta`."""
    id_key, labels_key = meta.get("id_key", "image"), meta.get("labels_key", "labels")
    return [{id_key: item, labels_key: labels} for item, labels in zip(table.items, table.label_sets())]


def write(table: LabelTable, path: Path, meta: dict) -> None:
    """One JSON record per line."""
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records_of(table, meta)),
                    encoding="utf-8")
