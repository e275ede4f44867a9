"""Feature tables for tabular multi-label data: ARFF files (dense and sparse, MULAN label XML) and CSV/TSV files."""

from __future__ import annotations

import html
import os
import re
import unicodedata
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import scipy.sparse as sp

from tagnet.data.columns import ID_COLUMNS, pick_column
from tagnet.data.labels import given_options, read_csv_rows
from tagnet.data.label_table import LabelTable
from tagnet.errors import ConfigError, DataError

ARFF_SUFFIX = ".arff"
# the read options that apply to feature tables (read_feature_table's); every other label-file option is for label files
TABULAR_OPTIONS = ("label_columns", "label_count", "labels_xml", "id_column", "delimiter")
MISSING = ("", "?", "nan", "NaN", "NA")
_NUMERIC_TYPES = ("NUMERIC", "REAL", "INTEGER")
_MEKA_LABELS = re.compile(r"(?:^|\s)-C\s+(-?\d+)")  # MEKA's label count in @relation 'name: -C 6'
_BINARY = {frozenset(pair): pair[0] for pair in (("yes", "no"), ("true", "false"), ("t", "f"), ("y", "n"), ("1", "0"))}


@dataclass
class FeatureTable:
    """Labelled feature vectors: the labels, one float32 row of features per item (NaN = missing; a scipy CSR matrix
    when read with sparse=True from a sparse ARFF file), feature names.

    `encoding` records how nominal ARFF attributes became numbers, JSON-able: {"binary": {attribute: positive
    value}} for two-valued ones (YES/NO, 0/1: one 0/1 column named as the attribute) and {"onehot": {attribute:
    [categories]}} for the others (one column "attribute=category" each); encode_features applies it to new rows.
    """

    labels: LabelTable
    features: np.ndarray
    feature_names: list[str]
    encoding: dict = field(default_factory=lambda: {"binary": {}, "onehot": {}})


@dataclass
class _Columns:
    """A parsed file: column names, a float matrix (NaN = missing; CSC for a sparse ARFF file), and the raw cell of
    any column on demand."""

    path: Path
    names: list[str]
    matrix: np.ndarray | sp.csc_matrix
    not_numeric: dict[int, str]  # column -> why it has no numbers (nominal text values, string, date)
    raw: list[list[str]] | None  # CSV cells as read; None for ARFF
    locations: list[str]
    arff_rows: list | None = None
    kinds: list | None = None  # ARFF attribute types (a list of nominal values, or NUMERIC, STRING, ...)
    relation: str = ""

    @cached_property
    def positions(self) -> dict[str, int]:
        """{column name: its first position}: found by name without a scan of every name."""
        found: dict[str, int] = {}
        for j, name in enumerate(self.names):
            found.setdefault(name, j)
        return found

    def raw_values(self, j: int) -> list[str | None]:
        """Column j as the file writes it; None where missing (a sparse row's left-out nominal is its first value)."""
        if self.raw is not None:
            return [None if row[j].strip() in MISSING else row[j].strip() for row in self.raw]
        kind = self.kinds[j] if self.kinds else None
        absent = kind[0] if isinstance(kind, list) and kind else "0"
        return [(None if row.get(j, absent) is None else str(row.get(j, absent))) if isinstance(row, dict)
                else (None if row[j] is None else str(row[j])) for row in self.arff_rows or []]

    def column(self, name: str, what: str) -> int:
        if name in self.positions:
            return self.positions[name]
        raise DataError(f"{self.path}: no column {name!r} for the {what}; available: {_preview(self.names)}")

    def strings(self, j: int) -> list[str]:
        if self.raw is not None:
            return [row[j].strip() for row in self.raw]
        rows = self.arff_rows or []
        values = [row.get(j) if isinstance(row, dict) else row[j] for row in rows]
        return [str(v) if v is not None else "" for v in values]

    def numbers(self, j: int, what: str) -> np.ndarray:
        return self.block([j], what).toarray().ravel() if sp.issparse(self.matrix) else self.block([j], what)[:, 0]

    def block(self, at: Sequence[int], what: str) -> np.ndarray | sp.csr_matrix:
        """Columns `at` as a (rows, len(at)) float64 array, CSR for a sparse file; DataError for a column of text."""
        bad = next((j for j in at if j in self.not_numeric), None)
        if bad is not None:
            raise DataError(f"{self.path}: {what} {self.names[bad]!r} {self.not_numeric[bad]}; expected numbers")
        return self.matrix[:, list(at)].tocsr() if sp.issparse(self.matrix) else self.matrix[:, list(at)]


