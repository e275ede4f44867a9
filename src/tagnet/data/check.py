"""Dataset check: read the labels, look at every image (or feature column), and report what is wrong and where."""

from __future__ import annotations

import dataclasses
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from scipy import sparse
from tagnet.data.decode import decode_image, images_folder, resolve_image_path
from tagnet.data.labels import read_labels_explained
from tagnet.data.label_table import LabelTable
from tagnet.data.feature_table import is_feature_table, read_feature_table, table_read_options
from tagnet.errors import ConfigError, DataError
from tagnet.hierarchy.check import hierarchy_findings

TOP_PAIRS = 10
PAIR_BLOCK = 1 << 24  # label pairs counted at once by _top_pairs
SAMPLES = 3  # items shown as read (id -> labels)


def feature_table_reading(path: str | Path, items: list[str], label_names: list[str],
                          read_options: dict[str, Any]) -> str | None:
    """The other reading of a label file read as a list of inputs: when every input it names is a number (a feature
    table's first column taken for file names) and the file also reads as a feature table with those label columns,
    a clause that names that reading and the option that picks it (--tabular); else None."""
    if not items:
        return None
    try:
        np.asarray(items, dtype=str).astype(np.float64)
        options = table_read_options({**read_options, "label_columns": read_options.get("label_columns") or label_names})
        found = read_feature_table(path, **options)
    except (ValueError, DataError, ConfigError):
        return None
    return (f"every input it names is a number ({', '.join(items[:3])}{', ...' if len(items) > 3 else ''}), not a "
            f"file, and it reads as a feature table of {len(found.feature_names)} numeric columns and "
            f"{found.labels.num_labels} labels: add --tabular")


@dataclass(frozen=True)
class Problem:
    """One finding: severity "error" (the data set is unusable) or "warning", where, and what."""

    severity: str
    kind: str
    where: str
    message: str


@dataclass(frozen=True)
class Step:
    """One stage of the check: its name, status ("ok", "warning", "failed", "skipped") and a detail line."""

    name: str
    status: str
    detail: str


