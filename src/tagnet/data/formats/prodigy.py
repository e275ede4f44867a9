"""Prodigy annotations (db-out JSONL): textcat answers accept / reject / ignore, binary or choice."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from tagnet.data.formats.jsonl import is_jsonl
from tagnet.data.formats.source import Fit, FormatInfo, Records, Source
from tagnet.data.label_table import LabelTable
from tagnet.errors import DataError

NAME = "prodigy"
INFO = FormatInfo(NAME, "Prodigy textcat JSONL (db-out): label + answer (accept = has it, reject = has not, ignore = unknown), "
           "or choice options + accept",
                  layout="file", texts=True, own_names=True, specific=True)
WRITES_UNKNOWN = True  # its files can say "not known" for a label
ANSWERS = ("accept", "reject", "ignore")


def detect(src: Source) -> Fit | None:
    """JSON Lines records with "answer" (accept/reject/ignore) and a "label" or "options"."""
    first = src.first_record() if is_jsonl(src) else None
    if isinstance(first, dict) and first.get("answer") in ANSWERS and ("label" in first or "options" in first):
        return Fit(NAME, 0.95, 'Prodigy records with "answer" and a "label" (or choice "options")')
    return None


def _item(record: dict, key: str | None) -> str | None:
    value = record.get(key or ("text" if "text" in record else "image"))
    return value.strip() if isinstance(value, str) and value.strip() else None


def read(src: Source) -> tuple[LabelTable, list[str]]:
    """One item per text (or image); every answer about a label sets it: accept 1, reject 0, ignore unknown."""
    records, locations = src.jsonl()
    order: dict[str, int] = {}
    answers: list[tuple[int, str, int | None]] = []  # (item row, label, 1 / 0 / None = unknown)
    first_at: list[str] = []
    for record, where in zip(records, locations):
        if not isinstance(record, dict) or record.get("answer") not in ANSWERS:
            raise DataError(f"{where}: expected a Prodigy record with \"answer\" accept, reject or ignore")
        item = _item(record, src.id_column and str(src.id_column))
        if item is None:
            raise DataError(f"{where}: no text (or image) naming the item")
        if item not in order:
            order[item] = len(order)
            first_at.append(where)
        answers += [(order[item], label, value) for label, value in _record_answers(record, where)]
    names = sorted({label for _, label, _ in answers})
    index = {name: j for j, name in enumerate(names)}
    targets = np.zeros((len(order), len(names)), dtype=np.uint8)
    known = np.zeros((len(order), len(names)), dtype=bool)
    for row, label, value in answers:
        if value is not None:
            targets[row, index[label]] = value
            known[row, index[label]] = True
    items = list(order)
    notes = [f"{len(records)} answers on {len(items)} items: accept = has the label, reject = has not, "
             f"ignore = unknown ({int((~known).sum())} unknown values)"]
    return src.table(Records(items, None, first_at, texts=items, label_names=names, targets=targets, known=known,
                             meta={"notes": notes}), NAME)


def _record_answers(record: dict, where: str) -> list[tuple[str, int | None]]:
    """(label, value) pairs one record states: binary {"label", "answer"}, or choice {"options", "accept"}."""
    answer = record["answer"]
    if "options" in record:
        options = [str(o.get("id")) for o in record["options"] if isinstance(o, dict)]
        accepted = {str(a) for a in record.get("accept", []) or []}
        if answer != "accept":
            return [(o, None) for o in options]
        return [(o, int(o in accepted)) for o in options]
    label = record.get("label")
    if not isinstance(label, str) or not label.strip():
        raise DataError(f"{where}: \"label\" must name the label asked about, got {label!r}")
    return [(label.strip(), {"accept": 1, "reject": 0}.get(answer))]


def write(table: LabelTable, path: Path, meta: dict) -> None:
    """One binary record per known value: {"text", "label", "answer": accept/reject}."""
    lines = [json.dumps({"text": item, "label": name, "answer": "accept" if value else "reject"}, ensure_ascii=False)
             for item, row, known in zip(table.items, table.targets, table.known)
             for name, value, k in zip(table.label_names, row, known) if k]
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
