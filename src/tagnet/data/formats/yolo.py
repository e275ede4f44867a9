"""YOLO / Darknet detection export: class names (obj.names, classes.txt or data.yaml) and one .txt per image."""

from __future__ import annotations

from pathlib import Path

import yaml

from tagnet.data.formats.source import Fit, FormatInfo, Source
from tagnet.data.label_table import LabelTable
from tagnet.errors import DataError

NAME = "yolo"
INFO = FormatInfo(NAME, "YOLO/Darknet export: obj.names, classes.txt or data.yaml names + one 'class cx cy w h' .txt per image "
           "(images beside, or in images/ beside labels/)",
                  layout="folder", own_names=True, specific=True)
NAMES_FILES = ("obj.names", "classes.txt", "classes.names", "coco.names")
YAML_FILES = ("data.yaml", "dataset.yaml", "data.yml")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".gif")


def _names_file(folder: Path) -> Path | None:
    found = [folder / n for n in (*NAMES_FILES, *YAML_FILES) if (folder / n).is_file()]
    found += sorted(folder.glob("*.names"))
    return found[0] if found else None


def _label_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*.txt") if p.name not in NAMES_FILES and not p.name.startswith(".")
                  and not (p.parent == folder and p.stem in ("train", "valid", "val", "test")))


def detect(src: Source) -> Fit | None:
    """A folder with a class-names file and .txt files whose lines are 'class cx cy w h'."""
    if not src.path.is_dir():
        return None
    names = _names_file(src.path)
    files = _label_files(src.path) if names is not None else []
    if not files:
        return None
    firsts = [next((line for line in f.read_text(errors="replace").splitlines() if line.strip()), None)
              for f in files[:50]]
    boxes = sum(_is_box_line(line) for line in firsts if line is not None)
    if boxes * 2 <= sum(line is not None for line in firsts):  # most non-empty .txt files must hold boxes
        return None
    return Fit(NAME, 0.95, f"{names.name} names the classes; {len(files)} .txt files of 'class cx cy w h' lines")


def _is_box_line(line: str) -> bool:
    parts = line.split()
    if len(parts) < 5 or not parts[0].isdigit():
        return False
    try:
        [float(p) for p in parts[1:]]
    except ValueError:
        return False
    return True


def class_names(path: Path) -> list[str]:
    """The class names of a Darknet .names / classes.txt file (one per line) or a YOLO data.yaml (names: list or map)."""
    if path.suffix.lower() in (".yaml", ".yml"):
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8"))
        except yaml.YAMLError as e:
            raise DataError(f"{path}: not readable YAML ({str(e).splitlines()[0]})") from None
        names = data.get("names") if isinstance(data, dict) else None
        if isinstance(names, dict) and all(isinstance(k, int) for k in names):
            names = [names[k] for k in sorted(names)]
        if not isinstance(names, list) or not names:
            raise DataError(f"{path}: expected 'names:' with the class names (a list, or a map from class id)")
        return [str(n).strip() for n in names]
    names = [line.strip() for line in path.read_text(encoding="utf-8-sig").splitlines()]
    while names and not names[-1]:
        names.pop()
    if not names or not all(names):
        raise DataError(f"{path}: expected one class name per line, without blank lines")
    return names


def _image_of(label_file: Path, root: Path) -> Path | None:
    """The image a label file describes: same stem beside it, or under the images/ folder parallel to labels/."""
    parts = label_file.relative_to(root).parts
    dirs = [label_file.parent]
    if "labels" in parts[:-1]:
        at = len(parts) - 1 - parts[:-1][::-1].index("labels") - 1
        dirs.append(root.joinpath(*parts[:at], "images", *parts[at + 1:-1]))
    for folder in dirs:
        for suffix in IMAGE_SUFFIXES:
            for candidate in (folder / (label_file.stem + suffix), folder / (label_file.stem + suffix.upper())):
                if candidate.is_file():
                    return candidate
    return None


def read(src: Source) -> tuple[LabelTable, list[str]]:
    """Each image: the classes of its boxes (an image whose .txt is empty has no labels)."""
    names_path = _names_file(src.path)
    if names_path is None:
        raise DataError(f"{src.path}: no class names file ({', '.join(NAMES_FILES + YAML_FILES)})")
    names = class_names(names_path)
    items, sets, locations, lost = [], [], [], []
    for file in _label_files(src.path):
        image = _image_of(file, src.path)
        if image is None:
            lost.append(file)
            continue
        labels = set()
        for n, line in enumerate(file.read_text(encoding="utf-8-sig").splitlines(), start=1):
            if not line.strip():
                continue
            where = f"{file} line {n}"
            if not _is_box_line(line) or int(line.split()[0]) >= len(names):
                raise DataError(f"{where}: {line.strip()[:60]!r} is not 'class cx cy w h' with a class id in "
                                f"0..{len(names) - 1} ({names_path.name})")
            labels.add(names[int(line.split()[0])])
        items.append(image.relative_to(src.path).as_posix())
        sets.append(sorted(labels))
        locations.append(str(file))
    if not items:
        raise DataError(f"{src.path}: no image found for any of the .txt label files (looked beside them and in "
                        "images/ parallel to labels/)")
    meta = {"images_dir": str(src.path)}
    if lost:
        meta["notes"] = [f"{len(lost)} .txt file(s) have no image beside them or in images/ (first: {lost[0]}): "
                         "left out"]
    return LabelTable.from_label_sets(items, sets, label_names=names, source_format=NAME, meta=meta), locations
