"""Labelbox NDJSON export (v2): one data row per line with its projects' labels (objects and classifications)."""

from __future__ import annotations

from typing import Any

from tagnet.data.formats.source import Fit, FormatInfo, Records, Source
from tagnet.data.label_table import LabelTable
from tagnet.errors import DataError

NAME = "labelbox"
INFO = FormatInfo(NAME, "Labelbox NDJSON export v2 (data_row + projects.<id>.labels: objects and radio/checklist answers)",
                  layout="file", own_names=True, specific=True)


def detect(src: Source) -> Fit | None:
    """JSON Lines whose records have a data_row object and a projects object."""
    if not src.path.is_file() or src.path.suffix.lower() in (".csv", ".tsv", ".xml"):
        return None
    first = src.first_record() if src.path.suffix.lower() != ".json" else None
    if isinstance(first, dict) and isinstance(first.get("data_row"), dict) and isinstance(first.get("projects"), dict):
        return Fit(NAME, 0.95, "NDJSON rows with data_row and projects (Labelbox export v2)")
    return None


def read(src: Source) -> tuple[LabelTable, list[str]]:
    """Each data row (named by external_id, global_key or row_data) with every object's and answer's name."""
    records, locations = src.jsonl()
    items, sets = [], []
    for record, where in zip(records, locations):
        row = record.get("data_row") if isinstance(record, dict) else None
        if not isinstance(row, dict) or not isinstance(record.get("projects"), dict):
            raise DataError(f"{where}: expected a Labelbox export row {{\"data_row\": {{...}}, \"projects\": {{...}}}}")
        item = next((row[k] for k in ("external_id", "global_key", "row_data", "id") if isinstance(row.get(k), str)
                     and row[k].strip()), None)
        if item is None:
            raise DataError(f"{where}: data_row has no external_id, global_key or row_data naming the item")
        labels: set[str] = set()
        for project in record["projects"].values():
            for label in (project or {}).get("labels", []):
                annotations = (label or {}).get("annotations", {})
                labels |= {o["name"] for o in annotations.get("objects", []) if isinstance(o, dict) and o.get("name")}
                for c in annotations.get("classifications", []):
                    labels |= _answers(c)
        items.append(item.strip())
        sets.append(sorted(labels))
    return src.table(Records(items, sets, locations), NAME)


def _answers(classification: Any) -> set[str]:
    """The answer names of a radio, checklist or free-text classification."""
    if not isinstance(classification, dict):
        return set()
    radio = classification.get("radio_answer")
    found = {radio["name"]} if isinstance(radio, dict) and radio.get("name") else set()
    found |= {a["name"] for a in classification.get("checklist_answers", []) or [] if isinstance(a, dict) and a.get("name")}
    return found
