"""Read and write label files of every supported format as a LabelTable."""

from __future__ import annotations

import csv
import io
import json
import sys
import xml.etree.ElementTree as ET
from collections import Counter
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from tagnet.data import exports
from tagnet.data.columns import ID_COLUMNS, LABEL_COLUMNS, pick_column  # noqa: F401 (ID_COLUMNS: also used from here)
from tagnet.data.label_table import LabelTable
from tagnet.errors import DataError

FORMATS = ("tags", "onehot", "jsonl", "json", "coco", "voc", "folders", "cvat", "labelstudio", "labelstudio-csv",
           "spacy", "huggingface")
_OWN_NAMES = ("coco", "voc", "folders", "cvat", "labelstudio", "labelstudio-csv", "spacy", "huggingface")
_FOLDER_FORMATS = ("voc", "folders")
_TEXT_FORMATS = ("tags", "onehot", "jsonl", "json", "labelstudio", "labelstudio-csv", "spacy", "huggingface")
INDEX_NAMES = ("", "Unnamed: 0")  # the header pandas' to_csv writes over the index, and what pandas reads it back as
SEPARATOR_NAMES = {"space": " ", "comma": ",", "semicolon": ";", "pipe": "|", "tab": "\t"}
_ONEHOT_VALUES = {"1": 1, "1.0": 1, "0": 0, "0.0": 0, "-1": None, "-1.0": None, "": None}
_TAG_SEPARATORS = (",", ";", "|")  # tried before whitespace, which may sit inside a multi-word label
_TAB_SUFFIXES = (".tsv", ".tab")
_SNIFF_LINES = 50


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
        path: a CSV/TSV, JSON Lines, JSON or COCO file, a folder of Pascal VOC XML files, a
            folder with one sub-folder per label, or a labelling tool's export: CVAT for images 1.1 XML,
            Label Studio JSON or CSV, spaCy JSONL ({"text", "cats"}), a Hugging Face dataset folder
            (save_to_disk) or Parquet/Arrow file.
        format: one of FORMATS; detected from the path and its content when None.
        id_column, labels_column: column (or JSON key) of the item ids / of the tags; detected
            by name when None. With `no_header`, columns are numbered from 0.
        separator: between tags in one cell (a character, or space/comma/semicolon/pipe/tab);
            detected when None.
        label_columns: the 0/1 columns of a one-hot CSV; all but the id column when None.
        label_names_file: text file with one label name per line: fixes the label set, maps
            integer tags to names when the tags are indices, names a headerless one-hot file's columns.
        labels_are_indices: tags are 0-based line numbers of `label_names_file`; None = when
            every tag is an integer and none is a name.
        no_header: the CSV/TSV has no header row.
        delimiter: CSV field delimiter; ".tsv" means tab, otherwise sniffed.
        min_count: drop labels with fewer known positives than this.

    Returns:
        The table; `source_format` and `meta` record how to write the same format back.

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
    min_count = options.pop("min_count", 0)
    table, locations = _Reader(Path(path).expanduser(), **options).read()
    return _drop_rare(table, min_count), locations


def given_options(options: dict[str, Any]) -> dict[str, Any]:
    """Reader options without the unset ones (None or False, as the CLI passes every option)."""
    return {key: value for key, value in options.items() if value not in (None, False)}


def read_labels_with_texts(path: str | Path, text_column: str | int, **options: Any) -> tuple[LabelTable, list[str]]:
    """read_labels of a CSV/TSV or JSON(L) file, plus row for row the text in `text_column` (a column or key).

    The text column is never read as labels (a one-hot file's label columns leave it out). When no
    id column is given and the file has none of the usual id names (ID_COLUMNS), the text is the item id.

    Raises:
        DataError: as read_labels, or the text column is missing, or a JSON value is not a string.
    """
    min_count = options.pop("min_count", 0)
    reader = _Reader(Path(path).expanduser(), **options)
    reader.text_column = str(text_column)
    if options.get("id_column") is None and not reader.has_id_field():
        reader.id_column = text_column
    table, _ = reader.read()
    return _drop_rare(table, min_count), reader.texts()


def _drop_rare(table: LabelTable, min_count: int) -> LabelTable:
    if min_count < 0:
        raise DataError(f"min_count must be >= 0, got {min_count}")
    if min_count == 0:
        return table
    keep = np.flatnonzero(table.label_counts() >= min_count)
    return LabelTable(table.items, [table.label_names[j] for j in keep], table.targets[:, keep],
                      table.known[:, keep], table.source_format, table.meta)


