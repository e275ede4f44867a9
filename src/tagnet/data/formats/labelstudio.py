"""Label Studio JSON export: a list of tasks {"data": {...}, "annotations": [{"result": [...]}]} (or one task)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Sequence
from urllib.parse import parse_qs, unquote, urlparse

from tagnet.data.formats.source import Fit, FormatInfo, Records, Source
from tagnet.data.label_table import LabelTable
from tagnet.errors import DataError

NAME = "labelstudio"
INFO = FormatInfo(NAME, "Label Studio JSON export (choices and *labels results of completed annotations)",
                  layout="file", texts=True, own_names=True, specific=True)
# Label Studio CSV columns that describe the annotation, not the task's data or its labels
LABEL_STUDIO_CSV_COLUMNS = ("id", "annotator", "annotation_id", "created_at", "updated_at", "lead_time")
_UPLOAD_PREFIX = re.compile(r"^[0-9a-f]+-(?=.)")  # the hash Label Studio puts before an uploaded file's name


def detect(src: Source) -> Fit | None:
    """A .json task list (or one task) with "data" and "annotations" (or "predictions")."""
    if src.path.is_file() and src.path.suffix.lower() == ".json" and is_label_studio_json(src.json()):
        return Fit(NAME, 0.95, 'Label Studio tasks ("data" and "annotations")')
    return None


def read(src: Source) -> tuple[LabelTable, list[str]]:
    """Every task with a completed annotation, with the union of its results' labels."""
    opt = None if src.id_column is None else str(src.id_column)
    return src.table(read_label_studio_json(src.path, src.json(), id_key=opt, text_key=src.text_column), NAME)


def is_label_studio_json(data: Any) -> bool:
    """Whether parsed JSON is a Label Studio JSON export: a task ({"data": {...}, "annotations": [...]}) or a list of them."""
    first = data[0] if isinstance(data, list) and data else data
    return isinstance(first, dict) and isinstance(first.get("data"), dict) and (
        "annotations" in first or "predictions" in first)


def is_label_studio_csv(header: Sequence[str]) -> bool:
    """Whether a CSV header is Label Studio's CSV export (it has annotation_id and annotator columns)."""
    lowered = {h.lower() for h in header}
    return {"annotation_id", "annotator"} <= lowered


def label_studio_item(value: str) -> str:
    """An image reference of a Label Studio task as a path relative to the images folder.

    "/data/upload/3/0a1b2c3d-photo.jpg" -> "photo.jpg" (the hash prefix Label Studio adds to uploads is dropped),
    "/data/local-files/?d=dir/photo.jpg" -> "dir/photo.jpg"; anything else is kept as is.
    """
    parsed = urlparse(value)
    if parsed.path.rstrip("/").endswith("/data/local-files") and "d" in parse_qs(parsed.query):
        return parse_qs(parsed.query)["d"][0]
    if "/data/upload/" in parsed.path:
        return _UPLOAD_PREFIX.sub("", unquote(parsed.path.rsplit("/", 1)[-1]))
    return value


