"""The label-file formats: one module per format (detect / read / write), listed here in one registry.

A format module declares NAME and INFO (source.FormatInfo: summary, layout, whether records carry texts, whether it
names its own labels, whether its detection is one tool's documented layout), and functions `detect(source)` -> Fit
or None and `read(source)` -> (LabelTable, locations); a writable format also has `write(table, path, meta)`.
A new format is one module plus one entry in REGISTRY.
"""

from __future__ import annotations

from types import ModuleType

from tagnet.data.formats import (celeba, coco, cvat, darwin, folders, groundtruth, huggingface, jsonl, jsonlist, labelbox,
                                 labelstudio, labelstudio_csv, long, onehot, prodigy, spacy, tags, voc, yolo)
from tagnet.data.formats.source import Fit  # noqa: F401 (the result of every module's detect)

# Detection asks every module; the order only breaks ties between equal scores.
REGISTRY: dict[str, ModuleType] = {module.NAME: module for module in (
    tags, onehot, jsonl, jsonlist, coco, voc, folders, cvat, labelstudio, labelstudio_csv, spacy,
    huggingface, long, yolo, groundtruth, labelbox, darwin, prodigy, celeba)}
FORMATS = tuple(REGISTRY)


def describe() -> str:
    """Every format and its one-line summary, for --help."""
    return "; ".join(f"{name} ({mod.INFO.summary})" for name, mod in REGISTRY.items())
