"""One label file (or folder) being read: the read options, its cached contents, and the helpers readers share."""

from __future__ import annotations

import csv
import io
import json
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from tagnet.data.columns import ID_COLUMNS, pick_column
from tagnet.data.label_table import LabelTable
from tagnet.errors import DataError

INDEX_NAMES = ("", "Unnamed: 0")  # the header pandas' to_csv writes over the index, and what pandas reads it back as
SEPARATOR_NAMES = {"space": " ", "comma": ",", "semicolon": ";", "pipe": "|", "tab": "\t"}
TAB_SUFFIXES = (".tsv", ".tab")
_SNIFF_LINES = 50


@dataclass
class Records:
    """What a reader found, row by row: item ids, label names (or a 0/1/unknown matrix), texts, notes.

    Attributes:
        items: item ids (image paths, or the text where the export has no image).
        label_sets: the labels on each item (None when `targets`/`known` are given).
        locations: where each row came from ("tasks.json task 7").
        texts: the text of each item where the file holds text, else None.
        label_names: every label the file declares (None: the labels used).
        targets, known: a multi-hot matrix and its known-mask, columns in `label_names` order.
        meta: reader notes and settings recorded in the LabelTable's meta.
    """

    items: list[str]
    label_sets: list[list[str]] | None
    locations: list[str]
    texts: list | None = None
    label_names: list[str] | None = None
    targets: Any = None
    known: Any = None
    meta: dict = field(default_factory=dict)


OPTION_FREE = ("text", "head")  # Source caches that no read option changes (immutable strings)


@dataclass(frozen=True)
class FormatInfo:
    """What a format module declares about itself.

    Attributes:
        name: the format's name (--format NAME).
        summary: one line for --help.
        layout: "file", "folder" or "either".
        texts: its records may carry a text column.
        own_names: it names its own labels, so --label-names does not apply.
        specific: its detection recognises one tool's documented layout, not a generic table.
    """

    name: str
    summary: str
    layout: str = "file"
    texts: bool = False
    own_names: bool = False
    specific: bool = False


