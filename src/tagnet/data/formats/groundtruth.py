"""Amazon SageMaker Ground Truth output manifests: JSON Lines {"source-ref", "<job>", "<job>-metadata"}."""

from __future__ import annotations

from pathlib import PurePosixPath
from typing import Any
from urllib.parse import urlparse

from tagnet.data.formats.source import Fit, FormatInfo, Records, Source
from tagnet.data.label_table import LabelTable
from tagnet.errors import DataError

NAME = "groundtruth"
INFO = FormatInfo(NAME, "SageMaker Ground Truth output manifest (image/text classification, multi-label, object detection): "
           "source-ref + <job> + <job>-metadata",
                  layout="file", texts=True, own_names=True, specific=True)
_SOURCES = ("source-ref", "source")


def _job(record: Any) -> str | None:
    """The label attribute of a manifest line: the key K with a K-metadata object."""
    if not isinstance(record, dict) or not any(k in record for k in _SOURCES):
        return None
    return next((k.removesuffix("-metadata") for k, v in record.items()
                 if k.endswith("-metadata") and isinstance(v, dict)), None)


def detect(src: Source) -> Fit | None:
    """JSON Lines whose first record has source-ref (or source) and a <job> / <job>-metadata pair."""
    if not src.path.is_file() or src.path.suffix.lower() in (".json", ".csv", ".tsv", ".xml"):
        return None
    job = _job(src.first_record())
    if job is None:
        return None
    return Fit(NAME, 0.95, f"manifest lines with source-ref and the label attribute {job!r} + {job}-metadata")


def read(src: Source) -> tuple[LabelTable, list[str]]:
    """Each line: the source (an S3 object's file name, or the text) with the classes its job gave it."""
    records, locations = src.jsonl()
    items, sets, texts, jobs, failed = [], [], [], set(), []
    for record, where in zip(records, locations):
        job = _job(record)
        if job is None:
            raise DataError(f"{where}: expected a Ground Truth line with source-ref and a <job>-metadata object")
        jobs.add(job)
        if job not in record:  # the object was not labelled (metadata holds a failure-reason)
            failed.append(where)
            continue
        labels = _labels(record[job], record[f"{job}-metadata"], f"{where}, {job!r}")
        source = record.get("source-ref", record.get("source"))
        if not isinstance(source, str) or not source.strip():
            raise DataError(f"{where}: source-ref must be the object's S3 URI, got {source!r}")
        items.append(_item(source) if "source-ref" in record else source.strip())
        texts.append(record.get("source"))
        sets.append(sorted(labels))
    meta = {"notes": [f"items are the file names of the source-ref S3 URIs (e.g. {records[0]['source-ref']!r} -> "
                      f"{_item(records[0]['source-ref'])!r}): give --images the folder they were downloaded to"]} if (
        records and "source-ref" in records[0]) else {}
    if failed:
        meta.setdefault("notes", []).append(f"{len(failed)} line(s) have no label (the job failed on them, e.g. "
                                            f"{failed[0]}): left out")
    if len(jobs) > 1:
        meta.setdefault("notes", []).append(f"labels of several jobs merged: {sorted(jobs)}")
    has_text = all(isinstance(t, str) for t in texts) and bool(texts)
    return src.table(Records(items, sets, locations, texts=texts if has_text else None, meta=meta), NAME)


def _item(uri: str) -> str:
    return PurePosixPath(urlparse(uri.strip()).path).name or uri.strip()


def _labels(value: Any, metadata: dict, where: str) -> set[str]:
    """The class names of one job result: a class id (classification), a list of ids (multi-label) or
    {"annotations": [{"class_id": ...}]} (object detection), named by metadata class-map or class-name."""
    class_map = {str(k): str(v) for k, v in (metadata.get("class-map") or {}).items()}
    if isinstance(value, dict):
        ids = [a.get("class_id") for a in value.get("annotations", []) if isinstance(a, dict)]
    elif isinstance(value, list):
        ids = value
    else:
        ids = [value]
        if "class-name" in metadata and str(value) not in class_map:
            class_map[str(value)] = str(metadata["class-name"])
    names = set()
    for class_id in ids:
        if str(class_id) not in class_map:
            raise DataError(f"{where}: class id {class_id!r} is not in the metadata's class-map {class_map}")
        names.add(class_map[str(class_id)])
    return names
