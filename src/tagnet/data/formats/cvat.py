"""CVAT for images 1.1 XML: every <image> with the labels of its tags and shapes."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

from tagnet.data.formats.source import Fit, FormatInfo, Records, Source
from tagnet.data.label_table import LabelTable
from tagnet.errors import DataError

NAME = "cvat"
INFO = FormatInfo(NAME, "CVAT for images 1.1 XML export",
                  layout="file", own_names=True, specific=True)


def detect(src: Source) -> Fit | None:
    """An .xml file whose root element is <annotations>."""
    if not (src.path.is_file() and src.path.suffix.lower() == ".xml"):
        return None
    if is_cvat_xml(src.path):
        return Fit(NAME, 1.0, "an XML file whose root is CVAT's <annotations>")
    return Fit(NAME, 0.1, "an XML file whose root is not CVAT's <annotations>; Pascal VOC files are read as a folder "
               "of .xml files (give the folder)")


def read(src: Source) -> tuple[LabelTable, list[str]]:
    """Every <image> with its labels; the label set declared in <meta>."""
    if src.path.suffix.lower() == ".xml" and not is_cvat_xml(src.path):
        raise DataError(f"{src.path}: an XML file whose root is not CVAT's <annotations>; Pascal VOC files are read "
                        "as a folder of .xml files (give the folder)")
    return src.table(read_cvat(src.path), NAME)


def is_cvat_xml(path: Path) -> bool:
    """Whether `path` is an XML file whose root element is CVAT's <annotations>."""
    try:
        for _, element in ET.iterparse(path, events=("start",)):
            return element.tag == "annotations"
    except (ET.ParseError, OSError):
        return False
    return False


def read_cvat(path: Path) -> Records:
    """A CVAT "for images 1.1" XML export: every <image name=...> with the labels of its <tag>, <box>,
    <polygon> (any element with a label attribute); the label set is the task's or project's labels from <meta>.

    Raises:
        DataError: broken XML, an <image> without a name or a shape without a label.
    """
    try:
        root = ET.parse(path).getroot()
    except ET.ParseError as e:
        raise DataError(f"{path}: broken XML ({e})") from None
    declared = [name.strip() for name in (label.findtext("name") for label in root.iterfind("meta//labels/label"))
                if name and name.strip()]
    items, sets, locations = [], [], []
    for image in root.iter("image"):
        where = f"{path.name} image id {image.get('id', '?')}"
        name = (image.get("name") or "").strip()
        if not name:
            raise DataError(f"{where}: <image> has no name attribute; expected the image's file name")
        labels = []
        for shape in image:
            label = shape.get("label")
            if label is None or not label.strip():
                raise DataError(f"{where}: <{shape.tag}> has no label attribute")
            labels.append(label.strip())
        items.append(name)
        sets.append(sorted(set(labels)))
        locations.append(where)
    if not items:
        raise DataError(f"{path}: a CVAT <annotations> file without <image> elements; expected the "
                        "\"CVAT for images 1.1\" export (\"CVAT for video\" writes <track> elements)")
    used = {label for labels in sets for label in labels}
    undeclared = sorted(used - set(declared))
    if declared and undeclared:
        raise DataError(f"{path}: label(s) {undeclared} are used but not declared in <meta> labels {declared}")
    return Records(items, sets, locations, label_names=sorted(set(declared) | used))
