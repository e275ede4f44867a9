"""V7 Darwin JSON 2.0: a folder of per-item JSON files {"version": "2.0", "item": {...}, "annotations": [...]}."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tagnet.data.formats.source import Fit, FormatInfo, Records, Source
from tagnet.data.label_table import LabelTable
from tagnet.errors import DataError

NAME = "darwin"
INFO = FormatInfo(NAME, "V7 Darwin JSON 2.0: a folder of per-image .json files (or one), labels = annotation names",
                  layout="either", own_names=True, specific=True)


def _is_darwin(data: Any) -> bool:
    return isinstance(data, dict) and str(data.get("version", "")).startswith("2") and isinstance(
        data.get("item"), dict) and isinstance(data.get("annotations"), list)


def _files(src: Source) -> list[Path]:
    return sorted(src.path.rglob("*.json")) if src.path.is_dir() else [src.path]


def _load(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8-sig"))
    except (ValueError, RecursionError, UnicodeDecodeError) as e:
        raise DataError(f"{path}: not readable JSON ({e})") from None


def detect(src: Source) -> Fit | None:
    """A .json file, or a folder of them, with version 2.0, an item and annotations."""
    if src.path.is_dir():
        first = next(iter(sorted(src.path.rglob("*.json"))), None)
        if first is not None and _is_darwin(_load(first)):
            return Fit(NAME, 0.95, f"a folder of Darwin JSON 2.0 files (version, item, annotations), e.g. {first.name}")
        return None
    if src.path.is_file() and src.path.suffix.lower() == ".json" and _is_darwin(src.json()):
        return Fit(NAME, 0.95, "a Darwin JSON 2.0 file (version, item, annotations)")
    return None


def read(src: Source) -> tuple[LabelTable, list[str]]:
    """Each file: its item (path + name) with the names of its annotations (tags, boxes, polygons, ...)."""
    items, sets, locations = [], [], []
    for file in _files(src):
        data = _load(file) if src.path.is_dir() else src.json()
        if not _is_darwin(data):
            raise DataError(f"{file}: not a Darwin JSON 2.0 file (expected \"version\": \"2.0\", \"item\", \"annotations\")")
        name = data["item"].get("name")
        if not isinstance(name, str) or not name.strip():
            raise DataError(f"{file}: item.name must name the file, got {name!r}")
        folder = str(data["item"].get("path") or "/").strip("/")
        items.append(f"{folder}/{name.strip()}" if folder else name.strip())
        names = [a.get("name") for a in data["annotations"] if isinstance(a, dict)]
        if not all(isinstance(n, str) and n.strip() for n in names):
            raise DataError(f"{file}: every annotation needs a \"name\" (its class)")
        sets.append(sorted({n.strip() for n in names}))
        locations.append(str(file))
    return src.table(Records(items, sets, locations), NAME)
