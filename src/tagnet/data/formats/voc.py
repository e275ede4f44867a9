"""Pascal VOC: a folder of XML annotation files (or a VOC root with Annotations/ and JPEGImages/)."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from tagnet.data.formats.source import Fit, FormatInfo, Source
from tagnet.data.label_table import LabelTable
from tagnet.errors import DataError

NAME = "voc"
INFO = FormatInfo(NAME, "Pascal VOC: a folder of .xml files, or a VOC root with Annotations/ (and JPEGImages/)",
                  layout="folder", own_names=True, specific=True)


def detect(src: Source) -> Fit | None:
    """A folder holding .xml files or an Annotations/ folder."""
    if not src.path.is_dir():
        return None
    if (src.path / "Annotations").is_dir():
        return Fit(NAME, 0.95, "a folder with Annotations/ (a Pascal VOC root)")
    if any(src.path.glob("*.xml")):
        return Fit(NAME, 0.9, "a folder of .xml annotation files")
    return None


def read(src: Source) -> tuple[LabelTable, list[str]]:
    """Each XML file: its <filename> with the names of its <object>s."""
    folder = src.path
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
    table = LabelTable.from_label_sets(items, sets, source_format=NAME, meta=meta)
    return table, [str(f) for f in files]