class _Reader:
    """One read: the options, and a method per format."""

    def __init__(self, path: Path, *, format: str | None = None, id_column: str | int | None = None,
                 labels_column: str | int | None = None, separator: str | None = None,
                 label_columns: Sequence[str] | None = None, label_names_file: str | Path | None = None,
                 labels_are_indices: bool | None = None, no_header: bool = False,
                 delimiter: str | None = None) -> None:
        if format is not None and format not in FORMATS:
            raise DataError(f"unknown label format {format!r}: expected one of {', '.join(FORMATS)}")
        self.path = path
        self.format = format
        self.id_column = id_column
        self.labels_column = labels_column
        self.separator = SEPARATOR_NAMES.get(separator, separator) if separator is not None else None
        if self.separator == "":
            raise DataError("separator must not be empty: use a character or space/comma/semicolon/pipe/tab")
        self.label_columns = list(label_columns) if label_columns is not None else None
        self.names_file = Path(label_names_file).expanduser() if label_names_file is not None else None
        self.labels_are_indices = labels_are_indices
        self.no_header = no_header
        self.delimiter = SEPARATOR_NAMES.get(delimiter, delimiter) if delimiter is not None else None
        if self.delimiter is not None and (len(self.delimiter) != 1 or self.delimiter in '"\r\n'):
            raise DataError(f"delimiter {delimiter!r}: expected one character other than a quote or line break, or "
                            f"one of {', '.join(SEPARATOR_NAMES)}")
        self._delim = ","
        self._csv_cache: tuple[list[str], list[tuple[int, list[str]]]] | None = None
        self._json_cache: tuple[Any] | None = None
        self._jsonl_cache: tuple[list, list[str]] | None = None
        self.text_column: str | None = None  # read_labels_with_texts: a column that is neither id nor label
        self._records: tuple[list, list[str]] = ([], [])
        self._texts: list | None = None  # the texts an export holds (Label Studio data.text, spaCy, datasets)
        self.notes: list[str] = []  # what the read decided for the user: shown by data check (table.meta["notes"])

    # ---- dispatch -------------------------------------------------------------------------
    def read(self) -> tuple[LabelTable, list[str]]:
        if not self.path.exists():
            raise DataError(f"label file {self.path} does not exist")
        fmt = self.format or self._detect_format()
        if fmt != "huggingface" and self.path.is_dir() != (fmt in _FOLDER_FORMATS):
            kind = "a folder" if self.path.is_dir() else "a file"
            raise DataError(f"{self.path} is {kind}, which cannot be read as format {fmt!r}")
        if self.label_columns is not None and fmt != "onehot":
            raise DataError(f"label_columns applies to one-hot CSV files, not to format {fmt!r}")
        if self.names_file is not None and fmt in _OWN_NAMES:
            raise DataError(f"label_names_file does not apply to format {fmt!r}, which names its own labels")
        table, locations = getattr(self, f"_read_{fmt.replace('-', '_')}")()
        if self.notes:
            table.meta["notes"] = [*self.notes, *table.meta.get("notes", [])]
        return table, locations

    def _detect_format(self) -> str:
        path = self.path
        if path.is_dir():
            if exports.is_hf_dataset_dir(path):
                return "huggingface"
            if any(path.glob("*.xml")) or (path / "Annotations").is_dir():
                return "voc"
            if any(p.is_dir() and not p.name.startswith(".") for p in path.iterdir()):
                return "folders"
            raise DataError(f"folder {path} holds neither Pascal VOC .xml files nor one sub-folder per label")
        suffix = path.suffix.lower()
        if suffix in exports.HF_SUFFIXES:
            return "huggingface"
        if suffix == ".xml":
            if exports.is_cvat_xml(path):
                return "cvat"
            raise DataError(f"{path}: an XML file whose root is not CVAT's <annotations>; Pascal VOC files are read "
                            "as a folder of .xml files (give the folder)")
        if suffix in (".jsonl", ".ndjson"):
            records = self._jsonl_records()[0]
            return "spacy" if records and exports.is_spacy_record(records[0]) else "jsonl"
        if suffix == ".json":
            data = self._load_json()
            if isinstance(data, dict) and "images" in data and "annotations" in data:
                return "coco"
            return "labelstudio" if exports.is_label_studio_json(data) else "json"
        if self.label_columns is not None:
            return "onehot"
        if self.labels_column is not None or self.no_header:
            return "tags"
        header, rows = self._csv()
        if exports.is_label_studio_csv(header):
            return "labelstudio-csv"
        if pick_column(header, LABEL_COLUMNS) is not None:
            return "tags"
        if len(header) > 2:
            return "onehot"
        if len(header) == 2 and rows and all(r[1].strip() in _ONEHOT_VALUES for _, r in rows):
            return "onehot"
        return "tags"

    # ---- a text column beside the labels (read_labels_with_texts) --------------------------
    def _text_format(self) -> str:
        fmt = self.format or self._detect_format()
        if fmt not in _TEXT_FORMATS:
            raise DataError(f"{self.path}: a text column needs a CSV/TSV, JSON(L), Label Studio, spaCy or Hugging Face "
                            f"label file, not format {fmt!r}")
        return fmt

    def has_id_field(self) -> bool:
        """Whether the file has a column (or first record a key) with one of the usual id names."""
        fmt = self._text_format()
        if fmt not in ("tags", "onehot", "jsonl", "json"):
            return True  # an export names its own items (an image, or the text itself)
        if fmt in ("tags", "onehot"):
            header = self._csv()[0]
            self._named_column(header, self.text_column, "text")  # a missing text column is named as such
            return pick_column(header, ID_COLUMNS) is not None
        if fmt == "json":
            data = self._load_json()
            first = data[0] if isinstance(data, list) and data else None
        else:
            line = next((line for line in self._text().splitlines() if line.strip()), "")
            try:
                first = json.loads(line)
            except (ValueError, RecursionError):
                return False  # the read itself reports the broken line
        return isinstance(first, dict) and any(key in first for key in ID_COLUMNS)

    def texts(self) -> list[str]:
        """The text column's value on every row read, in order (call after read())."""
        if self._texts is not None:
            missing = next((where for text, where in zip(self._texts, self._records[1]) if not isinstance(text, str)), None)
            if missing is not None:
                raise DataError(f"{missing}: no text under {self.text_column!r}; expected a string")
            return list(self._texts)
        if self._text_format() in ("tags", "onehot"):
            header, rows = self._csv()
            at = self._named_column(header, self.text_column, "text")
            return [fields[at] for _, fields in rows]
        texts = []
        for record, where in zip(*self._records):
            value = record.get(self.text_column)
            if not isinstance(value, str):
                raise DataError(f"{where}: the text key {self.text_column!r} must hold a string, got {value!r}; "
                                f"the record has keys {sorted(record)}")
            texts.append(value)
        return texts

    # ---- CSV / TSV ----------------------------------------------------------------------
    def _text(self) -> str:
        try:
            return self.path.read_text(encoding="utf-8-sig")
        except UnicodeDecodeError as e:
            raise DataError(f"{self.path} is not UTF-8 text (bad byte at offset {e.start})") from None

    def _sniff_delimiter(self, text: str) -> str:
        if self.delimiter is not None:
            return self.delimiter
        if self.path.suffix.lower() in _TAB_SUFFIXES:
            return "\t"
        sample = "\n".join(text.splitlines()[:_SNIFF_LINES])
        first = sample.split("\n", 1)[0]
        if "\t" in first:
            return "\t"
        try:
            return csv.Sniffer().sniff(sample, delimiters=",;|").delimiter
        except csv.Error:
            counts = {d: first.count(d) for d in ",;|"}
            best = max(counts, key=counts.get)
            return best if counts[best] else ","

    def _csv(self) -> tuple[list[str], list[tuple[int, list[str]]]]:
        """Header (or column numbers) and (line number, fields) of each non-blank row; cached."""
        if self._csv_cache is None:
            text = self._text()
            self._delim = self._sniff_delimiter(text)
            reader = csv.reader(io.StringIO(text), delimiter=self._delim, strict=True)
            rows: list[tuple[int, list[str]]] = []
            try:
                for fields in reader:
                    if fields:
                        rows.append((reader.line_num, fields))
            except csv.Error as e:
                raise DataError(f"{self.path} line {reader.line_num}: malformed CSV ({e}); "
                                "check the quotes around that field") from None
            if not rows:
                raise DataError(f"{self.path} is empty: expected a header row and one row per item")
            if self.no_header:
                header = [str(i) for i in range(len(rows[0][1]))]
            else:
                header = [name.strip() for name in rows.pop(0)[1]]
                if rows and header[0] in INDEX_NAMES and all(
                        len(fields) > 1 and fields[0].strip() == str(i) for i, (_, fields) in enumerate(rows)):
                    header = header[1:]
                    rows = [(line, fields[1:]) for line, fields in rows]
                    self.notes.append(f"the unnamed first column holds the row numbers 0..{len(rows) - 1} "
                                      "(a pandas index): skipped")
                dupes = sorted(n for n, k in Counter(header).items() if k > 1)
                if dupes:
                    raise DataError(f"{self.path} line 1: column name(s) {dupes} appear more than once")
            for line, fields in rows:
                if len(fields) != len(header):
                    hint = (f"; quote fields that contain the delimiter {self._delim!r}"
                            if len(fields) > len(header) else "")
                    raise DataError(f"{self.path} line {line}: {len(fields)} fields but "
                                    f"{'the first row' if self.no_header else 'the header'} has "
                                    f"{len(header)} ({', '.join(header)}){hint}")
            self._csv_cache = (header, rows)
        return self._csv_cache

    def _column(self, header: list[str], requested: str | int | None, defaults: Sequence[str],
                what: str, fallback: int) -> int:
        if requested is None:
            found = pick_column(header, defaults)
            if found is not None:
                return found
            if fallback >= len(header):
                raise DataError(f"{self.path}: no {what} column; available columns: {', '.join(header)}")
            return fallback
        return self._named_column(header, requested, what)

    def _named_column(self, header: list[str], requested: str | int, what: str) -> int:
        name = str(requested)
        if name in header:
            return header.index(name)
        folded = [i for i, h in enumerate(header) if h.lower() == name.lower()]
        if len(folded) == 1:
            return folded[0]
        note = " (no header: columns are numbered from 0)" if self.no_header else ""
        raise DataError(f"{self.path}: no column {name!r} for the {what}; available columns: "
                        f"{', '.join(header)}{note}")

    def _read_tags(self) -> tuple[LabelTable, list[str]]:
        header, rows = self._csv()
        id_at = self._column(header, self.id_column, ID_COLUMNS, "item id", 0)
        labels_at = self._column(header, self.labels_column, LABEL_COLUMNS, "labels", 0 if id_at == 1 else 1)
        if labels_at == id_at:
            raise DataError(f"{self.path}: the id column and the labels column are both {header[id_at]!r}")
        cells = [fields[labels_at].strip() for _, fields in rows]
        sep = self.separator if self.separator is not None else _detect_separator(cells)
        locations = [f"{self.path.name} line {line}" for line, _ in rows]
        items = [self._item(fields[id_at], where) for (_, fields), where in zip(rows, locations)]
        tag_lists = [_split_tags(cell, sep) for cell in cells]
        meta = {"delimiter": self._delim, "header": not self.no_header,
                "id_column": header[id_at], "labels_column": header[labels_at], "separator": sep}
        return self._from_tags(items, tag_lists, locations, "tags", meta)

    def _read_onehot(self) -> tuple[LabelTable, list[str]]:
        header, rows = self._csv()
        id_at = self._column(header, self.id_column, ID_COLUMNS, "item id", 0)
        if self.label_columns is not None:
            cols = [self._named_column(header, c, "labels") for c in self.label_columns]
        else:
            cols = [i for i in range(len(header)) if i != id_at and header[i] != self.text_column]
            cols = self._binary_columns(header, rows, cols)
        if not cols:
            raise DataError(f"{self.path}: no label columns besides the id column {header[id_at]!r}")
        if id_at in cols:
            raise DataError(f"{self.path}: column {header[id_at]!r} is both the id and a label column")
        names = [header[c] for c in cols]
        if self.no_header:
            if self.names_file is None:
                raise DataError(f"{self.path}: a one-hot file without a header needs label_names_file "
                                "to name its label columns")
            names = self._names_from_file()
            if len(names) != len(cols):
                raise DataError(f"{self.names_file} names {len(names)} labels but {self.path} has "
                                f"{len(cols)} label columns")
        elif self.names_file is not None:
            raise DataError("label_names_file names the columns of a headerless one-hot file only; "
                            f"{self.path} has a header")
        locations = [f"{self.path.name} line {line}" for line, _ in rows]
        items = [self._item(fields[id_at], where) for (_, fields), where in zip(rows, locations)]
        targets = np.zeros((len(rows), len(cols)), dtype=np.uint8)
        known = np.ones((len(rows), len(cols)), dtype=bool)
        for i, (_, fields) in enumerate(rows):
            for j, c in enumerate(cols):
                cell = fields[c].strip()
                if cell not in _ONEHOT_VALUES:
                    raise DataError(f"{locations[i]}, column {names[j]!r}: value {cell!r} is not 0 or 1 "
                                    "(empty or -1 = unknown)")
                value = _ONEHOT_VALUES[cell]
                if value is None:
                    known[i, j] = False
                else:
                    targets[i, j] = value
        if len(set(names)) != len(names):
            raise DataError(f"{self.path}: label names repeat: {names}")
        order = sorted(range(len(names)), key=names.__getitem__)
        meta = {"delimiter": self._delim, "header": not self.no_header, "id_column": header[id_at]}
        table = LabelTable(items, [names[j] for j in order], targets[:, order], known[:, order], "onehot", meta)
        return table, locations

    def _binary_columns(self, header: list[str], rows: list[tuple[int, list[str]]], cols: list[int]) -> list[int]:
        """`cols` without the integer columns that are not 0/1 (a class id, a count) when other columns are 0/1; each
        column left out is named in a note. A column with a slip (one bad cell, or a word) stays, and the read
        reports that cell."""
        def is_count(c: int) -> bool:
            cells = [fields[c].strip() for _, fields in rows]
            other = sum(cell not in _ONEHOT_VALUES for cell in cells)
            return all(cell.isdigit() for cell in cells if cell) and other >= max(2, 0.1 * len(cells))
        keep = [c for c in cols if not is_count(c)]
        dropped = [c for c in cols if c not in keep]
        if keep and dropped:
            names = ", ".join(repr(header[c]) for c in dropped)
            self.notes.append(f"column(s) {names} hold values other than 0/1 (a class id?): not read as labels; "
                              f"the labels are the 0/1 columns {_preview([header[c] for c in keep])} "
                              "(choose others with --label-columns)")
            return keep
        return cols

    # ---- JSON ---------------------------------------------------------------------------
    def _load_json(self) -> Any:
        if self._json_cache is None:
            try:
                self._json_cache = (json.loads(self._text()),)
            except json.JSONDecodeError as e:
                raise DataError(f"{self.path} line {e.lineno} column {e.colno}: not valid JSON ({e.msg})") from None
            except (ValueError, RecursionError) as e:
                raise _beyond_json_limits(str(self.path), e) from None
        return self._json_cache[0]

    def _jsonl_records(self) -> tuple[list, list[str]]:
        if self._jsonl_cache is not None:
            return self._jsonl_cache
        records, locations = [], []
        for n, line in enumerate(self._text().splitlines(), start=1):
            if not line.strip():
                continue
            where = f"{self.path.name} line {n}"
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError as e:
                raise DataError(f"{where} column {e.colno}: not valid JSON ({e.msg})") from None
            except (ValueError, RecursionError) as e:
                raise _beyond_json_limits(where, e) from None
            locations.append(where)
        self._jsonl_cache = (records, locations)
        return self._jsonl_cache

    def _read_jsonl(self) -> tuple[LabelTable, list[str]]:
        return self._from_records(*self._jsonl_records(), "jsonl")

    def _read_json(self) -> tuple[LabelTable, list[str]]:
        data = self._load_json()
        if not isinstance(data, list):
            found = f"an object with keys {sorted(data)[:10]}" if isinstance(data, dict) else type(data).__name__
            raise DataError(f"{self.path}: expected a list of records like {{\"image\": ..., \"labels\": [...]}} "
                            f"or a COCO instances file (images, annotations, categories); found {found}")
        locations = [f"{self.path.name} record {i}" for i in range(len(data))]
        return self._from_records(data, locations, "json")

    def _from_records(self, records: list, locations: list[str], fmt: str) -> tuple[LabelTable, list[str]]:
        self._records = (records, locations)
        items, tag_lists, keys = [], [], None
        for record, where in zip(records, locations):
            if not isinstance(record, dict):
                raise DataError(f"{where}: expected an object like {{\"image\": ..., \"labels\": [...]}}, "
                                f"got {type(record).__name__}")
            id_key = self._key(record, self.id_column, ID_COLUMNS, "item id", where)
            labels_key = self._key(record, self.labels_column, LABEL_COLUMNS, "labels", where)
            keys = keys or (id_key, labels_key)
            value = record[id_key]
            if not isinstance(value, (str, int)) or isinstance(value, bool):
                raise DataError(f"{where}: {id_key!r} must be a string, got {value!r}")
            items.append(self._item(str(value), where))
            labels = record[labels_key]
            if not isinstance(labels, list) or not all(
                    isinstance(t, (str, int)) and not isinstance(t, bool) for t in labels):
                raise DataError(f"{where}: {labels_key!r} must be a list of label names, got {labels!r}")
            tag_lists.append([str(t).strip() for t in labels if str(t).strip()])
        id_key, labels_key = keys or ("image", "labels")
        return self._from_tags(items, tag_lists, locations, fmt, {"id_key": id_key, "labels_key": labels_key})

    def _key(self, record: dict, requested: str | int | None, defaults: Sequence[str], what: str,
             where: str) -> str:
        if requested is not None:
            if str(requested) in record:
                return str(requested)
        else:
            for key in defaults:
                if key in record:
                    return key
        wanted = repr(str(requested)) if requested is not None else f"one of {', '.join(defaults)}"
        raise DataError(f"{where}: no {what} key ({wanted}); the record has keys {sorted(record)}")

    def _read_coco(self) -> tuple[LabelTable, list[str]]:
        data = self._load_json()
        if not isinstance(data, dict):
            raise DataError(f"{self.path}: a COCO file is an object with images, annotations, categories")
        for key in ("images", "annotations", "categories"):
            if not isinstance(data.get(key), list):
                raise DataError(f"{self.path}: COCO key {key!r} is missing or not a list")
        categories = {c["id"]: str(c["name"]) for c in self._coco_entries(data, "categories", ("id", "name"))}
        annotations = self._coco_entries(data, "annotations", ("image_id", "category_id"))
        meta = {}
        project = _roboflow_project_category(data["categories"], {ann["category_id"] for ann in annotations})
        if project is not None:
            del categories[project["id"]]
            meta["notes"] = [f"category {project['id']} {project['name']!r} is the Roboflow project's name (supercategory "
                             "\"none\", no annotation uses it), not a label: left out"]
        images = self._coco_entries(data, "images", ("id", "file_name"))
        row = {img["id"]: i for i, img in enumerate(images)}
        sets: list[set[str]] = [set() for _ in images]
        for k, ann in enumerate(annotations):
            if ann["image_id"] not in row:
                raise DataError(f"{self.path}: annotations[{k}] refers to image_id {ann['image_id']!r}, "
                                "which is not in images")
            if ann["category_id"] not in categories:
                raise DataError(f"{self.path}: annotations[{k}] has category_id {ann['category_id']!r}, "
                                f"expected one of {sorted(categories, key=str)}")
            sets[row[ann["image_id"]]].add(categories[ann["category_id"]])
        items = [str(img["file_name"]) for img in images]
        locations = [f"{self.path.name} image id {img['id']}" for img in images]
        table = LabelTable.from_label_sets(items, [sorted(s) for s in sets], label_names=categories.values(),
                                           source_format="coco", meta=meta)
        return table, locations

    def _coco_entries(self, data: dict, key: str, needed: tuple[str, ...]) -> list[dict]:
        for k, entry in enumerate(data[key]):
            missing = [n for n in needed if not isinstance(entry, dict) or n not in entry]
            if missing:
                raise DataError(f"{self.path}: {key}[{k}] lacks {', '.join(missing)}")
            unhashable = [n for n in needed if n.endswith("id") and not isinstance(entry[n], (str, int, float))]
            if unhashable:
                raise DataError(f"{self.path}: {key}[{k}] has {unhashable[0]} {entry[unhashable[0]]!r}; "
                                "expected a number or a string")
        return data[key]

    # ---- labelling tools' exports ------------------------------------------------------------
    def _read_cvat(self) -> tuple[LabelTable, list[str]]:
        return self._export_table(exports.read_cvat(self.path), "cvat")

    def _read_labelstudio(self) -> tuple[LabelTable, list[str]]:
        records = exports.read_label_studio_json(self.path, self._load_json(), id_key=self._opt(self.id_column),
                                                 text_key=self.text_column)
        return self._export_table(records, "labelstudio")

    def _read_spacy(self) -> tuple[LabelTable, list[str]]:
        return self._export_table(exports.read_spacy(*self._jsonl_records(), text_key=self.text_column), "spacy")

    def _read_huggingface(self) -> tuple[LabelTable, list[str]]:
        records = exports.read_hf_dataset(self.path, id_column=self._opt(self.id_column),
                                          labels_column=self._opt(self.labels_column), text_column=self.text_column)
        return self._export_table(records, "huggingface")

    def _read_labelstudio_csv(self) -> tuple[LabelTable, list[str]]:
        header, rows = self._csv()
        text_at = pick_column(header, [(self.text_column or "text").lower()])
        if self.id_column is not None:
            id_at = self._named_column(header, self.id_column, "item id")
        else:
            id_at = next((at for at in (pick_column(header, [c for c in ID_COLUMNS if c != "id"]), text_at,
                                        pick_column(header, ["id"])) if at is not None), None)
            if id_at is None:
                raise DataError(f"{self.path}: no item id column; available columns: {', '.join(header)}")
        locations = [f"{self.path.name} line {line}" for line, _ in rows]
        if self.labels_column is not None:
            label_at = [self._named_column(header, self.labels_column, "labels")]
        else:
            skip = {h.lower() for h in exports.LABEL_STUDIO_CSV_COLUMNS}
            label_at = [j for j, h in enumerate(header) if h.lower() not in skip and j not in (id_at, text_at)]
            if len(label_at) > 1:  # several columns left: the ones holding Label Studio results ({"choices": ...})
                label_at = [j for j in label_at if any(f[j].strip()[:1] in "[{" for _, f in rows)]
            if not label_at:
                raise DataError(f"{self.path}: which column holds the labels? Give --labels-column "
                                f"(columns: {', '.join(header)})")
        sets = [sorted({label for j in label_at for label in exports.label_studio_cell(fields[j], where)})
                for (_, fields), where in zip(rows, locations)]
        items = [self._item(fields[id_at], where) for (_, fields), where in zip(rows, locations)]
        if header[id_at].lower() == "image":
            items = [exports.label_studio_item(item) for item in items]
        texts = [fields[text_at] for _, fields in rows] if text_at is not None else None
        meta = {"labels_column": ", ".join(header[j] for j in label_at), "delimiter": self._delim,
                **({"text_items": True} if id_at == text_at else {})}
        return self._export_table(exports.Records(items, sets, locations, texts=texts, meta=meta), "labelstudio-csv")

    def _opt(self, value: str | int | None) -> str | None:
        return None if value is None else str(value)

    def _export_table(self, records: exports.Records, fmt: str) -> tuple[LabelTable, list[str]]:
        """The LabelTable of an export's records; keeps their texts for read_labels_with_texts."""
        self._records = ([], records.locations)
        self._texts = records.texts if self.text_column is not None else None
        if self.text_column is not None and records.texts is None:
            raise DataError(f"{self.path}: this {fmt} file holds no text under {self.text_column!r}")
        if records.targets is not None:
            names = records.label_names or []
            table = LabelTable(records.items, names, records.targets, records.known, fmt, records.meta)
        else:
            table = LabelTable.from_label_sets(records.items, records.label_sets, label_names=records.label_names,
                                               source_format=fmt, meta=records.meta)
        return table, records.locations

    # ---- folders ------------------------------------------------------------------------
    def _read_voc(self) -> tuple[LabelTable, list[str]]:
        folder = self.path
        if not any(folder.glob("*.xml")) and (folder / "Annotations").is_dir():
            folder = folder / "Annotations"
        files = sorted(folder.glob("*.xml"))
        if not files:
            raise DataError(f"{folder} holds no Pascal VOC .xml annotation files")
        items, sets = [], []
        for file in files:
            try:
                root = ET.parse(file).getroot()
            except ET.ParseError as e:
                raise DataError(f"{file}: broken XML ({e})") from None
            names = []
            for k, obj in enumerate(root.iter("object")):
                name = (obj.findtext("name") or "").strip()
                if not name:
                    raise DataError(f"{file}: object {k} has no <name>")
                names.append(name)
            items.append((root.findtext("filename") or "").strip() or file.stem + ".jpg")
            sets.append(sorted(set(names)))
        meta = {}
        if folder.name == "Annotations" and (folder.parent / "JPEGImages").is_dir():
            meta["images_dir"] = str(folder.parent / "JPEGImages")
        table = LabelTable.from_label_sets(items, sets, source_format="voc", meta=meta)
        return table, [str(f) for f in files]

    def _read_folders(self) -> tuple[LabelTable, list[str]]:
        labels = sorted(p.name for p in self.path.iterdir() if p.is_dir() and not p.name.startswith("."))
        if not labels:
            raise DataError(f"{self.path} has no sub-folders: expected one folder per label")
        first: dict[str, str] = {}
        sets: dict[str, list[str]] = {}
        for label in labels:
            base = self.path / label
            for file in sorted(base.rglob("*")):
                rel = file.relative_to(base)
                if file.is_file() and not any(part.startswith(".") for part in rel.parts):
                    key = rel.as_posix()
                    first.setdefault(key, f"{label}/{key}")
                    sets.setdefault(key, []).append(label)
        keys = sorted(first)
        items = [first[k] for k in keys]
        table = LabelTable.from_label_sets(items, [sets[k] for k in keys], label_names=labels,
                                           source_format="folders", meta={"images_dir": str(self.path)})
        return table, [str(self.path / item) for item in items]

    # ---- shared -------------------------------------------------------------------------
    def _item(self, value: str, where: str) -> str:
        item = value.strip()
        if not item:
            raise DataError(f"{where}: the item id is empty")
        return item

    def _names_from_file(self) -> list[str]:
        if not self.names_file.is_file():
            raise DataError(f"label names file {self.names_file} does not exist")
        lines = [line.strip() for line in self.names_file.read_text(encoding="utf-8-sig").splitlines()]
        while lines and not lines[-1]:
            lines.pop()
        for n, name in enumerate(lines, start=1):
            if not name:
                raise DataError(f"{self.names_file} line {n} is empty: expected one label name per line")
            if lines.index(name) != n - 1:
                raise DataError(f"{self.names_file} line {n}: label {name!r} is listed twice")
        if not lines:
            raise DataError(f"{self.names_file} is empty: expected one label name per line")
        return lines

    def _from_tags(self, items: list[str], tag_lists: list[list[str]], locations: list[str], fmt: str,
                   meta: dict) -> tuple[LabelTable, list[str]]:
        repeated = [[where, sorted({t for t in ts if ts.count(t) > 1})]
                    for ts, where in zip(tag_lists, locations) if len(set(ts)) < len(ts)]
        if repeated:
            meta = {**meta, "repeated_tags": repeated}
        names = None
        if self.names_file is not None:
            names = self._names_from_file()
            tags = {t for ts in tag_lists for t in ts}
            indices = self.labels_are_indices
            if indices is None:
                indices = bool(tags) and all(t.isdigit() for t in tags) and not tags & set(names)
            if indices:
                tag_lists = [[self._index_name(t, names, where) for t in ts]
                             for ts, where in zip(tag_lists, locations)]
                meta = {**meta, "labels_are_indices": True, "index_names": names}
            else:
                allowed = set(names)
                for ts, where in zip(tag_lists, locations):
                    for t in ts:
                        if t not in allowed:
                            raise DataError(f"{where}: label {t!r} is not in {self.names_file} "
                                            f"({_preview(names)})")
        elif self.labels_are_indices:
            raise DataError("labels_are_indices needs label_names_file to map indices to names")
        table = LabelTable.from_label_sets(items, tag_lists, label_names=names, source_format=fmt, meta=meta)
        return table, locations

    def _index_name(self, tag: str, names: list[str], where: str) -> str:
        if not tag.isdigit() or int(tag) >= len(names):
            raise DataError(f"{where}: label index {tag!r} is not in 0..{len(names) - 1} "
                            f"(lines of {self.names_file})")
        return names[int(tag)]


