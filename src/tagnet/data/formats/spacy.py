"""spaCy text classification JSONL: {"text": ..., "cats": {"label": score}}; a listed score >= 0.5 is a positive."""

from __future__ import annotations

from typing import Any

import numpy as np

from tagnet.data.formats.jsonl import is_jsonl
from tagnet.data.formats.source import Fit, FormatInfo, Records, Source
from tagnet.data.label_table import LabelTable
from tagnet.errors import DataError

NAME = "spacy"
INFO = FormatInfo(NAME, 'spaCy textcat JSONL {"text", "cats"} (a label a record leaves out is unknown there)',
                  layout="file", texts=True, own_names=True, specific=True)
WRITES_UNKNOWN = True  # its files can say "not known" for a label
SPACY_POSITIVE = 0.5  # a spaCy cat score at or above this is a positive, below it a negative


def detect(src: Source) -> Fit | None:
    """JSON Lines records with "text" and a "cats" object."""
    first = src.first_record() if is_jsonl(src) else None
    if is_spacy_record(first):  # a Prodigy answer beside the cats: Prodigy's reading (accept/reject) is the closer fit
        return Fit(NAME, 0.9 if "answer" in first else 0.95, 'JSON Lines records with "text" and a "cats" object')
    return None


def read(src: Source) -> tuple[LabelTable, list[str]]:
    """The texts with their cats scores (>= 0.5 positive, listed below negative, missing unknown)."""
    return src.table(read_spacy(*src.jsonl(), text_key=src.text_column), NAME)


def write(table: LabelTable, path, meta: dict) -> None:
    """One {"text", "cats"} record per item; unknown labels left out of its cats."""
    import json  # noqa: PLC0415

    key = meta.get("text_key", "text")
    path.write_text("".join(json.dumps({key: item, "cats": {n: float(v) for n, v, k in zip(table.label_names, row, known)
                                                            if k}}, ensure_ascii=False) + "\n"
                            for item, row, known in zip(table.items, table.targets, table.known)), encoding="utf-8")


def is_spacy_record(record: Any) -> bool:
    """Whether a JSON Lines record is spaCy's text classification form {"text": ..., "cats": {...}}."""
    return isinstance(record, dict) and isinstance(record.get("cats"), dict) and "text" in record


def read_spacy(records: list[Any], locations: list[str], *, text_key: str | None) -> Records:
    """spaCy-style records {"text": ..., "cats": {"label": score}}: a score >= 0.5 is a positive, a listed score
    below 0.5 a negative, a label a record does not list is unknown there. Items are the texts.

    Raises:
        DataError: a record without text or cats, or a score that is not a number.
    """
    key = text_key or "text"
    names = sorted({str(label) for r in records if isinstance(r, dict) and isinstance(r.get("cats"), dict)
                    for label in r["cats"]})
    index = {name: j for j, name in enumerate(names)}
    targets = np.zeros((len(records), len(names)), dtype=np.uint8)
    known = np.zeros((len(records), len(names)), dtype=bool)
    texts = []
    for i, (record, where) in enumerate(zip(records, locations)):
        if not isinstance(record, dict) or not isinstance(record.get("cats"), dict):
            raise DataError(f"{where}: expected a spaCy record {{\"text\": ..., \"cats\": {{\"label\": 1.0}}}}")
        text = record.get(key)
        if not isinstance(text, str) or not text.strip():
            raise DataError(f"{where}: the text key {key!r} must hold a non-empty string, got {text!r}")
        for label, score in record["cats"].items():
            if not isinstance(score, (int, float)) or isinstance(score, bool) or not np.isfinite(score):
                raise DataError(f"{where}: cats[{label!r}] is {score!r}; expected a score from 0 to 1")
            known[i, index[str(label)]] = True
            targets[i, index[str(label)]] = score >= SPACY_POSITIVE
        texts.append(text)
    return Records([t.strip() for t in texts], None, locations, texts=texts, label_names=names,
                   targets=targets, known=known, meta={"text_key": key})
