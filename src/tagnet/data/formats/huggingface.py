"""Hugging Face datasets: a save_to_disk folder, or a Parquet / Arrow file written by datasets."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tagnet.data.columns import ID_COLUMNS, LABEL_COLUMNS, pick_column
from tagnet.data.formats.source import Fit, FormatInfo, Records, Source
from tagnet.data.label_table import LabelTable
from tagnet.errors import DataError

NAME = "huggingface"
INFO = FormatInfo(NAME, "a Hugging Face dataset: save_to_disk folder, or Parquet / Arrow file",
                  layout="either", texts=True, own_names=True, specific=True)


def detect(src: Source) -> Fit | None:
    """A save_to_disk folder (state.json or dataset_dict.json), or a .parquet / .arrow file."""
    if is_hf_dataset_dir(src.path):
        return Fit(NAME, 1.0, "a folder written by datasets' save_to_disk")
    if src.path.is_file() and src.path.suffix.lower() in HF_SUFFIXES:
        return Fit(NAME, 0.95, f"a {src.path.suffix[1:]} file")
    return None


def read(src: Source) -> tuple[LabelTable, list[str]]:
    """The rows with the labels column's names (ClassLabel ids named)."""
    def opt(value):
        return None if value is None else str(value)

    records = read_hf_dataset(src.path, id_column=opt(src.id_column), labels_column=opt(src.labels_column),
                              text_column=src.text_column)
    return src.table(records, NAME)


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
    label_at = _labels_column(path, columns, features, labels_column)
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


def _labels_column(path: Path, columns: list[str], features: Any, labels_column: str | None) -> str:
    """The labels column: `labels_column`, else one named labels/tags/label/categories, else the one list column."""
    if labels_column is not None:
        if labels_column not in columns:
            raise DataError(f"{path}: no column {labels_column!r} for the labels; available columns: {', '.join(columns)}")
        return labels_column
    else:
        named = pick_column(columns, LABEL_COLUMNS)
        lists = [c for c in columns if _label_names(features[c]) is not None or _is_string_list(features[c])]
        if named is not None:
            return columns[named]
        elif len(lists) == 1:
            return lists[0]
        else:
            raise DataError(f"{path}: which column holds the labels? " + (
                f"columns {lists} all hold label lists" if lists else "no column holds a list of labels")
                + f"; give --labels-column (columns: {', '.join(columns)})")


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
