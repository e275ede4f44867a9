"""JSON: a list of records [{"image": ..., "labels": [...]}, ...]."""

from __future__ import annotations

import json
from pathlib import Path

from tagnet.data.formats.jsonl import from_records, record_keys, records_of
from tagnet.data.formats.source import Fit, FormatInfo, Source
from tagnet.data.label_table import LabelTable
from tagnet.errors import DataError

NAME = "json"
INFO = FormatInfo(NAME, 'a JSON list of records [{"image": ..., "labels": [...]}]',
                  layout="file", texts=True)


def detect(src: Source) -> Fit | None:
    """A .json file holding a list whose first record has an id key and a labels key."""
    if not (src.path.is_file() and src.path.suffix.lower() == ".json"):
        return None
    data = src.json()
    if not isinstance(data, list) or not data or record_keys(src, data[0]) is None:
        if not isinstance(data, list) or (data and isinstance(data[0], dict)):
            read(src)  # the message if no other format fits: what was found, what was expected
        return None
    id_key, labels_key = record_keys(src, data[0])
    return Fit(NAME, 0.8, f"a list of records with keys {id_key!r} (id) and {labels_key!r} (labels)")


def read(src: Source) -> tuple[LabelTable, list[str]]:
    """Each record of the list: the item id and its labels."""
    data = src.json()
    if not isinstance(data, list):
        found = f"an object with keys {sorted(data)[:10]}" if isinstance(data, dict) else type(data).__name__
        raise DataError(f"{src.path}: expected a list of records like {{\"image\": ..., \"labels\": [...]}} "
                        f"or a COCO instances file (images, annotations, categories); found {found}")
    return from_records(src, data, [f"{src.path.name} record {i}" for i in range(len(data))], NAME)


def write(table: LabelTable, path: Path, meta: dict) -> None:
    """The records as one indented JSON list."""
    path.write_text(json.dumps(records_of(table, meta), ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
