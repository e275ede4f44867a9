"""COCO instances JSON: images, annotations and categories; an image's labels are the categories of its boxes."""

from __future__ import annotations

from tagnet.data.formats.source import Fit, FormatInfo, Source
from tagnet.data.label_table import LabelTable
from tagnet.errors import DataError

NAME = "coco"
INFO = FormatInfo(NAME, "COCO instances JSON (images, annotations, categories; Roboflow's project category left out)",
                  layout="file", own_names=True, specific=True)


def detect(src: Source) -> Fit | None:
    """A .json object with images and annotations lists."""
    if not (src.path.is_file() and src.path.suffix.lower() == ".json"):
        return None
    data = src.json()
    if isinstance(data, dict) and "images" in data and "annotations" in data:
        return Fit(NAME, 1.0, "a JSON object with images, annotations and categories")
    return None


def read(src: Source) -> tuple[LabelTable, list[str]]:
    """Every image with the categories of its annotations."""
    data = src.json()
    if not isinstance(data, dict):
        raise DataError(f"{src.path}: a COCO file is an object with images, annotations, categories")
    for key in ("images", "annotations", "categories"):
        if not isinstance(data.get(key), list):
            raise DataError(f"{src.path}: COCO key {key!r} is missing or not a list")
    categories = {c["id"]: str(c["name"]) for c in _entries(src, data, "categories", ("id", "name"))}
    annotations = _entries(src, data, "annotations", ("image_id", "category_id"))
    meta = {}
    project = _roboflow_project_category(data["categories"], {ann["category_id"] for ann in annotations})
    if project is not None:
        del categories[project["id"]]
        meta["notes"] = [f"category {project['id']} {project['name']!r} is the Roboflow project's name (supercategory "
                         "\"none\", no annotation uses it), not a label: left out"]
    images = _entries(src, data, "images", ("id", "file_name"))
    row = {img["id"]: i for i, img in enumerate(images)}
    sets: list[set[str]] = [set() for _ in images]
    for k, ann in enumerate(annotations):
        if ann["image_id"] not in row:
            raise DataError(f"{src.path}: annotations[{k}] refers to image_id {ann['image_id']!r}, which is not in images")
        if ann["category_id"] not in categories:
            raise DataError(f"{src.path}: annotations[{k}] has category_id {ann['category_id']!r}, "
                            f"expected one of {sorted(categories, key=str)}")
        sets[row[ann["image_id"]]].add(categories[ann["category_id"]])
    items = [str(img["file_name"]) for img in images]
    locations = [f"{src.path.name} image id {img['id']}" for img in images]
    table = LabelTable.from_label_sets(items, [sorted(s) for s in sets], label_names=categories.values(),
                                       source_format=NAME, meta=meta)
    return table, locations


def _entries(src: Source, data: dict, key: str, needed: tuple[str, ...]) -> list[dict]:
    for k, entry in enumerate(data[key]):
        missing = [n for n in needed if not isinstance(entry, dict) or n not in entry]
        if missing:
            raise DataError(f"{src.path}: {key}[{k}] lacks {', '.join(missing)}")
        unhashable = [n for n in needed if n.endswith("id") and not isinstance(entry[n], (str, int, float))]
        if unhashable:
            raise DataError(f"{src.path}: {key}[{k}] has {unhashable[0]} {entry[unhashable[0]]!r}; "
                            "expected a number or a string")
    return data[key]


def _roboflow_project_category(categories: list[dict], used: set) -> dict | None:
    """The category Roboflow adds to a COCO export for the project itself: supercategory "none", used by no
    annotation, and the supercategory of every other category; None when there is no such category."""
    for category in categories:
        others = [c for c in categories if c is not category]
        if (category.get("supercategory") == "none" and category["id"] not in used and others
                and all(c.get("supercategory") == category["name"] for c in others)):
            return category
    return None
