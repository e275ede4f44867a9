"""The data source of a command as one value: the label file, where its inputs are, and how to read it."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class DataSource:
    """Where a command's labelled data comes from and how to read it.

    Attributes:
        labels: the label file (or folder, for folder-per-label and per-image-file layouts).
        images_dir: the folder the label file's image paths are relative to (images).
        text_column: the column or JSON key holding the text (makes it a text source).
        tabular: the label file is a feature table (ARFF files are detected without it).
        read_options: options for the label-file reader (format, columns, separator, label_count...).
        modality: "image", "text" or "tabular" instead of detecting it.
    """

    labels: str | Path
    images_dir: str | Path | None = None
    text_column: str | int | None = None
    tabular: bool = False
    read_options: dict[str, Any] = field(default_factory=dict)
    modality: str | None = None

    def with_labels(self, labels: str | Path) -> DataSource:
        """The same reading for another label file (a --val or test file)."""
        return dataclasses.replace(self, labels=labels)

    def with_options(self, read_options: dict[str, Any]) -> DataSource:
        """The same source with other reader options."""
        return dataclasses.replace(self, read_options=dict(read_options))

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form, as run.json keeps it."""
        return {"labels": str(self.labels), "images_dir": None if self.images_dir is None else str(self.images_dir),
                "text_column": self.text_column, "tabular": self.tabular, "read_options": dict(self.read_options),
                "modality": self.modality}