def read_label_studio_json(path: Path, data: Any, *, id_key: str | None, text_key: str | None) -> Records:
    """A Label Studio JSON export (a list of tasks, or one task).

    Labels are the union of every non-cancelled annotation's results: value.choices, and value.<kind>labels
    (rectanglelabels, polygonlabels, labels, ...). The item is data[id_key] (default: data.image, else data.text,
    else the task id), image paths with Label Studio's upload prefixes removed. Tasks without a completed
    annotation are left out, with a note in meta.

    Raises:
        DataError: naming the task and the key that is not as Label Studio writes it.
    """
    tasks = data if isinstance(data, list) else [data]
    items, sets, locations, texts = [], [], [], []
    unannotated, merged = [], 0
    for k, task in enumerate(tasks):
        where = f"{path.name} task {task.get('id', k) if isinstance(task, dict) else k}"
        if not isinstance(task, dict) or not isinstance(task.get("data"), dict):
            raise DataError(f"{where}: expected a Label Studio task {{\"data\": {{...}}, \"annotations\": [...]}}")
        annotations = [a for a in task.get("annotations") or [] if isinstance(a, dict) and not a.get("was_cancelled")]
        if not annotations:
            unannotated.append(where)
            continue
        merged += len(annotations) > 1
        labels: set[str] = set()
        for n, annotation in enumerate(annotations):
            results = annotation.get("result")
            if not isinstance(results, list):
                raise DataError(f"{where}: annotations[{n}].result must be a list, got {results!r}")
            for result in results:
                labels.update(_result_labels(result, f"{where} annotation {n}"))
        items.append(_task_item(task, id_key, where))
        texts.append(task["data"].get(text_key or "text"))
        sets.append(sorted(labels))
        locations.append(where)
    meta: dict = {}
    notes = []
    if unannotated:
        notes.append(f"{len(unannotated)} task(s) without a completed annotation were left out "
                     f"(first: {unannotated[0]})")
    if merged:
        notes.append(f"{merged} task(s) have several annotations; their labels were merged")
    if notes:
        meta["notes"] = notes
    if id_key is None and texts and all(isinstance(t, str) for t in texts) and not any("image" in t["data"] for t in tasks):
        meta["text_items"] = True  # the items are the texts: written back as JSON Lines {"text": ..., "labels": [...]}
    return Records(items, sets, locations, texts=[t if isinstance(t, str) else None for t in texts], meta=meta)


def _task_item(task: dict, id_key: str | None, where: str) -> str:
    data = task["data"]
    if id_key is not None:
        if id_key not in data:
            raise DataError(f"{where}: data has no key {id_key!r} for the item id; it has {sorted(data)}")
        key = id_key
    else:
        key = next((k for k in ("image", "text") if k in data), None)
    value = data.get(key) if key is not None else task.get("id")
    if not isinstance(value, (str, int)) or isinstance(value, bool) or not str(value).strip():
        raise DataError(f"{where}: the item id ({'data.' + key if key else 'the task id'}) must be a non-empty "
                        f"string, got {value!r}")
    return label_studio_item(str(value).strip()) if key == "image" else str(value).strip()


def _result_labels(result: Any, where: str) -> list[str]:
    """The label names of one Label Studio result ({"type": ..., "value": {"choices"/"...labels": [...]}})."""
    value = result.get("value") if isinstance(result, dict) else None
    if not isinstance(value, dict):
        raise DataError(f"{where}: a result must be an object with a \"value\" object, got {result!r}")
    return _value_labels(value, where)


def _value_labels(value: dict, where: str) -> list[str]:
    labels = []
    for key, names in value.items():
        if key == "choices" or key.endswith("labels"):
            if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
                raise DataError(f"{where}: value.{key} must be a list of label names, got {names!r}")
            labels += [n.strip() for n in names if n.strip()]
    return labels


def is_result_cell(cell: str) -> bool:
    """Whether a CSV cell holds a Label Studio result: {"choices": [...]} or a list of {"...labels": [...]}."""
    cell = cell.strip()
    if cell[:1] not in "[{":
        return False
    try:
        value = json.loads(cell)
    except (ValueError, RecursionError):
        return False
    values = value if isinstance(value, list) else [value]
    return bool(values) and all(isinstance(v, dict) and any(k == "choices" or k.endswith("labels") for k in v)
                                for v in values)


def label_studio_cell(cell: str, where: str) -> list[str]:
    """The labels in one cell of a Label Studio CSV export: {"choices": [...]}, a list of such objects
    (shapes: [{"rectanglelabels": [...], ...}]) or one plain-text choice."""
    cell = cell.strip()
    if not cell:
        return []
    if cell[0] in "[{":
        try:
            value = json.loads(cell)
        except json.JSONDecodeError:
            return [cell]
        values = value if isinstance(value, list) else [value]
        if all(isinstance(v, dict) for v in values):
            return [label for v in values for label in _value_labels(v, where)]
        raise DataError(f"{where}: {cell[:60]!r} is not a Label Studio result ({{\"choices\": [...]}})")
    return [cell]
