"""Folder per label: a root folder with one sub-folder per label holding that label's images (or texts)."""

from __future__ import annotations

from tagnet.data.formats.source import Fit, FormatInfo, Source
from tagnet.data.label_table import LabelTable
from tagnet.errors import DataError

NAME = "folders"
INFO = FormatInfo(NAME, "a folder with one sub-folder per label (an item in several sub-folders has several labels)",
                  layout="folder", own_names=True)
ANNOTATION_SUFFIXES = (".txt", ".xml", ".json")


def _files(src: Source) -> dict[str, list]:
    subs = sorted(p for p in src.path.iterdir() if p.is_dir() and not p.name.startswith("."))
    return {sub.name: [f for f in sorted(sub.rglob("*")) if f.is_file()
                       and not any(part.startswith(".") for part in f.relative_to(sub).parts)] for sub in subs}


def detect(src: Source) -> Fit | None:
    """Sub-folders of input files; weak when there is one sub-folder, or when label files (.txt, .xml, .json) sit
    beside images with the same names (an object detection export, not one folder per label)."""
    if not src.path.is_dir():
        return None
    found = _files(src)
    if not found:
        return None
    files = [f for fs in found.values() for f in fs]
    stems = {f.with_suffix("") for f in files if f.suffix.lower() not in ANNOTATION_SUFFIXES}
    paired = [f for f in files if f.suffix.lower() in ANNOTATION_SUFFIXES and f.with_suffix("") in stems]
    if {"images", "labels"} <= set(found):
        return Fit(NAME, 0.2, "sub-folders images/ and labels/ (an object detection layout, not one folder per label)",
                   pick="--format folders")
    if paired:
        return Fit(NAME, 0.2, f"{len(found)} sub-folder(s), but {len(paired)} annotation file(s) such as "
                   f"{paired[0].name} sit beside images of the same name", pick="--format folders")
    score = 0.7 if len(found) > 1 else 0.4
    return Fit(NAME, score, f"{len(found)} sub-folder(s) ({', '.join(list(found)[:4])}) of {len(files)} files")


def read(src: Source) -> tuple[LabelTable, list[str]]:
    """Each file under a sub-folder is an item with that sub-folder's label (the same relative path in several
    sub-folders: several labels)."""
    labels = sorted(p.name for p in src.path.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not labels:
        raise DataError(f"{src.path} has no sub-folders: expected one folder per label")
    first: dict[str, str] = {}
    sets: dict[str, list[str]] = {}
    for label, files in _files(src).items():
        for file in files:
            key = file.relative_to(src.path / label).as_posix()
            first.setdefault(key, f"{label}/{key}")
            sets.setdefault(key, []).append(label)
    keys = sorted(first)
    items = [first[k] for k in keys]
    table = LabelTable.from_label_sets(items, [sets[k] for k in keys], label_names=labels,
                                       source_format=NAME, meta={"images_dir": str(src.path)})
    return table, [str(src.path / item) for item in items]
