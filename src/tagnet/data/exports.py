"""Readers of labelling tools' exports: CVAT XML, Label Studio JSON/CSV, spaCy JSONL and Hugging Face datasets."""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence
from urllib.parse import parse_qs, unquote, urlparse

import numpy as np

from tagnet.data.columns import ID_COLUMNS, LABEL_COLUMNS, pick_column
from tagnet.errors import DataError

# Label Studio CSV columns that describe the annotation, not the task's data or its labels
LABEL_STUDIO_CSV_COLUMNS = ("id", "annotator", "annotation_id", "created_at", "updated_at", "lead_time")
_UPLOAD_PREFIX = re.compile(r"^[0-9a-f]+-(?=.)")  # the hash Label Studio puts before an uploaded file's name
SPACY_POSITIVE = 0.5  # a spaCy cat score at or above this is a positive, below it a negative


@dataclass
class Records:
    """What an export holds, row by row: item ids, label names (or a 0/1/unknown matrix), texts, notes.

    Attributes:
        items: item ids (image paths, or the text where the export has no image).
        label_sets: the labels on each item (None when `targets`/`known` are given).
        locations: where each row came from ("tasks.json task 7").
        texts: the text of each item where the export holds text, else None.
        label_names: every label the export declares (None: the labels used).
        targets, known: a multi-hot matrix and its known-mask, columns in `label_names` order.
        meta: reader notes and settings recorded in the LabelTable's meta.
    """

    items: list[str]
    label_sets: list[list[str]] | None
    locations: list[str]
    texts: list[str] | None = None
    label_names: list[str] | None = None
    targets: np.ndarray | None = None
    known: np.ndarray | None = None
    meta: dict = field(default_factory=dict)


def is_cvat_xml(path: Path) -> bool:
    """Whether `path` is an XML file whose root element is CVAT's <annotations>."""
    try:
        for _, element in ET.iterparse(path, events=("start",)):
            return element.tag == "annotations"
    except (ET.ParseError, OSError):
        return False
    return False


def read_cvat(path: Path) -> Records:
    """A CVAT "for images 1.1" XML export: every <image name=...> with the labels of its <tag>, <box>,
    <polygon> (any element with a label attribute); the label set is the task's or project's labels from <meta>.

    Raises:
        DataError: broken XML, an <image> without a name or a shape without a label.
    """
    try:
        root = ET.parse(path).getroot()
    except ET.ParseError as e:
        raise DataError(f"{path}: broken XML ({e})") from None
    declared = [name.strip() for name in (label.findtext("name") for label in root.iterfind("meta//labels/label"))
                if name and name.strip()]
    items, sets, locations = [], [], []
    for image in root.iter("image"):
        where = f"{path.name} image id {image.get('id', '?')}"
        name = (image.get("name") or "").strip()
        if not name:
            raise DataError(f"{where}: <image> has no name attribute; expected the image's file name")
        labels = []
        for shape in image:
            label = shape.get("label")
            if label is None or not label.strip():
                raise DataError(f"{where}: <{shape.tag}> has no label attribute")
            labels.append(label.strip())
        items.append(name)
        sets.append(sorted(set(labels)))
        locations.append(where)
    if not items:
        raise DataError(f"{path}: a CVAT <annotations> file without <image> elements; expected the "
                        "\"CVAT for images 1.1\" export (\"CVAT for video\" writes <track> elements)")
    used = {label for labels in sets for label in labels}
    undeclared = sorted(used - set(declared))
    if declared and undeclared:
        raise DataError(f"{path}: label(s) {undeclared} are used but not declared in <meta> labels {declared}")
    return Records(items, sets, locations, label_names=sorted(set(declared) | used))


# ---- Label Studio -------------------------------------------------------------------------
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
        if all(isinstance(v, str) for v in values):
            return [v.strip() for v in values if v.strip()]
        raise DataError(f"{where}: {cell[:60]!r} is not a Label Studio result ({{\"choices\": [...]}})")
    return [cell]


# ---- spaCy ---------------------------------------------------------------------------------
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


# ---- Hugging Face datasets -------------------------------------------------------------------
def is_hf_dataset_dir(path: Path) -> bool:
    """Whether `path` is a folder written by datasets' save_to_disk (a Dataset or a DatasetDict)."""
    return path.is_dir() and ((path / "state.json").is_file() or (path / "dataset_dict.json").is_file())


HF_SUFFIXES = (".parquet", ".arrow")


