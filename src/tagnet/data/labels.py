"""Read and write label files of every supported format (tagnet.data.formats) as a LabelTable."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np

from tagnet.data.formats import FORMATS, REGISTRY, resolve
from tagnet.data.formats.source import Source
from tagnet.data.label_table import LabelTable
from tagnet.errors import DataError

__all__ = ["FORMATS", "read_labels", "read_labels_located", "read_labels_with_texts", "read_labels_explained", "write_labels", "given_options",
           "read_csv_rows"]


def read_labels(
    path: str | Path,
    *,
    format: str | None = None,
    id_column: str | int | None = None,
    labels_column: str | int | None = None,
    separator: str | None = None,
    label_columns: Sequence[str] | None = None,
    label_names_file: str | Path | None = None,
    labels_are_indices: bool | None = None,
    no_header: bool = False,
    delimiter: str | None = None,
    min_count: int = 0,
) -> LabelTable:
    """Read a label file (or folder) of any supported format into a LabelTable.

    Args:
        path: a label file or folder of one of FORMATS (tagnet.data.formats lists them with what each reads).
        format: one of FORMATS; detected when None: every format scores the file, the best reading is taken when
            no other reading that fits disagrees with it (else a DataError names both and the option for each).
        id_column, labels_column: column (or JSON key) of the item ids / of the tags; detected
            by name when None. With `no_header`, columns are numbered from 0.
        separator: between tags in one cell (a character, or space/comma/semicolon/pipe/tab);
            detected when None.
        label_columns: the 0/1 columns of a one-hot CSV; the 0/1 columns when None.
        label_names_file: text file with one label name per line: fixes the label set, maps
            integer tags to names when the tags are indices, names a headerless one-hot file's columns.
        labels_are_indices: tags are 0-based line numbers of `label_names_file`; None = when
            every tag is an integer and none is a name.
        no_header: the CSV/TSV has no header row.
        delimiter: CSV field delimiter; ".tsv" means tab, otherwise sniffed.
        min_count: drop labels with fewer known positives than this.

    Returns:
        The table; `source_format` and `meta` record how to write the same format back, meta["reading"] and
        meta["runner_up"] the reading chosen and the next best, meta["notes"] what the read decided.

    Raises:
        DataError: naming the file, the line/record/column and the bad value.
    """
    return read_labels_located(
        path, format=format, id_column=id_column, labels_column=labels_column, separator=separator,
        label_columns=label_columns, label_names_file=label_names_file,
        labels_are_indices=labels_are_indices, no_header=no_header, delimiter=delimiter,
        min_count=min_count)[0]


def read_labels_located(path: str | Path, **options: Any) -> tuple[LabelTable, list[str]]:
    """Like read_labels, plus where each row came from ("labels.csv line 7", an XML file, ...)."""
    return read_labels_explained(path, **options)[:2]


def read_labels_explained(path: str | Path, **options: Any) -> tuple[LabelTable, list[str], dict]:
    """Like read_labels_located, plus how the file was read: {"reading": ..., "runner_up": ...}, each a dict of
    format, score, reason and the option that picks it (runner_up None when no other format fits at all)."""
    min_count = options.pop("min_count", 0)
    table, locations, how = resolve.read(Source(Path(path).expanduser(), **options))
    return _drop_rare(table, min_count), locations, how


def given_options(options: dict[str, Any]) -> dict[str, Any]:
    """Reader options without the unset ones (None or False, as the CLI passes every option)."""
    return {key: value for key, value in options.items() if value not in (None, False)}


def read_labels_with_texts(path: str | Path, text_column: str | int, **options: Any) -> tuple[LabelTable, list[str]]:
    """read_labels of a file that holds texts, plus row for row the text in `text_column` (a column or key).

    The text column is never read as labels (a one-hot file's label columns leave it out). When no
    id column is given and the file has none of the usual id names (ID_COLUMNS), the text is the item id.

    Raises:
        DataError: as read_labels, or the format holds no texts, the text column is missing, or a value is not a string.
    """
    min_count = options.pop("min_count", 0)
    src = Source(Path(path).expanduser(), **options)
    src.text_column = str(text_column)
    if not src.path.exists():
        raise DataError(f"label file {src.path} does not exist")
    fmt = src.format or _best_format(src)
    if fmt in REGISTRY and not REGISTRY[fmt].INFO.texts:
        raise DataError(f"{src.path}: a text column needs a label file that holds texts "
                        f"({', '.join(n for n, m in REGISTRY.items() if m.INFO.texts)}), not format {fmt!r}")
    if options.get("id_column") is None and not src.has_id_field(fmt):
        src = src.copy(id_column=text_column)
    table = resolve.read(src)[0]
    return _drop_rare(table, min_count), _texts(src, table)


def _best_format(src: Source) -> str | None:
    fits, _ = resolve.detect(src)
    return fits[0].format if fits else None


def _texts(src: Source, table: LabelTable) -> list[str]:
    """The text column's value on every row read, in order."""
    if src.export_texts is not None:
        texts, locations = src.export_texts, src.records[1] or [f"row {i + 1}" for i in range(len(src.export_texts))]
        missing = next((where for text, where in zip(texts, locations) if not isinstance(text, str)), None)
        if missing is not None:
            raise DataError(f"{missing}: no text under {src.text_column!r}; expected a string")
        return list(texts)
    if table.source_format in ("tags", "onehot"):
        header, rows = src.csv()
        at = src.named_column(header, src.text_column, "text")
        return [fields[at] for _, fields in rows]
    texts = []
    for record, where in zip(*src.records):
        value = record.get(src.text_column)
        if not isinstance(value, str):
            raise DataError(f"{where}: the text key {src.text_column!r} must hold a string, got {value!r}; "
                            f"the record has keys {sorted(record)}")
        texts.append(value)
    return texts


def _drop_rare(table: LabelTable, min_count: int) -> LabelTable:
    if min_count < 0:
        raise DataError(f"min_count must be >= 0, got {min_count}")
    if min_count == 0:
        return table
    keep = np.flatnonzero(table.label_counts() >= min_count)
    return LabelTable(table.items, [table.label_names[j] for j in keep], table.targets[:, keep],
                      table.known[:, keep], table.source_format, table.meta)


def read_csv_rows(path: str | Path, *, delimiter: str | None = None) -> tuple[list[str], list[tuple[int, list[str]]]]:
    """A CSV/TSV file's header and (line number, fields) of every non-blank row, read and checked as label files
    are (UTF-8, delimiter given by character or name, else detected; malformed rows, duplicate column names and
    rows of the wrong width are DataErrors)."""
    return Source(Path(path).expanduser(), delimiter=delimiter).csv()


def write_labels(table: LabelTable, path: str | Path, *, format: str | None = None) -> Path:
    """Write `table` to `path` in `format` (default: the format it was read from).

    A writable format (one whose module has `write`: tags, onehot, jsonl, json, spacy, long, celeba, prodigy) is
    written back with the delimiter, column or key names and separator recorded in `table.meta`, so the same read
    options read the file back. Other sources (COCO, VOC, folders, CVAT, Label Studio, YOLO, ...) are written as a
    tags CSV with columns image,labels (tab-separated when `path` ends in .tsv), since their images stay where they
    are; sources whose items are texts as JSON Lines {"text", "labels"}. Only onehot, spacy and prodigy files can
    record unknown values; the other formats raise DataError for a table that has some.

    Returns:
        `path`.
    """
    path = Path(path).expanduser()
    fmt = format or table.source_format
    if fmt not in REGISTRY:
        raise DataError(f"unknown label format {fmt!r}: expected one of {', '.join(FORMATS)}")
    meta = table.meta if fmt == table.source_format else {}
    if not hasattr(REGISTRY[fmt], "write"):
        fmt, meta = ("jsonl", {"id_key": "text", "labels_key": "labels"}) if meta.get("text_items") else ("tags", {})
    if not getattr(REGISTRY[fmt], "WRITES_UNKNOWN", False) and not table.known.all():
        raise DataError(f"cannot write {path} as {fmt}: the table has {int((~table.known).sum())} unknown "
                        "label values, which only the one-hot format can record")
    path.parent.mkdir(parents=True, exist_ok=True)
    REGISTRY[fmt].write(table, path, meta)
    return path