def _beyond_json_limits(where: str, error: Exception) -> DataError:
    """Valid JSON that Python will not parse: nested too deeply, or an integer with too many digits."""
    if isinstance(error, RecursionError):
        return DataError(f"{where}: JSON nested too deeply (Python reads about 1000 levels of [ and {{); "
                         "expected records like {\"image\": ..., \"labels\": [...]}")
    return DataError(f"{where}: JSON holds a number with more than {sys.get_int_max_str_digits()} digits; "
                     "expected ids and labels as short numbers or strings")


def read_csv_rows(path: str | Path, *, delimiter: str | None = None) -> tuple[list[str], list[tuple[int, list[str]]]]:
    """A CSV/TSV file's header and (line number, fields) of every non-blank row, read and checked as label files
    are (UTF-8, delimiter given by character or name, else detected; malformed rows, duplicate column names and
    rows of the wrong width are DataErrors)."""
    return _Reader(Path(path).expanduser(), delimiter=delimiter)._csv()


def _roboflow_project_category(categories: list[dict], used: set) -> dict | None:
    """The category Roboflow adds to a COCO export for the project itself: supercategory "none", used by no
    annotation, and the supercategory of every other category; None when there is no such category."""
    for category in categories:
        others = [c for c in categories if c is not category]
        if (category.get("supercategory") == "none" and category["id"] not in used and others
                and all(c.get("supercategory") == category["name"] for c in others)):
            return category
    return None


