"""The modality registry: what varies by input kind (see modalities.base.Modality), by name or detected from a file.

Light to import: a modality's module (and torch with it) loads when it is first asked for.
"""

from __future__ import annotations

from importlib import import_module
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tagnet.config.settings import MODALITIES
from tagnet.data.feature_table import is_feature_table
from tagnet.errors import ConfigError

if TYPE_CHECKING:
    from tagnet.modalities.base import Modality

_CLASSES = {"image": "tagnet.modalities.image:ImageModality", "text": "tagnet.modalities.text:TextModality",
            "tabular": "tagnet.modalities.tabular:TabularModality"}
assert tuple(_CLASSES) == MODALITIES
_LOADED: dict[str, Modality] = {}


def get(name: str) -> Modality:
    """The modality called `name` ("image", "text", "tabular"); raises ConfigError for an unknown one."""
    if name not in _CLASSES:
        raise ConfigError(f"modality {name!r} is not one of {list(_CLASSES)}")
    if name not in _LOADED:
        module, _, cls = _CLASSES[name].partition(":")
        _LOADED[name] = getattr(import_module(module), cls)()
    return _LOADED[name]


def detect_name(path: str | Path, options: dict[str, Any] | None = None, *, text_column: str | int | None = None,
                tabular: bool = False) -> str:
    """What a training file holds: "text" with a text column; "tabular" for ARFF files, `tabular`, or a
    feature-table option (label_count, labels_xml) in `options`; else "image"."""
    if text_column is not None:
        return "text"
    if tabular or is_feature_table(path, options or {}):
        return "tabular"
    return "image"


def detect(path: str | Path, options: dict[str, Any] | None = None, *, text_column: str | int | None = None,
           tabular: bool = False) -> Modality:
    """The Modality of a training file (see detect_name)."""
    return get(detect_name(path, options, text_column=text_column, tabular=tabular))
