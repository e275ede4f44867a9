"""LabelTable: the one in-memory form of every label file (items, label names, multi-hot, known-mask)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from tagnet.errors import DataError


@dataclass(frozen=True)
class LabelTable:
    """Items with any number of labels each.

    Attributes:
        items: item ids or relative file paths, one per row.
        label_names: label names, sorted.
        targets: (n_items, n_labels) uint8 multi-hot matrix (1 = label present).
        known: (n_items, n_labels) bool; False where the label's value is unknown (masked in
            losses and metrics, never treated as negative).
        source_format: the reader that produced it ("tags", "onehot", "jsonl", "json", "coco",
            "voc", "folders", "arff", ...); writers use it to write splits in the input's format.
        meta: reader settings needed to write the same format back (separator, columns, ...).
    """

    items: list[str]
    label_names: list[str]
    targets: np.ndarray
    known: np.ndarray
    source_format: str = "tags"
    meta: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        n, n_labels = len(self.items), len(self.label_names)
        assert self.targets.shape == (n, n_labels), (self.targets.shape, n, n_labels)
        assert self.known.shape == (n, n_labels), (self.known.shape, n, n_labels)

    @classmethod
    def from_label_sets(
        cls,
        items: Sequence[str],
        label_sets: Sequence[Sequence[str]],
        *,
        label_names: Sequence[str] | None = None,
        source_format: str = "tags",
        meta: dict | None = None,
    ) -> "LabelTable":
        """Build a table from one list of label names per item (all values known)."""
        names = sorted(set(label_names) if label_names is not None else {name for s in label_sets for name in s})
        index = {name: j for j, name in enumerate(names)}
        targets = np.zeros((len(items), len(names)), dtype=np.uint8)
        for i, labels in enumerate(label_sets):
            for label in labels:
                if label not in index:
                    raise DataError(f"item {items[i]!r}: label {label!r} is not one of {names}")
                targets[i, index[label]] = 1
        known = np.ones_like(targets, dtype=bool)
        return cls(list(items), names, targets, known, source_format, dict(meta or {}))

    def __len__(self) -> int:
        return len(self.items)

    @property
    def num_labels(self) -> int:
        return len(self.label_names)

    def label_sets(self) -> list[list[str]]:
        """The labels present on each item, as names."""
        return [[self.label_names[j] for j in np.flatnonzero(row)] for row in self.targets]

    def subset(self, indices: Sequence[int] | np.ndarray) -> "LabelTable":
        """Rows at `indices`, same labels and format."""
        idx = np.asarray(indices, dtype=np.int64)
        return LabelTable([self.items[i] for i in idx], list(self.label_names), self.targets[idx],
                          self.known[idx], self.source_format, dict(self.meta))

    def aligned_to(self, label_names: Sequence[str], *, what: str = "label file",
                   missing_negative: bool = False) -> "LabelTable":
        """The same table with columns in the order of `label_names`.

        Args:
            missing_negative: a label of `label_names` that the table lacks becomes a column of known negatives
                (an evaluation file in which that label never occurs); the labels added are listed in
                meta["labels_added_as_negative"].
        Raises:
            DataError: naming the labels the table has that `label_names` lacks, or (without
                `missing_negative`) the labels it lacks.
        """
        names = list(label_names)
        if names == self.label_names:
            return self
        missing = sorted(set(names) - set(self.label_names))
        extra = sorted(set(self.label_names) - set(names))
        if extra or (missing and not missing_negative):
            raise DataError(
                f"{what} has labels {self.label_names} but the model has {names}: "
                f"missing {missing or 'none'}, unexpected {extra or 'none'}")
        targets = np.zeros((len(self), len(names)), dtype=np.uint8)
        known = np.ones((len(self), len(names)), dtype=bool)
        for j, name in enumerate(names):
            if name in self.label_names:
                targets[:, j] = self.targets[:, self.label_names.index(name)]
                known[:, j] = self.known[:, self.label_names.index(name)]
        meta = {**self.meta, "labels_added_as_negative": missing} if missing else dict(self.meta)
        return LabelTable(list(self.items), names, targets, known, self.source_format, meta)

    def label_counts(self) -> np.ndarray:
        """Number of known positives per label."""
        return (self.targets.astype(bool) & self.known).sum(axis=0)