def read_hf_dataset(path: Path, *, id_column: str | None, labels_column: str | None,
                    text_column: str | None) -> Records:
    """A Hugging Face dataset saved with save_to_disk, or a Parquet / Arrow file written by datasets.

    The labels column is `labels_column`, else a column named labels/tags/label/categories, else the one
    list-of-labels column; Sequence(ClassLabel) ids become the ClassLabel names, strings are names. The item is
    `id_column`, else an id/image/file column (an Image column's path), else the text column, else the row number.

    Raises:
        DataError: a DatasetDict (naming its splits), no or several label columns, ids out of range.
    """
    import datasets  # noqa: PLC0415 (slow to import; only these files need it)
    import pyarrow as pa  # noqa: PLC0415


    if path.is_dir():
        if (path / "dataset_dict.json").is_file():
            splits = json.loads((path / "dataset_dict.json").read_text()).get("splits", [])
            raise DataError(f"{path} is a DatasetDict with splits {splits}; give one split's folder, "
                            f"e.g. {path / (splits[0] if splits else 'train')}")
        try:
            dataset = datasets.load_from_disk(str(path))
        except (FileNotFoundError, ValueError, OSError) as e:
            raise DataError(f"{path}: not a readable save_to_disk folder ({e})") from None
        table, features = dataset.data.table, dataset.features
    else:
        try:
            if path.suffix.lower() == ".parquet":
                import pyarrow.parquet as pq  # noqa: PLC0415
                table = pq.read_table(path)
            else:
                table = _read_arrow(path, pa)
        except (pa.ArrowException, OSError) as e:
            raise DataError(f"{path}: not a readable {path.suffix[1:]} file ({e})") from None
        features = datasets.Features.from_arrow_schema(table.schema)
    columns = list(table.column_names)
    if labels_column is not None:
        if labels_column not in columns:
            raise DataError(f"{path}: no column {labels_column!r} for the labels; available columns: {', '.join(columns)}")
        label_at = labels_column
    else:
        named = pick_column(columns, LABEL_COLUMNS)
        lists = [c for c in columns if _label_names(features[c]) is not None or _is_string_list(features[c])]
        if named is not None:
            label_at = columns[named]
        elif len(lists) == 1:
            label_at = lists[0]
        else:
            raise DataError(f"{path}: which column holds the labels? " + (
                f"columns {lists} all hold label lists" if lists else "no column holds a list of labels")
                + f"; give --labels-column (columns: {', '.join(columns)})")
    names = _label_names(features[label_at])
    values = table.column(label_at).to_pylist()
    locations = [f"{path.name} row {i}" for i in range(len(values))]
    sets = []
    for value, where in zip(values, locations):
        cell = value if isinstance(value, list) else ([] if value is None else [value])
        labels = []
        for v in cell:
            if names is not None and isinstance(v, int):
                if not 0 <= v < len(names):
                    raise DataError(f"{where}, column {label_at!r}: label id {v} is not in 0..{len(names) - 1} "
                                    f"(the ClassLabel names {names[:8]})")
                labels.append(names[v])
            elif isinstance(v, str):
                labels.append(v.strip())
            else:
                raise DataError(f"{where}, column {label_at!r}: {v!r} is not a label name; integer ids need a "
                                "ClassLabel feature that names them")
        sets.append(sorted({label for label in labels if label}))
    text_key = text_column or ("text" if "text" in columns else None)
    texts = table.column(text_key).to_pylist() if text_key in columns else None
    id_at = id_column if id_column is not None else (
        columns[found] if (found := pick_column([c for c in columns], ID_COLUMNS)) is not None else None)
    if id_at is not None and id_at not in columns:
        raise DataError(f"{path}: no column {id_at!r} for the item id; available columns: {', '.join(columns)}")
    if id_at is not None:
        items = [_hf_item(v, f"{where}, column {id_at!r}") for v, where in zip(table.column(id_at).to_pylist(), locations)]
    elif texts is not None:
        items = [str(t) for t in texts]
    else:
        items = [str(i) for i in range(len(values))]
    meta = {"labels_column": label_at, **({"text_items": True} if id_at is None and texts is not None else {})}
    return Records(items, sets, locations, texts=texts, label_names=names, meta=meta)


def _read_arrow(path: Path, pa: Any) -> Any:
    """An Arrow file as datasets writes it (the IPC stream format), or the IPC file format."""
    try:
        with pa.memory_map(str(path)) as source:
            return pa.ipc.open_stream(source).read_all()
    except pa.ArrowInvalid:
        with pa.memory_map(str(path)) as source:
            return pa.ipc.open_file(source).read_all()


def _label_names(feature: Any) -> list[str] | None:
    """The ClassLabel names of a ClassLabel feature or a list of them, else None."""
    import datasets  # noqa: PLC0415

    inner = feature
    if isinstance(feature, (datasets.List, datasets.LargeList)):
        inner = feature.feature
    elif isinstance(feature, list) and feature:
        inner = feature[0]
    return list(inner.names) if isinstance(inner, datasets.ClassLabel) else None


def _is_string_list(feature: Any) -> bool:
    import datasets  # noqa: PLC0415

    inner = feature.feature if isinstance(feature, (datasets.List, datasets.LargeList)) else (
        feature[0] if isinstance(feature, list) and feature else None)
    return isinstance(inner, datasets.Value) and inner.dtype in ("string", "large_string")


def _hf_item(value: Any, where: str) -> str:
    if isinstance(value, dict):  # an Image feature: {"bytes": ..., "path": ...}
        value = value.get("path")
    if value is None or not str(value).strip():
        raise DataError(f"{where}: the item id is empty (an Image column needs the file's path)")
    return str(value).strip()
