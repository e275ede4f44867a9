"""Which reading of a label file to take: every format scores the file; the best reading is taken only when no
other reading that fits says something different."""

from __future__ import annotations

from types import ModuleType

import numpy as np

from tagnet.data.formats import FORMATS, REGISTRY
from tagnet.data.formats.source import FIT, Fit, Source
from tagnet.data.label_table import LabelTable
from tagnet.errors import DataError

LEAST = 0.25  # a best reading scoring below this is no reading: the file is refused with what was found


def detect(src: Source) -> tuple[list[Fit], list[DataError]]:
    """Every format's fit for `src`, best first (ties in registry order), and the errors detection met."""
    fits, errors = [], []
    for mod in REGISTRY.values():
        try:
            fit = mod.detect(src)
        except DataError as e:
            errors.append(e)
            continue
        if fit is not None:
            fits.append(fit)
    return sorted(fits, key=lambda f: -f.score), errors


def read(src: Source) -> tuple[LabelTable, list[str], dict]:
    """The table of `src` in its given format, else in the best reading that fits, where each row came from, and
    {"reading": the reading chosen, "runner_up": the next best or None} (Fit.to_dict()); the read's notes are in
    table.meta["notes"].

    Raises:
        DataError: the file is missing, no reading fits, or two readings fit and disagree (naming both and the
            option that picks each).
    """
    if not src.path.exists():
        raise DataError(f"label file {src.path} does not exist")
    if src.format is not None:
        if src.format not in REGISTRY:
            raise DataError(f"unknown label format {src.format!r}: expected one of {', '.join(FORMATS)}")
        chosen, runner_up = Fit(src.format, 1.0, "given with --format"), None
        table, locations = _read_as(src, chosen)
    else:
        fits, errors = detect(src)
        if not fits or fits[0].score < LEAST:
            raise _refusal(src, fits, errors)
        chosen, runner_up = fits[0], (fits[1] if len(fits) > 1 else None)
        table, locations = _read_as(src, chosen)
        _check_rivals(src, table, chosen, fits[1:])
    notes = [*src.notes, *table.meta.get("notes", [])]
    if notes:
        table.meta["notes"] = notes
    return table, locations, {"reading": chosen.to_dict(), "runner_up": runner_up.to_dict() if runner_up else None}


def _read_as(src: Source, fit: Fit) -> tuple[LabelTable, list[str]]:
    mod: ModuleType = REGISTRY[fit.format]
    folder = src.path.is_dir()
    if (mod.INFO.layout == "folder" and not folder) or (mod.INFO.layout == "file" and folder):
        raise DataError(f"{src.path} is {'a folder' if folder else 'a file'}, which cannot be read as format "
                        f"{fit.format!r}")
    if src.label_columns is not None and fit.format != "onehot":
        raise DataError(f"label_columns applies to one-hot CSV files, not to format {fit.format!r}")
    if src.names_file is not None and mod.INFO.own_names:
        raise DataError(f"label_names_file does not apply to format {fit.format!r}, which names its own labels")
    return mod.read(src)


def _check_rivals(src: Source, table: LabelTable, chosen: Fit, others: list[Fit]) -> None:
    """Refuse when another generic reading that fits says something else; note one that says the same."""
    if REGISTRY[chosen.format].INFO.specific:
        return  # a tool's documented layout: generic readings of its columns are not rival readings
    for rival in others:
        if rival.score < FIT or REGISTRY[rival.format].INFO.specific:
            continue
        fresh = src.copy(**rival.options)
        try:
            other = REGISTRY[rival.format].read(fresh)[0]
        except DataError:
            continue  # the rival does not read after all
        difference = disagreement(table, other)
        if difference is not None:
            raise DataError(f"{src.path}: two readings fit and disagree: {chosen.format} ({chosen.reason}; pick it with "
                            f"{chosen.pick or '--format ' + chosen.format}) and {rival.format} ({rival.reason}; pick "
                            f"it with {rival.pick or '--format ' + rival.format}); {difference}")
        src.notes.append(f"the {rival.format} reading ({rival.reason}) says the same as the {chosen.format} reading on "
                         f"every row: read as {chosen.format}")


def disagreement(a: LabelTable, b: LabelTable) -> str | None:
    """None when two readings of one file say the same (same items and labels, or b a class id naming one of a's
    labels on every row, counted from 0 or 1 over a's columns in file order); else where they first differ."""
    if a.items != b.items:
        return f"{len(a)} items vs {len(b)}" + ("" if len(a) != len(b) else
                                                f" (first differing: {next(x for x, y in zip(a.items, b.items) if x != y)!r})")
    if sorted(a.label_names) == sorted(b.label_names):
        aligned = b.aligned_to(a.label_names)
        rows = np.flatnonzero((aligned.targets != a.targets).any(axis=1))
        return None if not len(rows) else _differ(a, b, int(rows[0]))
    if b.label_names and all(n.isdigit() for n in b.label_names) and (b.targets.sum(axis=1) <= 1).all():
        return _class_id_disagreement(a, b)
    return _differ(a, b, 0)


def _class_id_disagreement(a: LabelTable, b: LabelTable) -> str | None:
    """Whether b's class ids (one per row, from 0 or from 1) name a column that is 1 in a's row, on every row."""
    columns = a.meta.get("columns", a.label_names)
    order = np.array([a.label_names.index(c) for c in columns])
    has = b.targets.any(axis=1)
    ids = np.where(has, np.array([int(n) for n in b.label_names])[b.targets.argmax(axis=1)], -1)
    first_bad = 0
    for offset in (0, 1):
        at = ids - offset
        if ((at >= len(columns)) | ((at < 0) & has)).any():
            continue
        named = a.targets[np.arange(len(a)), order[np.clip(at, 0, len(columns) - 1)]] == 1
        agree = np.where(has, named, ~a.targets.any(axis=1))
        if agree.all():
            return None
        first_bad = int(np.flatnonzero(~agree)[0])
    return _differ(a, b, first_bad)


def _differ(a: LabelTable, b: LabelTable, row: int) -> str:
    return (f"item {a.items[row]!r} has {a.label_sets()[row]} in the first reading and "
            f"{b.label_sets()[row]} in the second")


def _refusal(src: Source, fits: list[Fit], errors: list[DataError]) -> DataError:
    """The error for a file no reading fits: the detection error met first, else what was found."""
    if not fits and errors:
        return errors[0]
    if fits:
        return DataError(f"{src.path}: {fits[0].reason}; no label format reads it well (the closest: {fits[0].format}; "
                         f"pick one with --format: {', '.join(FORMATS)})")
    if src.path.is_dir():
        return DataError(f"folder {src.path} holds neither Pascal VOC .xml files nor one sub-folder per label (nor a "
                         "YOLO export, Darwin JSON files or a Hugging Face dataset)")
    return DataError(f"{src.path}: no label format fits this file; expected one of {', '.join(FORMATS)} "
                     "(see tagnet data check --help)")