def _detect_separator(cells: Iterable[str]) -> str:
    """The tag separator used in `cells`: the most common of , ; | or else whitespace (" ")."""
    counts = {sep: 0 for sep in _TAG_SEPARATORS}
    for cell in cells:
        for sep in _TAG_SEPARATORS:
            counts[sep] += sep in cell
    best = max(_TAG_SEPARATORS, key=counts.get)
    return best if counts[best] else " "


def _split_tags(cell: str, sep: str) -> list[str]:
    parts = cell.split() if sep.isspace() else cell.split(sep)
    return [p.strip() for p in parts if p.strip()]


def _writable_separator(names: Sequence[str], preferred: str) -> str:
    """`preferred`, or the first of , ; | that no label name contains."""
    def clashes(sep: str) -> bool:
        return any((any(c.isspace() for c in n) if sep.isspace() else sep in n) for n in names)
    for sep in (preferred, *_TAG_SEPARATORS):
        if not clashes(sep):
            return sep
    raise DataError(f"every tag separator occurs inside some label name ({_preview(names)})")


def _preview(names: Sequence[str], n: int = 8) -> str:
    shown = ", ".join(names[:n])
    return shown + (f", ... ({len(names)} in all)" if len(names) > n else "")


# ---- writing -----------------------------------------------------------------------------
def write_labels(table: LabelTable, path: str | Path, *, format: str | None = None) -> Path:
    """Write `table` to `path` in `format` (default: the format it was read from).

    tags/onehot/jsonl/json are written back with the delimiter, column or key names and tag
    separator recorded in `table.meta`, so the same read options read the file back; a
    headerless tags file is written as columns (id, labels). coco, voc and folders sources are
    written as a tags CSV with columns image,labels (space-separated tags; tab-separated when
    `path` ends in .tsv) since their images stay where they are, and so are CVAT, Label Studio
    and Hugging Face sources, except those whose items are texts: JSON Lines {"text", "labels"}.
    spaCy sources are written as spaCy JSONL ({"text", "cats"}, unknown labels left out). One-hot
    files write unknown cells as empty fields; the other formats cannot express unknown values
    and raise DataError.

    Returns:
        `path`.
    """
    path = Path(path).expanduser()
    fmt = format or table.source_format
    if fmt not in FORMATS:
        raise DataError(f"unknown label format {fmt!r}: expected one of {', '.join(FORMATS)}")
    meta = table.meta if fmt == table.source_format else {}
    if fmt in ("labelstudio", "labelstudio-csv", "huggingface") and meta.get("text_items"):
        fmt, meta = "jsonl", {"id_key": "text", "labels_key": "labels"}
    elif fmt in _OWN_NAMES and fmt != "spacy":
        fmt, meta = "tags", {}
    if fmt not in ("onehot", "spacy") and not table.known.all():
        raise DataError(f"cannot write {path} as {fmt}: the table has {int((~table.known).sum())} unknown "
                        "label values, which only the one-hot format can record")
    path.parent.mkdir(parents=True, exist_ok=True)
    if fmt in ("tags", "onehot"):
        _write_csv(table, path, fmt, meta)
    elif fmt == "spacy":
        key = meta.get("text_key", "text")
        path.write_text("".join(json.dumps({key: item, "cats": {n: float(v) for n, v, k in zip(table.label_names, row, known)
                                                                 if k}}, ensure_ascii=False) + "\n"
                                for item, row, known in zip(table.items, table.targets, table.known)), encoding="utf-8")
    else:
        id_key, labels_key = meta.get("id_key", "image"), meta.get("labels_key", "labels")
        records = [{id_key: item, labels_key: labels} for item, labels in zip(table.items, table.label_sets())]
        if fmt == "jsonl":
            text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)
        else:
            text = json.dumps(records, ensure_ascii=False, indent=1) + "\n"
        path.write_text(text, encoding="utf-8")
    return path


def _write_csv(table: LabelTable, path: Path, fmt: str, meta: dict) -> None:
    if path.suffix.lower() in _TAB_SUFFIXES:
        delimiter = "\t"
    else:
        delimiter = meta.get("delimiter", ",")
        if delimiter == "\t" and path.suffix.lower() == ".csv":
            delimiter = ","
    header = meta.get("header", True)
    id_column = meta.get("id_column", "image") if header else None
    with path.open("w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f, delimiter=delimiter, lineterminator="\n")
        if fmt == "onehot":
            if header:
                writer.writerow([id_column, *table.label_names])
            for item, row, known in zip(table.items, table.targets, table.known):
                writer.writerow([item, *(str(int(v)) if k else "" for v, k in zip(row, known))])
            return
        separator = _writable_separator(table.label_names, meta.get("separator", " "))
        if header:
            writer.writerow([id_column, meta.get("labels_column", "labels")])
        index = {n: i for i, n in enumerate(meta["index_names"])} if meta.get("labels_are_indices") else None
        for item, labels in zip(table.items, table.label_sets()):
            tags = [str(index[label]) for label in labels] if index is not None else labels
            writer.writerow([item, separator.join(tags)])