@dataclass(frozen=True)
class Fit:
    """How well one reading fits a file: its format, a score from 0 to 1, why, and the options that pick it.

    Attributes:
        format: the format's NAME.
        score: 1 = the file carries the format's signature; FIT (0.5) and above: the reading fits.
        reason: what in the file fits (or half fits), in words a user can check.
        options: read options that give this reading (e.g. {"label_columns": [...]}), applied when it is read.
        pick: the command-line option(s) that choose this reading.
    """

    format: str
    score: float
    reason: str
    options: dict[str, Any] = field(default_factory=dict)
    pick: str = ""

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form (data check --json)."""
        return {"format": self.format, "score": round(self.score, 3), "reason": self.reason,
                "pick": self.pick or f"--format {self.format}"}


FIT = 0.5  # a reading scoring this or more fits the file; two that fit and disagree are refused


class Source:
    """A label file or folder with the user's read options; file contents are read once and cached."""

    def __init__(self, path: Path, *, format: str | None = None, id_column: str | int | None = None,
                 labels_column: str | int | None = None, separator: str | None = None,
                 label_columns: Sequence[str] | None = None, label_names_file: str | Path | None = None,
                 labels_are_indices: bool | None = None, no_header: bool = False,
                 delimiter: str | None = None) -> None:
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
        self.delim = ","
        self._cache: dict[str, Any] = {}
        self.text_column: str | None = None  # read_labels_with_texts: a column that is neither id nor label
        self.records: tuple[list, list[str]] = ([], [])  # JSON records read, for their texts
        self.export_texts: list | None = None  # the texts an export holds (Label Studio data.text, spaCy, datasets)
        self.notes: list[str] = []  # what the read decided for the user: shown by data check (table.meta["notes"])

    def given(self) -> dict[str, Any]:
        """The read options the user set (for a re-read with other options)."""
        return {key: value for key, value in (
            ("id_column", self.id_column), ("labels_column", self.labels_column), ("separator", self.separator),
            ("label_columns", self.label_columns), ("label_names_file", self.names_file),
            ("labels_are_indices", self.labels_are_indices), ("no_header", self.no_header),
            ("delimiter", self.delimiter)) if value not in (None, False)}

    def copy(self, **options: Any) -> "Source":
        """A fresh Source of the same path with the given options replacing the user's."""
        fresh = Source(self.path, **{**self.given(), **options})
        fresh.text_column = self.text_column
        # the file as read depends on no read option: the copy reads it no second time
        fresh._cache = {key: value for key, value in self._cache.items() if key in OPTION_FREE}
        return fresh

    def memo(self, key: str, make: Any) -> Any:
        """`make()` computed once per source and kept under `key` (what several formats' detection share)."""
        if key not in self._cache:
            self._cache[key] = make()
        return self._cache[key]

    # ---- contents ------------------------------------------------------------------------
    def text(self) -> str:
        """The file as UTF-8 text (a BOM dropped)."""
        if "text" not in self._cache:
            try:
                self._cache["text"] = self.path.read_text(encoding="utf-8-sig")
            except UnicodeDecodeError as e:
                raise DataError(f"{self.path} is not UTF-8 text (bad byte at offset {e.start})") from None
        return self._cache["text"]

    def head(self, size: int = 65536) -> str:
        """The first `size` bytes of the file as text (undecodable bytes replaced): for cheap detection."""
        if "head" not in self._cache:
            with self.path.open("rb") as f:
                self._cache["head"] = f.read(size).decode("utf-8-sig", errors="replace")
        return self._cache["head"]

    def json(self) -> Any:
        """The file parsed as one JSON document."""
        if "json" not in self._cache:
            try:
                self._cache["json"] = json.loads(self.text())
            except json.JSONDecodeError as e:
                raise DataError(f"{self.path} line {e.lineno} column {e.colno}: not valid JSON ({e.msg})") from None
            except (ValueError, RecursionError) as e:
                raise beyond_json_limits(str(self.path), e) from None
        return self._cache["json"]

    def jsonl(self) -> tuple[list, list[str]]:
        """The records of a JSON Lines file and where each is ("f.jsonl line 3")."""
        if "jsonl" not in self._cache:
            records, locations = [], []
            for n, line in enumerate(self.text().splitlines(), start=1):
                if not line.strip():
                    continue
                where = f"{self.path.name} line {n}"
                try:
                    records.append(json.loads(line))
                except json.JSONDecodeError as e:
                    raise DataError(f"{where} column {e.colno}: not valid JSON ({e.msg})") from None
                except (ValueError, RecursionError) as e:
                    raise beyond_json_limits(where, e) from None
                locations.append(where)
            self._cache["jsonl"] = (records, locations)
        return self._cache["jsonl"]

    def first_record(self) -> Any:
        """The first JSON Lines record, parsed from the head of the file; None when it is not JSON."""
        line = next((line for line in self.head().splitlines() if line.strip()), "")
        try:
            return json.loads(line)
        except (ValueError, RecursionError):
            return None

    def sniff_delimiter(self, text: str) -> str:
        """The CSV delimiter: the option, tab for .tsv, else sniffed from the first lines."""
        if self.delimiter is not None:
            return self.delimiter
        if self.path.suffix.lower() in TAB_SUFFIXES:
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

    def csv(self) -> tuple[list[str], list[tuple[int, list[str]]]]:
        """Header (or column numbers) and (line number, fields) of each non-blank row; cached."""
        if "csv" not in self._cache:
            text = self.text()
            self.delim = self.sniff_delimiter(text)
            reader = csv.reader(io.StringIO(text), delimiter=self.delim, strict=True)
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
            header, rows = self._header(rows)
            for line, fields in rows:
                if len(fields) != len(header):
                    hint = (f"; quote fields that contain the delimiter {self.delim!r}"
                            if len(fields) > len(header) else "")
                    raise DataError(f"{self.path} line {line}: {len(fields)} fields but "
                                    f"{'the first row' if self.no_header else 'the header'} has "
                                    f"{len(header)} ({', '.join(header)}){hint}")
            self._cache["csv"] = (header, rows)
        return self._cache["csv"]

    def _header(self, rows: list[tuple[int, list[str]]]) -> tuple[list[str], list[tuple[int, list[str]]]]:
        if self.no_header:
            return [str(i) for i in range(len(rows[0][1]))], rows
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
        return header, rows

    # ---- columns and keys ----------------------------------------------------------------
    def column(self, header: list[str], requested: str | int | None, defaults: Sequence[str],
               what: str, fallback: int) -> int:
        """The column `requested`, else the first named like `defaults`, else column `fallback`."""
        if requested is None:
            found = pick_column(header, defaults)
            if found is not None:
                return found
            if fallback >= len(header):
                raise DataError(f"{self.path}: no {what} column; available columns: {', '.join(header)}")
            return fallback
        return self.named_column(header, requested, what)

    def named_column(self, header: list[str], requested: str | int, what: str) -> int:
        """The column named `requested` (case-insensitive when unique), or a DataError listing the columns."""
        name = str(requested)
        if name in header:
            return header.index(name)
        folded = [i for i, h in enumerate(header) if h.lower() == name.lower()]
        if len(folded) == 1:
            return folded[0]
        note = " (no header: columns are numbered from 0)" if self.no_header else ""
        raise DataError(f"{self.path}: no column {name!r} for the {what}; available columns: "
                        f"{', '.join(header)}{note}")

    def key(self, record: dict, requested: str | int | None, defaults: Sequence[str], what: str, where: str) -> str:
        """The key of `record` holding `what`: `requested`, else the first of `defaults` it has."""
        if requested is not None:
            if str(requested) in record:
                return str(requested)
        else:
            for key in defaults:
                if key in record:
                    return key
        wanted = repr(str(requested)) if requested is not None else f"one of {', '.join(defaults)}"
        raise DataError(f"{where}: no {what} key ({wanted}); the record has keys {sorted(record)}")

    def has_id_field(self, fmt: str) -> bool:
        """Whether the file has a column (or first record a key) with one of the usual id names."""
        if fmt not in ("tags", "onehot", "jsonl", "json", "long"):
            return True  # an export names its own items (an image, or the text itself)
        if self.path.suffix.lower() not in (".json", ".jsonl", ".ndjson"):
            header = self.csv()[0]
            self.named_column(header, self.text_column, "text")  # a missing text column is named as such
            return pick_column(header, ID_COLUMNS) is not None
        if fmt == "json":
            data = self.json()
            first = data[0] if isinstance(data, list) and data else None
        else:
            first = self.first_record()
        return isinstance(first, dict) and any(key in first for key in ID_COLUMNS)

    @staticmethod
    def item(value: str, where: str) -> str:
        """An item id, stripped; a DataError when empty."""
        item = value.strip()
        if not item:
            raise DataError(f"{where}: the item id is empty")
        return item

    # ---- label names ---------------------------------------------------------------------
    def names_from_file(self) -> list[str]:
        """The label names of `label_names_file`, one per line, checked."""
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

    def from_tags(self, items: list[str], tag_lists: list[list[str]], locations: list[str], fmt: str,
                  meta: dict) -> tuple[LabelTable, list[str]]:
        """A table of one tag list per item; tags mapped through `label_names_file` where given."""
        repeated = [[where, sorted({t for t in ts if ts.count(t) > 1})]
                    for ts, where in zip(tag_lists, locations) if len(set(ts)) < len(ts)]
        if repeated:
            meta = {**meta, "repeated_tags": repeated}
        names = None
        if self.names_file is not None:
            names = self.names_from_file()
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
                            raise DataError(f"{where}: label {t!r} is not in {self.names_file} ({preview(names)})")
        elif self.labels_are_indices:
            raise DataError("labels_are_indices needs label_names_file to map indices to names")
        table = LabelTable.from_label_sets(items, tag_lists, label_names=names, source_format=fmt, meta=meta)
        return table, locations

    def _index_name(self, tag: str, names: list[str], where: str) -> str:
        if not tag.isdigit() or int(tag) >= len(names):
            raise DataError(f"{where}: label index {tag!r} is not in 0..{len(names) - 1} (lines of {self.names_file})")
        return names[int(tag)]

    def table(self, records: Records, fmt: str) -> tuple[LabelTable, list[str]]:
        """The LabelTable of a reader's records; keeps their texts for read_labels_with_texts."""
        self.export_texts = records.texts if self.text_column is not None else None
        if self.text_column is not None and records.texts is None:
            raise DataError(f"{self.path}: this {fmt} file holds no text under {self.text_column!r}")
        if records.targets is not None:
            table = LabelTable(records.items, records.label_names or [], records.targets, records.known, fmt,
                               records.meta)
        else:
            table = LabelTable.from_label_sets(records.items, records.label_sets, label_names=records.label_names,
                                               source_format=fmt, meta=records.meta)
        return table, records.locations


def beyond_json_limits(where: str, error: Exception) -> DataError:
    """Valid JSON that Python will not parse: nested too deeply, or an integer with too many digits."""
    if isinstance(error, RecursionError):
        return DataError(f"{where}: JSON nested too deeply (Python reads about 1000 levels of [ and {{); "
                         "expected records like {\"image\": ..., \"labels\": [...]}")
    return DataError(f"{where}: JSON holds a number with more than {sys.get_int_max_str_digits()} digits; "
                     "expected ids and labels as short numbers or strings")


def preview(names: Sequence[str], n: int = 8) -> str:
    """The first `n` names joined by commas, and how many there are in all."""
    shown = ", ".join(str(name) for name in names[:n])
    return shown + (f", ... ({len(names)} in all)" if len(names) > n else "")