@dataclass
class DatasetReport:
    """What check_dataset found; `usable` is False when any problem is an error."""

    source: str
    format: str | None = None
    items: int = 0
    labels: list[str] = field(default_factory=list)
    label_counts: dict[str, int] = field(default_factory=dict)
    unknown_counts: dict[str, int] = field(default_factory=dict)
    labels_per_item: dict[str, Any] = field(default_factory=dict)
    top_pairs: list[tuple[str, str, int]] = field(default_factory=list)
    images_dir: str | None = None
    images_checked: int = 0
    image_sizes: dict[str, int] = field(default_factory=dict)
    features: int = 0
    missing_values: int = 0
    steps: list[Step] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # what the reader decided for the user (a column skipped, ...)
    reading: dict[str, Any] | None = None  # the reading chosen: format, score, reason, the option that picks it
    runner_up: dict[str, Any] | None = None  # the next best reading (None: no other format fits at all)
    samples: list[dict[str, Any]] = field(default_factory=list)  # the first items as read: {"item", "labels"}

    @property
    def usable(self) -> bool:
        return not any(p.severity == "error" for p in self.problems)

    def errors(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "error"]

    def warnings(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "warning"]

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict, `usable` included."""
        return {**dataclasses.asdict(self), "top_pairs": [list(p) for p in self.top_pairs],
                "usable": self.usable}


def check_dataset(
    table_or_path: LabelTable | str | Path,
    *,
    images_dir: str | Path | None = None,
    min_examples: int = 5,
    tabular: bool = False,
    hierarchy: str | Path | None = None,
    hierarchy_separator: str | None = None,
    **read_kwargs: Any,
) -> DatasetReport:
    """Check a label file (or table) and its images, step by step, like fastai's DataBlock.summary().

    Args:
        table_or_path: a LabelTable, or a label file/folder read with read_labels(**read_kwargs).
        images_dir: folder the item ids are relative to; each image is opened and decoded.
            Default: the folder a folders/VOC source names; otherwise images are not checked.
        min_examples: labels with fewer known positives get a warning.
        tabular: the path is a feature table (CSV) read with read_feature_table(**read_kwargs); ARFF
            files and label_count / labels_xml options imply it. Its feature columns are checked
            instead of images.
        hierarchy, hierarchy_separator: a label hierarchy (as `tagnet train --hierarchy` takes it) to check the labels
            against: labels missing from it, items whose labels skip a level, cycles (tagnet.hierarchy.check).

    Returns:
        A DatasetReport; a label file that cannot be read is reported as an error, not raised.
    """
    features = None  # (values, names) of a feature table
    if isinstance(table_or_path, LabelTable):
        if read_kwargs:
            raise TypeError(f"read options {sorted(read_kwargs)} apply to a path, not to a LabelTable")
        table, locations = table_or_path, [f"row {i + 1}" for i in range(len(table_or_path))]
        report = DatasetReport(source="<table>")
    else:
        report = DatasetReport(source=str(table_or_path))
        table_options = table_read_options(read_kwargs) if tabular or is_feature_table(table_or_path, read_kwargs) else None
        try:
            if table_options is None:
                table, locations, how = read_labels_explained(table_or_path, **read_kwargs)
                report.reading, report.runner_up = how["reading"], how["runner_up"]
            else:
                found = read_feature_table(table_or_path, **table_options)
                table, features = found.labels, (found.features, found.feature_names)
                locations = [f"data row {i + 1}" for i in range(len(table))]
                report.reading = {"format": table.source_format, "score": 1.0, "pick": "--tabular",
                                  "reason": f"a feature table: {len(found.feature_names)} features, labels "
                                            f"{', '.join(table.label_names[:5])}{', ...' if table.num_labels > 5 else ''}"}
        except DataError as e:
            report.problems.append(Problem("error", "read", str(table_or_path), str(e)))
            report.steps += [Step("read labels", "failed", str(e)),
                             Step("labels", "skipped", "the label file could not be read"),
                             Step("images", "skipped", "the label file could not be read")]
            return report
    report.format = table.source_format
    report.notes = list(table.meta.get("notes", []))
    report.samples = [{"item": item, "labels": labels}
                      for item, labels in zip(table.items[:SAMPLES], table.subset(range(min(SAMPLES, len(table)))).label_sets())]
    report.steps.append(Step("read labels", "ok", f"{table.source_format} format: {len(table)} items, "
                                                  f"{table.num_labels} labels"))
    _check_labels(report, table, locations, min_examples)
    if hierarchy is not None or hierarchy_separator is not None:
        found, summary = hierarchy_findings(table, locations, path=hierarchy, separator=hierarchy_separator)
        report.problems += [Problem(*finding) for finding in found]
        status = "failed" if any(f[0] == "error" for f in found) else "warning" if found else "ok"
        report.steps.append(Step("hierarchy", status, summary))
    if features is not None:
        _check_features(report, *features)
        return report
    folder = images_folder(table.meta, images_dir)
    from_file = not isinstance(table_or_path, LabelTable)  # with a folder, its files are checked instead
    other = feature_table_reading(table_or_path, list(table.items), table.label_names, read_kwargs) \
        if folder is None and from_file else None
    if other:
        report.problems.append(Problem("warning", "feature table", report.source, other))
    if folder is None:
        report.steps.append(Step("images", "skipped", "no images folder given (--images DIR)"))
    else:
        _check_images(report, table, locations, Path(folder).expanduser())
    return report


def _check_labels(report: DatasetReport, table: LabelTable, locations: list[str], min_examples: int) -> None:
    positives = np.logical_and(table.targets, table.known)  # one (items, labels) bool array, no temporaries
    counts = positives.sum(axis=0)
    report.items = len(table)
    report.labels = list(table.label_names)
    report.label_counts = {n: int(c) for n, c in zip(table.label_names, counts)}
    report.unknown_counts = {n: int(c) for n, c in zip(table.label_names, len(table) - table.known.sum(axis=0))}
    per_item = positives.sum(axis=1)
    report.labels_per_item = {
        "mean": round(float(per_item.mean()), 4) if len(table) else 0.0,
        "histogram": {"0": int((per_item == 0).sum()), "1": int((per_item == 1).sum()),
                      "2": int((per_item == 2).sum()), "3+": int((per_item >= 3).sum())}}
    report.top_pairs = _top_pairs(positives, table.label_names, per_item)

    found: list[Problem] = []
    if not len(table):
        found.append(Problem("error", "no items", report.source, "the label file has no items"))
    if not table.num_labels:
        found.append(Problem("error", "no labels", report.source, "no item carries any label"))
    rows: dict[str, list[int]] = defaultdict(list)
    for i, item in enumerate(table.items):
        rows[item].append(i)
    for item, idx in rows.items():
        if len(idx) > 1:
            differ = any((table.targets[i] != table.targets[idx[0]]).any() for i in idx[1:])
            found.append(Problem("warning", "duplicate id", _join_locations([locations[i] for i in idx]),
                                 f"item {item!r} appears {len(idx)} times"
                                 + (" with different labels" if differ else "")
                                 + "; a split may put its copies in different parts (one row per annotation? "
                                   "--format long groups rows by id)"))
    for i in np.flatnonzero(per_item == 0):
        if table.known[i].all():
            found.append(Problem("warning", "empty label set", locations[i], f"item {table.items[i]!r} has no labels"))
    for name, count in zip(table.label_names, counts):
        if count < min_examples:
            found.append(Problem("warning", "rare label", name,
                                 f"label {name!r} has {count} example{'' if count == 1 else 's'} "
                                 f"(fewer than {min_examples})"))
        elif len(table) and count == len(table):
            found.append(Problem("warning", "constant label", name, f"label {name!r} is on every item"))
    found += _tag_problems(table)
    report.problems += found
    status = "failed" if any(p.severity == "error" for p in found) else "warning" if found else "ok"
    summary = Counter(p.kind for p in found)
    report.steps.append(Step("labels", status, ", ".join(f"{k}: {n}" for k, n in summary.items())
                             or f"{len(table)} items with {report.labels_per_item['mean']:.2f} labels on average"))


def _top_pairs(positives: np.ndarray, names: list[str], per_item: np.ndarray) -> list[tuple[str, str, int]]:
    """The TOP_PAIRS label pairs found together most often (ties in label order), by sparse products.

    Labels are taken in blocks so that no product holds more than PAIR_BLOCK entries: memory stays bounded
    with 100,000 labels, where the dense label x label matrix would need tens of GB.
    """
    matrix = sparse.csc_matrix(positives, dtype=np.int32)
    n_labels = matrix.shape[1]
    work = int((per_item.astype(np.int64) ** 2).sum())  # at most this many pairs (with repeats) overall
    step = max(1, -(-n_labels // max(1, -(-work // PAIR_BLOCK))))
    found = []
    for start in range(0, n_labels, step):
        co = (matrix[:, start:start + step].T @ matrix).tocoo()
        a, b, count = co.row.astype(np.int64) + start, co.col.astype(np.int64), co.data
        upper = (b > a) & (count > 0)
        a, b, count = a[upper], b[upper], count[upper]
        best = np.lexsort((b, a, -count))[:TOP_PAIRS]
        found.append((a[best], b[best], count[best]))
    if not found:
        return []
    a, b, count = (np.concatenate(parts) for parts in zip(*found))
    return [(names[a[k]], names[b[k]], int(count[k])) for k in np.lexsort((b, a, -count))[:TOP_PAIRS]]


def _tag_problems(table: LabelTable) -> list[Problem]:
    """Tags a reader took as written though they look like a mistake: repeated in one cell, or integer ids."""
    found = [Problem("warning", "repeated tag", where, f"label(s) {tags} appear more than once in one row; "
                     "read once (check the export for a copy-paste slip)")
             for where, tags in table.meta.get("repeated_tags", [])]
    if (table.source_format in ("tags", "json", "jsonl") and table.label_names and not table.meta.get("labels_are_indices")
            and all(name.lstrip("-").isdigit() for name in table.label_names)):
        shown = ", ".join(table.label_names[:8]) + (", ..." if table.num_labels > 8 else "")
        found.append(Problem("warning", "integer labels", "labels", f"every label is an integer ({shown}): class ids, "
                             "not names? Give --label-names FILE (one name per line, line i names id i)"))
    return found


def _check_features(report: DatasetReport, features: np.ndarray, names: list[str]) -> None:
    """Feature columns: missing values (training replaces them by the mean), and columns that carry no information."""
    missing = np.isnan(features)
    report.features, report.missing_values = len(names), int(missing.sum())
    found: list[Problem] = []
    for j, name in enumerate(names):
        values = features[~missing[:, j], j]
        if not len(values):
            found.append(Problem("warning", "empty feature", name, f"feature {name!r} has no value on any row"))
        elif values.min() == values.max():
            found.append(Problem("warning", "constant feature", name,
                                 f"feature {name!r} is {values[0]:g} on every row with a value; it carries no information"))
    rows = np.flatnonzero(missing.any(axis=1))
    if len(rows):
        found.append(Problem("warning", "missing values", f"data row {rows[0] + 1}",
                             f"{report.missing_values} missing value(s) on {len(rows)} row(s), first on data row "
                             f"{rows[0] + 1}; training replaces each by its feature's mean"))
    report.problems += found
    summary = Counter(p.kind for p in found)
    report.steps.append(Step("features", "warning" if found else "ok",
                             f"{len(names)} numeric features; " + (", ".join(f"{k}: {n}" for k, n in summary.items())
                                                                  or "no missing values, none constant")))


def _join_locations(locations: list[str]) -> str:
    """"a.csv line 3, a.csv line 9" -> "a.csv lines 3, 9"; other lists joined by commas."""
    heads = {loc.rpartition(" line ")[0] for loc in locations}
    if len(heads) == 1 and all(" line " in loc for loc in locations):
        return f"{heads.pop()} lines " + ", ".join(loc.rpartition(" line ")[2] for loc in locations)
    return ", ".join(locations)


def _open_image(path: Path) -> tuple[str | None, str]:
    """(None, "WxH") when the file decodes, else (reason, "")."""
    if not path.is_file():
        return "missing", ""
    try:
        image = decode_image(path)  # the decode training and prediction use (EXIF rotation, 16-bit, HEIC)
    except DataError as e:
        return str(e).removeprefix(f"{path}: "), ""
    except Exception as e:  # PIL raises many types (OSError, SyntaxError, ValueError, ...) for bad files
        return f"{type(e).__name__}: {e}", ""
    return None, f"{image.width}x{image.height}"


def _check_images(report: DatasetReport, table: LabelTable, locations: list[str], folder: Path) -> None:
    report.images_dir = str(folder)
    if not folder.is_dir():
        problem = Problem("error", "images folder", str(folder), "the images folder does not exist")
        report.problems.append(problem)
        report.steps.append(Step("images", "failed", f"{folder} does not exist"))
        return
    where: dict[Path, str] = {}
    listings: dict = {}
    for item, location in zip(table.items, locations):
        try:
            path = resolve_image_path(item, folder, listings)  # an id without a suffix: the one image with that stem
        except DataError as e:
            report.problems.append(Problem("error", "ambiguous image", location, str(e)))
            continue
        where.setdefault(path, location)
    paths = list(where)
    with ThreadPoolExecutor() as pool:
        results = list(pool.map(_open_image, paths))
    sizes: Counter[str] = Counter()
    missing = unreadable = 0
    for path, (reason, size) in zip(paths, results):
        if reason == "missing":
            missing += 1
            report.problems.append(Problem("error", "missing image", where[path], f"image file {path} does not exist"))
        elif reason is not None:
            unreadable += 1
            report.problems.append(Problem("error", "unreadable image", where[path],
                                           f"image file {path} cannot be decoded ({reason})"))
        else:
            sizes[size] += 1
    report.images_checked = len(paths)
    report.image_sizes = dict(sizes.most_common(5))
    if missing or unreadable:
        detail = f"{missing} missing, {unreadable} unreadable of {len(paths)} in {folder}"
        if missing == len(paths):
            detail += "; is the images folder right?"
        report.steps.append(Step("images", "failed", detail))
    else:
        report.steps.append(Step("images", "ok", f"{len(paths)} images decoded; {size_summary(sizes)}"))


def size_summary(sizes: Counter[str], *, shown: int = 3) -> str:
    """The most common image sizes with their counts, and how many other sizes (and images) are not shown."""
    common = sizes.most_common(shown)
    text = "sizes " + ", ".join(f"{size} ({count})" for size, count in common)
    others = len(sizes) - len(common)
    if others:
        text += (f" and {others} other size{'s' if others > 1 else ''} "
                 f"({sum(sizes.values()) - sum(count for _, count in common)} images)")
    return text