def is_feature_table(path: str | Path, options: dict | None = None) -> bool:
    """Whether `path` is read as a feature table: an ARFF file, or label_count / labels_xml given in `options`."""
    options = options or {}
    return Path(path).suffix.lower() == ARFF_SUFFIX or any(options.get(key) is not None for key in ("label_count", "labels_xml"))


def table_read_options(options: dict) -> dict:
    """`options` without unset (None/False) values, for read_feature_table.

    Raises ConfigError naming the options that apply to label files only (format, separator, no_header...).
    """
    options = given_options(options)
    wrong = sorted(set(options) - set(TABULAR_OPTIONS))
    if wrong:
        raise ConfigError(f"option(s) {', '.join(wrong)} do not apply to feature tables; expected only "
                          f"{', '.join(TABULAR_OPTIONS)}")
    return options


def read_feature_table(path: str | Path, *, label_columns: Sequence[str] | None = None, label_count: int | None = None,
                       labels_xml: str | Path | None = None, id_column: str | None = None,
                       delimiter: str | None = None, feature_names: Sequence[str] | None = None,
                       encoding: dict | None = None, sparse: bool = False) -> FeatureTable:
    """Read an ARFF or CSV/TSV feature table with its labels.

    The label columns are `label_columns` (names), else the last `label_count` columns, else, for ARFF,
    the labels named by a MULAN XML file: `labels_xml`, or found beside the ARFF file (NAME.xml for
    NAME.arff, or the XML whose name the ARFF name starts with: scene.xml for scene-train.arff), else
    MEKA's `-C N` in the @relation name (the first N attributes; -C -N: the last N). Quoted ARFF names
    are unescaped ('Swainson\\'s Thrush' is Swainson's Thrush). Label values are 0 or 1; missing (?, empty)
    or -1 means unknown. The features are every other column except the id column (`id_column`, or a CSV
    column named id, image, file..., or an ARFF attribute that identifies rows: STRING, or nominal with a
    different value on every row; noted in labels.meta["notes"]), or exactly `feature_names` in that
    order (encoded as `encoding`, a trained model's, says). Nominal ARFF features are encoded (see FeatureTable.encoding). Items are the id column's
    values, else row numbers from 1. With `sparse`, the features of a sparse ARFF file ({index value, ...} rows) are
    a scipy CSR matrix (float32) unless a nominal feature other than {0,1} needs encoding; the file is never
    expanded into a dense matrix of rows x attributes.

    Raises:
        DataError: naming the file, the row or column, and what was expected.
    """
    columns = _read_columns(Path(path).expanduser(), delimiter=delimiter)
    notes: list[str] = []
    identifiers = [] if id_column is not None else _identifiers(columns)
    id_at = identifiers[0] if identifiers else _id_column(columns, id_column)
    if identifiers:
        notes.append(f"attribute(s) {', '.join(repr(columns.names[j]) for j in identifiers)} identify the rows "
                     f"(string, or a different nominal value on every row): not features; {columns.names[id_at]!r} "
                     "gives the item ids")
    label_at = _label_columns(columns, id_at, label_columns=label_columns, label_count=label_count, labels_xml=labels_xml,
                              notes=notes)
    attributes = _attributes_of(feature_names, encoding) if feature_names is not None and encoding else feature_names
    feature_at = [j for j in _feature_columns(columns, id_at, label_at, attributes) if j not in identifiers[1:]]
    items = _items(columns, id_at)
    label_at = sorted(label_at, key=columns.names.__getitem__)  # a LabelTable's labels are sorted by name
    targets, known = _label_values(columns, label_at)
    source = "arff" if columns.raw is None else "table"
    if attributes is not feature_names and _needs_encoding(columns, feature_at, encoding):  # a model's encoded columns
        raw = {columns.names[j]: columns.raw_values(j) for j in feature_at}
        features = encode_features(raw, feature_names, encoding, where=str(columns.path))
    elif attributes is not feature_names:  # numbers and {0,1} attributes only: the file's values as they are
        features = _features(columns, feature_at)
    else:
        features, feature_names, encoding = _encoded_features(columns, feature_at)
    if sp.issparse(features) and not sparse:
        features = features.toarray()
    meta = {"features": len(feature_names), **({"notes": notes} if notes else {}),
            **({"id_column": columns.names[id_at]} if id_at is not None else {})}  # else items are row numbers
    labels = LabelTable(items, [columns.names[j] for j in label_at], targets, known, source, meta)
    return FeatureTable(labels, features, feature_names, encoding)


