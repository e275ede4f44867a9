"""The modality registry: the one list of input kinds (images, texts, feature rows), by name or detected from a file.

Each entry is a ModalitySpec (tagnet.modalities.specs: what the modality declares) naming its Modality class, which
holds its roles: reading and training (modalities.base.Modality), its request codec for serving
(modalities.codecs) and its ONNX spec (modalities.onnx_specs). Light to import: a modality's class (and torch with
it) loads when it is first asked for.
"""

from __future__ import annotations

from importlib import import_module
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tagnet.errors import ConfigError
from tagnet.modalities.specs import IMAGE, TABULAR, TEXT, ModalitySpec

if TYPE_CHECKING:
    from tagnet.modalities.base import Modality

REGISTRY: dict[str, ModalitySpec] = {spec.name: spec for spec in (IMAGE, TEXT, TABULAR)}
_LOADED: dict[str, Modality] = {}


def spec(name: str) -> ModalitySpec:
    """What the modality called `name` declares, without loading it; raises ConfigError for an unknown one."""
    if name not in REGISTRY:
        raise ConfigError(f"modality {name!r} is not one of {list(REGISTRY)}")
    return REGISTRY[name]


def get(name: str) -> Modality:
    """The modality called `name` ("image", "text", "tabular"); raises ConfigError for an unknown one."""
    if name not in _LOADED:
        module, _, cls = spec(name).implementation.partition(":")
        _LOADED[name] = getattr(import_module(module), cls)()
    return _LOADED[name]


def detect_name(path: str | Path, options: dict[str, Any] | None = None, *, text_column: str | int | None = None,
                tabular: bool = False) -> str:
    """What a training file holds: "text" with a text column; "tabular" for ARFF files, `tabular`, or a
    feature-table option (label_count, labels_xml) in `options`; else "image"."""
    from tagnet.data.feature_table import is_feature_table

    if text_column is not None:
        return "text"
    if tabular or is_feature_table(path, options or {}):
        return "tabular"
    return "image"


def detect(path: str | Path, options: dict[str, Any] | None = None, *, text_column: str | int | None = None,
           tabular: bool = False) -> Modality:
    """The Modality of a training file (see detect_name)."""
    return get(detect_name(path, options, text_column=text_column, tabular=tabular))