def _label_values(columns: _Columns, label_at: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """(targets uint8, known bool) of the label columns `label_at` (0/1; missing or -1 = unknown), without a float
    matrix of rows x labels for a sparse file. Raises DataError at the first other value."""
    values = columns.block(label_at, "label column")  # _label_columns gives >= 1
    cells = values.tocoo() if sp.issparse(values) else None
    data = cells.data if cells is not None else values
    bad = ~(np.isnan(data) | np.isin(data, (0.0, 1.0, -1.0)))
    if bad.any():
        i, j = (int(cells.row[bad][0]), int(cells.col[bad][0])) if cells is not None else map(int, np.argwhere(bad)[0])
        raise DataError(f"{columns.locations[i]}, label column {columns.names[label_at[j]]!r}: value "
                        f"{(cells.data[bad][0] if cells is not None else values[i, j]):g} is not 0 or 1 (missing or -1 "
                        "= unknown)")
    if cells is None:
        return (values == 1.0).astype(np.uint8), ~np.isnan(values) & (values != -1.0)
    targets = np.zeros(values.shape, np.uint8)
    known = np.ones(values.shape, bool)
    targets[cells.row[data == 1.0], cells.col[data == 1.0]] = 1
    unknown = np.isnan(data) | (data == -1.0)
    known[cells.row[unknown], cells.col[unknown]] = False
    return targets, known


def _numeric_binary(kind: Any) -> bool:
    """Whether an ARFF attribute type is the nominal {0,1}, whose values the file's numbers already are."""
    return isinstance(kind, list) and sorted(kind) == ["0", "1"]


def _needs_encoding(columns: _Columns, feature_at: list[int], encoding: dict) -> bool:
    """Whether a trained model's `encoding` changes any of these columns' values (one-hot, or a binary attribute
    other than {0,1} with positive value 1)."""
    binary = encoding.get("binary", {})
    kinds = columns.kinds or [None] * len(columns.names)
    return bool(encoding.get("onehot")) or any(
        binary[columns.names[j]] != "1" or not _numeric_binary(kinds[j]) for j in feature_at if columns.names[j] in binary)


def read_feature_rows(path: str | Path, *, feature_names: Sequence[str], id_column: str | None = None,
                      delimiter: str | None = None, encoding: dict | None = None) -> tuple[list[str], np.ndarray]:
    """Items and features (N, len(feature_names)) float32 of an ARFF or CSV file, labelled or not; other columns are ignored.

    With `encoding` (a FeatureTable's), nominal attributes are encoded as in training (see encode_features).
    """
    columns = _read_columns(Path(path).expanduser(), delimiter=delimiter)
    identifiers = [] if id_column is not None else _identifiers(columns)
    id_at = identifiers[0] if identifiers else _id_column(columns, id_column)
    if encoding is None:
        return _items(columns, id_at), _dense(_features(columns, _feature_columns(columns, id_at, [], feature_names)))
    wanted = _attributes_of(feature_names, encoding)
    at = _feature_columns(columns, id_at, [], wanted)
    if not _needs_encoding(columns, at, encoding):
        return _items(columns, id_at), _dense(_features(columns, at))
    raw = {name: columns.raw_values(j) for name, j in zip(wanted, at)}
    return _items(columns, id_at), encode_features(raw, feature_names, encoding, where=str(columns.path))


def encode_features(raw: Mapping[str, Sequence[Any]], feature_names: Sequence[str], encoding: dict, *,
                    where: str = "rows") -> np.ndarray:
    """Raw column values (as a file holds them, None or "?" = missing) as the float32 features named `feature_names`.

    A binary attribute is 1 where it holds its positive value, else 0; a one-hot column "attribute=category" is 1
    where the attribute holds that category, so a category unseen in training gives all zeros; other columns are
    numbers. Missing values are NaN.

    Raises:
        DataError: an attribute is missing from `raw`, or a numeric column holds text.
    """
    columns = []
    for name in feature_names:
        attribute, category = _attribute(name, encoding)
        if attribute not in raw:
            raise DataError(f"{where}: no column {attribute!r} for feature {name!r}")
        values = [None if v is None or str(v).strip() in MISSING else str(v).strip() for v in raw[attribute]]
        if attribute in encoding.get("binary", {}):
            category = encoding["binary"][attribute]
        if category is not None:
            columns.append([np.nan if v is None else float(v == category) for v in values])
            continue
        try:
            columns.append([np.nan if v is None else float(v) for v in values])
        except ValueError:
            bad = next(v for v in values if v is not None and not _is_number(v))
            raise DataError(f"{where}: feature {name!r} holds {bad!r}; expected numbers") from None
    count = len(next(iter(raw.values()))) if raw else 0
    return np.array(columns, dtype=np.float32).T.reshape(count, len(feature_names))


def _attribute(name: str, encoding: dict) -> tuple[str, str | None]:
    """(attribute, one-hot category or None) of an encoded feature name."""
    for attribute, categories in encoding.get("onehot", {}).items():
        if name.startswith(f"{attribute}=") and name[len(attribute) + 1:] in categories:
            return attribute, name[len(attribute) + 1:]
    return name, None


def _attributes_of(feature_names: Sequence[str], encoding: dict) -> list[str]:
    return list(dict.fromkeys(_attribute(name, encoding)[0] for name in feature_names))


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def find_labels_xml(arff_path: str | Path) -> Path | None:
    """The MULAN label XML beside an ARFF file: NAME.xml, else the longest X.xml with NAME starting X- X_ or X."""
    arff_path = Path(arff_path)
    exact = arff_path.with_suffix(".xml")
    if exact.is_file():
        return exact
    stem = arff_path.stem
    prefixes = [xml for xml in arff_path.parent.glob("*.xml")
                if stem.startswith(xml.stem) and stem[len(xml.stem):len(xml.stem) + 1] in ("-", "_", ".")]
    return max(prefixes, key=lambda xml: len(xml.stem)) if prefixes else None


def read_labels_xml(path: str | Path) -> list[str]:
    """The label names of a MULAN labels XML file (<labels><label name="..."/>..., nested labels included), in order."""
    path = Path(path)
    try:
        root = ET.parse(path).getroot()
    except (ET.ParseError, OSError) as exc:
        raise DataError(f"{path}: not a readable MULAN labels XML file ({exc})") from None
    names = [element.get("name", "") for element in root.iter() if element.tag.rsplit("}", 1)[-1] == "label"]
    if not names or not all(names):
        raise DataError(f"{path}: expected <label name=\"...\"> elements naming every label, found {len(names)} "
                        f"label elements{' (some without a name)' if names else ''}")
    return names


def fit_standardization(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-feature mean and standard deviation (float64) of training rows, ignoring missing (NaN) values.

    A feature that is constant or always missing gets std 1 (and mean 0 when always missing).
    """
    present = ~np.isnan(features)
    count = present.sum(axis=0)
    mean = np.divide(np.where(present, features, 0.0).sum(axis=0, dtype=np.float64), count,
                     out=np.zeros(features.shape[1]), where=count > 0)
    variance = np.divide((np.where(present, features - mean, 0.0) ** 2).sum(axis=0, dtype=np.float64), count,
                         out=np.zeros(features.shape[1]), where=count > 0)
    std = np.sqrt(variance)
    return mean, np.where(std > 1e-8, std, 1.0)


def fit_scaling(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(offset, scale) per feature of training rows, applied as standardize does ((x - offset) / scale).

    A column of values >= 0 that is zero on at least half its known rows (binary, counts, bag-of-words) is divided by
    its largest value, uncentred: its zeros stay zeros (sparse rows stay sparse) and a missing value becomes 0. Any
    other column is standardised (fit_standardization). Rows given as a scipy sparse matrix (a sparse ARFF file) keep
    every column of values >= 0 uncentred, however often it is nonzero (a common word of a bag of words), so they stay
    sparse; only columns with negative values are centred."""
    if sp.issparse(features):
        return _sparse_scaling(sp.csc_matrix(features, dtype=np.float64))
    mean, std = fit_standardization(features)
    present = ~np.isnan(features)
    values = np.where(present, features, 0.0)
    sparse = (values >= 0).all(axis=0) & (2 * (present & (values == 0)).sum(axis=0) >= present.sum(axis=0))
    top = values.max(axis=0) if len(values) else np.zeros(features.shape[1])
    return np.where(sparse, 0.0, mean), np.where(sparse, np.where(top > 0, top, 1.0), std)


def _sparse_scaling(features: sp.csc_matrix) -> tuple[np.ndarray, np.ndarray]:
    """fit_scaling of a sparse matrix (its left-out cells are zeros, stored NaN cells missing) from the stored cells
    only: columns of values >= 0 divided by their largest value, others standardised."""
    rows = features.shape[0]
    columns = np.repeat(np.arange(features.shape[1]), np.diff(features.indptr))
    data = features.data
    nan = np.isnan(data)
    values = np.where(nan, 0.0, data)

    def per_column(weights: np.ndarray) -> np.ndarray:
        return np.bincount(columns, weights=weights, minlength=features.shape[1])

    present = rows - per_column(nan.astype(np.float64))
    mean = np.divide(per_column(values), present, out=np.zeros(features.shape[1]), where=present > 0)
    # sum over known cells of (x - mean)^2: stored cells, plus mean^2 for every left-out zero
    squares = per_column(np.where(nan, 0.0, (values - mean[columns]) ** 2)) + (rows - np.diff(features.indptr)) * mean ** 2
    std = np.sqrt(np.divide(squares, present, out=np.zeros(features.shape[1]), where=present > 0))
    std = np.where(std > 1e-8, std, 1.0)
    top = np.zeros(features.shape[1])
    np.maximum.at(top, columns, values)
    sparse = per_column((values < 0).astype(np.float64)) == 0
    return np.where(sparse, 0.0, mean), np.where(sparse, np.where(top > 0, top, 1.0), std)


def standardize(features: np.ndarray | sp.spmatrix, mean: np.ndarray, std: np.ndarray) -> np.ndarray | sp.csr_matrix:
    """(features - mean) / std as float32; a missing (NaN) value becomes 0, the training mean. Sparse features stay a
    CSR matrix where every offset (mean) is 0; otherwise they come back dense."""
    if sp.issparse(features):
        if np.any(np.asarray(mean) != 0):
            return standardize(features.toarray(), mean, std)
        scaled = sp.csr_matrix(features, dtype=np.float64, copy=True)
        scaled.data = np.nan_to_num(scaled.data / np.asarray(std, dtype=np.float64)[scaled.indices], nan=0.0)
        scaled.eliminate_zeros()
        return scaled.astype(np.float32)
    scaled = (np.asarray(features, dtype=np.float64) - np.asarray(mean)) / np.asarray(std)
    return np.nan_to_num(scaled, nan=0.0).astype(np.float32)


# ---- reading ---------------------------------------------------------------------------------
def _read_columns(path: Path, *, delimiter: str | None) -> _Columns:
    if not path.is_file():
        raise DataError(f"feature table {path} does not exist; expected an .arff, .csv or .tsv file")
    if path.suffix.lower() != ARFF_SUFFIX:
        return _parse_csv(path, delimiter)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DataError(f"{path} is not UTF-8 text (bad byte at offset {exc.start})") from None
    return _parse_arff(path, text)


def _is_sparse(text: str) -> bool:
    """Whether the first data row of an ARFF text is written sparse: {index value, ...}."""
    lines = iter(text.splitlines())
    for line in lines:
        if line.strip().lower().startswith("@data"):
            break
    for line in lines:
        line = line.strip()
        if line and not line.startswith("%"):
            return line.startswith("{")
    return False


def _parse_arff(path: Path, text: str) -> _Columns:
    import arff  # liac-arff

    sparse = _is_sparse(text)
    try:
        data = arff.loads(text, return_type=arff.LOD if sparse else arff.DENSE)
    except arff.ArffException as exc:
        layout = " (a sparse file must write every row as {index value, ...})" if sparse else ""
        raise DataError(f"{path}: not a readable ARFF file: {exc}{layout}") from None
    attributes, rows = data["attributes"], data["data"]
    names = [re.sub(r"\\(.)", r"\1", name) for name, _ in attributes]  # 'Swainson\'s Thrush' as MULAN's XML names it
    converters, not_numeric, absent = [], {}, np.full(len(attributes), np.nan)
    for j, (_, kind) in enumerate(attributes):
        if isinstance(kind, list):
            try:
                converters.append({value: float(value) for value in kind}.__getitem__)
            except ValueError:
                converters.append(None)
                not_numeric[j] = f"is nominal with values {_preview(kind)}"
            if converters[-1] is not None and kind:
                absent[j] = converters[-1](kind[0])  # a value left out of a sparse row is the first nominal value
        elif str(kind).upper() in _NUMERIC_TYPES:
            converters.append(float)
            absent[j] = 0.0
        else:
            converters.append(None)
            not_numeric[j] = f"is of type {kind}"
    matrix = (_sparse_matrix(rows, converters, absent) if sparse else
              _dense_matrix(rows, converters, np.full(len(attributes), np.nan)))
    locations = [f"{path.name} data row {i + 1}" for i in range(len(rows))]
    return _Columns(path, names, matrix, not_numeric, None, locations, rows, [kind for _, kind in attributes],
                    str(data.get("relation", "")))


def _dense_matrix(rows: list, converters: list, absent: np.ndarray) -> np.ndarray:
    """Rows (lists, or dicts of a sparse file's given cells) as a float matrix: "?" is NaN, a left-out cell `absent`."""
    matrix = np.tile(absent, (len(rows), 1))
    for i, row in enumerate(rows):
        for j, value in (row.items() if isinstance(row, dict) else enumerate(row)):
            if value is None:
                matrix[i, j] = np.nan  # "?" (a sparse row's left-out values are not missing)
            elif converters[j] is not None:
                matrix[i, j] = converters[j](value)
    return matrix


def _sparse_matrix(rows: list[dict], converters: list, absent: np.ndarray) -> np.ndarray | sp.csc_matrix:
    """A sparse file's rows as a CSC matrix of their given cells (NaN for "?"), or dense where a left-out value is not
    0 (a nominal whose first value is another number)."""
    numeric = np.array([c is not None for c in converters], dtype=bool)
    if (numeric & (absent != 0)).any():
        return _dense_matrix(rows, converters, absent)
    counts = np.fromiter((len(row) for row in rows), dtype=np.int64, count=len(rows))
    cols = np.fromiter((j for row in rows for j in row), dtype=np.int64, count=int(counts.sum()))
    values = np.fromiter((np.nan if v is None else converters[j](v) if converters[j] is not None else np.nan
                          for row in rows for j, v in row.items()), dtype=np.float64, count=len(cols))
    indptr = np.concatenate([[0], np.cumsum(counts)])
    matrix = sp.csr_matrix((values, cols, indptr), shape=(len(rows), len(converters)))
    matrix.sum_duplicates()
    matrix.eliminate_zeros()  # a given 0 is a left-out one
    return matrix.tocsc()


def _parse_csv(path: Path, delimiter: str | None) -> _Columns:
    names, body = read_csv_rows(path, delimiter=delimiter)  # read and checked as label files are
    if not body:
        raise DataError(f"{path}: expected a header row and one row per item, found only the header")
    matrix = np.full((len(body), len(names)), np.nan)
    not_numeric = {}
    for j in range(len(names)):
        for i, (line, fields) in enumerate(body):
            cell = fields[j].strip()
            if cell in MISSING:
                continue
            try:
                matrix[i, j] = float(cell)
            except ValueError:
                not_numeric[j] = f"holds {cell!r} on line {line}"
                break
    return _Columns(path, names, matrix, not_numeric, [fields for _, fields in body],
                    [f"{path.name} line {line}" for line, _ in body])


# ---- choosing columns ------------------------------------------------------------------------
def _id_column(columns: _Columns, id_column: str | None) -> int | None:
    if id_column is not None:
        return columns.column(str(id_column), "item id")
    return None if columns.raw is None else pick_column(columns.names, ID_COLUMNS)


def _label_columns(columns: _Columns, id_at: int | None, *, label_columns: Sequence[str] | None,
                   label_count: int | None, labels_xml: str | Path | None, notes: list[str]) -> list[int]:
    others = [j for j in range(len(columns.names)) if j != id_at]
    if label_columns is not None:
        if not label_columns:
            raise DataError(f"{columns.path}: label_columns is empty; expected the names of the label columns")
        found = [columns.column(str(name), "labels") for name in label_columns]
        if id_at in found:
            raise DataError(f"{columns.path}: column {columns.names[id_at]!r} is both the id and a label column")
        return found
    if label_count is not None:
        if not 1 <= label_count < len(others):
            raise DataError(f"{columns.path}: label_count is {label_count}; expected 1 to {len(others) - 1} "
                            f"(the file has {len(others)} columns besides the id)")
        return others[-label_count:]
    xml = Path(labels_xml) if labels_xml is not None else (find_labels_xml(columns.path) if columns.raw is None else None)
    meka = _MEKA_LABELS.search(columns.relation)
    if xml is None and meka is not None:  # MEKA: -C N, the first N attributes are the labels (-C -N: the last N)
        count = int(meka.group(1))
        if not 1 <= abs(count) < len(columns.names):
            raise DataError(f"{columns.path}: @relation {columns.relation!r} says -C {count}; expected 1 to "
                            f"{len(columns.names) - 1} labels, or as many negative (the last ones)")
        return list(range(count)) if count > 0 else list(range(len(columns.names) + count, len(columns.names)))
    if xml is None:
        raise DataError(f"{columns.path}: which columns are the labels? Give their names (--label-columns), or "
                        "their number L when they are the last L columns (--label-count L)"
                        + ("; or put the MULAN labels XML beside the ARFF file (NAME.xml)" if columns.raw is None else ""))
    names = read_labels_xml(xml)
    missing = [name for name in names if name not in columns.positions]
    if missing:
        by_position = _labels_by_position(columns, names, id_at)
        if by_position is None:
            raise DataError(f"{xml} names label(s) {_preview(missing)} that {columns.path} lacks; "
                            f"its attributes end with {_preview(columns.names[-len(names):])}; if the labels are the "
                            f"last {len(names)} attributes, give --label-count {len(names)}")
        differ = [f"{columns.names[j]!r} (XML {name!r})" for j, name in zip(by_position, names) if columns.names[j] != name]
        notes.append(f"{xml.name} spells {len(differ)} label name(s) differently from the ARFF only in escaping or "
                     f"encoding: {_preview(differ, 3)}; its {len(names)} labels are the last {len(names)} attributes, "
                     "read by position with the ARFF's names")
        return by_position
    return [columns.positions[name] for name in names]


def _labels_by_position(columns: _Columns, names: list[str], id_at: int | None) -> list[int] | None:
    """The last len(names) attributes when they are the XML's labels in order, some spelled differently only in
    escaping or encoding (every name that does match sits at its place); else None."""
    start = len(columns.names) - len(names)
    if start < 1 or (id_at is not None and id_at >= start):
        return None
    tail = columns.names[start:]
    if any(columns.positions.get(name, start + k) != start + k for k, name in enumerate(names)):
        return None
    if not all(a == b or _same_but_escaping(a, b) for a, b in zip(tail, names)):
        return None
    return list(range(start, len(columns.names)))


def _same_but_escaping(a: str, b: str) -> bool:
    """Whether two names differ only where an escape or an encoding garbled a few characters ("dise~no" and
    "dise?o", "caf\u00e9" and "cafe"): after unescaping, a short differing middle with a non-ASCII letter or a
    sign in one of them."""
    a, b = (unicodedata.normalize("NFC", html.unescape(x).replace("\\", "")) for x in (a, b))
    if a == b:
        return True
    prefix = len(os.path.commonprefix([a, b]))
    suffix = len(os.path.commonprefix([a[prefix:][::-1], b[prefix:][::-1]]))
    middles = (a[prefix:len(a) - suffix], b[prefix:len(b) - suffix])
    garbled = any(not (c.isascii() and c.isalnum()) for m in middles for c in m)
    return prefix + suffix > 0 and all(len(m) <= 3 for m in middles) and garbled


def _feature_columns(columns: _Columns, id_at: int | None, label_at: list[int],
                     feature_names: Sequence[str] | None) -> list[int]:
    if feature_names is not None:
        missing = [name for name in feature_names if name not in columns.positions]
        if missing:
            raise DataError(f"{columns.path} lacks {len(missing)} of the model's feature columns: {_preview(missing)}")
        return [columns.positions[name] for name in feature_names]
    taken = {id_at, *label_at}
    chosen = [j for j in range(len(columns.names)) if j not in taken]
    if not chosen:
        raise DataError(f"{columns.path}: no feature columns left besides the labels and the id")
    return chosen


def _identifiers(columns: _Columns) -> list[int]:
    """ARFF attributes that name rows rather than describe them: STRING ones, and nominal ones with a different
    value on every row (more than two rows)."""
    if columns.kinds is None:
        return []
    found, rows = [], len(columns.locations)
    for j, kind in enumerate(columns.kinds):
        if isinstance(kind, list) and len(kind) >= rows > 2:  # fewer declared values than rows cannot all differ
            values = columns.raw_values(j)
            if len(values) > 2 and None not in values and len(set(values)) == len(values):
                found.append(j)
        elif str(kind).upper() == "STRING":
            found.append(j)
    return found


def _encoded_features(columns: _Columns, feature_at: list[int]) -> tuple[np.ndarray, list[str], dict]:
    """The feature matrix with nominal ARFF attributes encoded (binary: one 0/1 column; others: one per category)."""
    encoding: dict = {"binary": {}, "onehot": {}}
    names = []
    for j in feature_at:
        name, kind = columns.names[j], columns.kinds[j] if columns.kinds else None
        if not isinstance(kind, list):
            names.append(name)
            continue
        positive = _BINARY.get(frozenset(v.lower() for v in kind)) if len(kind) == 2 else None
        if positive is not None:
            encoding["binary"][name] = next(v for v in kind if v.lower() == positive)
            names.append(name)
        else:
            encoding["onehot"][name] = list(kind)
            names += [f"{name}={value}" for value in kind]
    if not encoding["onehot"] and all(_numeric_binary(columns.kinds[j]) for j in feature_at
                                      if columns.names[j] in encoding["binary"]):
        return _features(columns, feature_at), names, encoding  # {0,1} attributes: their numbers are the encoding
    raw = {columns.names[j]: columns.raw_values(j) for j in feature_at}
    return encode_features(raw, names, encoding, where=str(columns.path)), names, encoding


def _items(columns: _Columns, id_at: int | None) -> list[str]:
    if id_at is None:
        return [str(i + 1) for i in range(len(columns.locations))]
    items = columns.strings(id_at)
    empty = [where for where, item in zip(columns.locations, items) if not item]
    if empty:
        raise DataError(f"{empty[0]}: the item id ({columns.names[id_at]!r}) is empty")
    return items


def _features(columns: _Columns, feature_at: list[int]) -> np.ndarray | sp.csr_matrix:
    return columns.block(feature_at, "feature column").astype(np.float32)


def _dense(values: np.ndarray | sp.spmatrix) -> np.ndarray:
    return values.toarray() if sp.issparse(values) else values


def _preview(names: Sequence[str], n: int = 6) -> str:
    shown = ", ".join(map(str, names[:n]))
    return shown + (f", ... ({len(names)} in all)" if len(names) > n else "")
