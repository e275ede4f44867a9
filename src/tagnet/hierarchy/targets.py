"""Targets under a hierarchy: every known positive implies its ancestors; labels only the tree names are added."""

from __future__ import annotations

import numpy as np

from tagnet.data.label_table import LabelTable
from tagnet.hierarchy.tree import Tree


def aligned_tree(tree: Tree, label_names: list[str]) -> Tree:
    """`tree` when it is aligned to `label_names` already (they come first, then its implied ancestors), else
    tree.for_labels(label_names)."""
    names = tuple(label_names)
    if tree.names[:len(names)] == names and len(tree.names) == len(names) + len(tree.implied):
        return tree
    return tree.for_labels(names)


def with_implied_ancestors(table: LabelTable, tree: Tree) -> LabelTable:
    """`table` with the columns of `tree` (its labels, then the implied ancestors: tree.for_labels) and every known
    positive's ancestors made known positives (one sparse product). An implied ancestor, which the file never
    names, is known negative where none of its descendants is positive and all of them are known; else unknown.

    Raises DataError (from tree.for_labels) naming the labels the tree lacks."""
    aligned = aligned_tree(tree, table.label_names)
    width, given = len(aligned.names), table.num_labels
    positives = np.zeros((len(table), width), dtype=bool)
    positives[:, :given] = table.targets.astype(bool) & table.known
    closed = aligned.with_ancestors(positives)
    unknown = np.zeros_like(positives)
    unknown[:, :given] = ~table.known
    unknown_below = np.asarray(aligned.ancestors.T @ unknown.T.astype(np.float32)).T > 0
    known = np.ones_like(positives)
    known[:, :given] = table.known
    known[:, given:] = ~unknown_below[:, given:]
    known |= closed
    targets = np.zeros((len(table), width), dtype=table.targets.dtype)
    targets[:, :given] = table.targets
    targets[closed] = 1
    meta = {**table.meta, "implied_labels": list(aligned.implied)} if aligned.implied else dict(table.meta)
    return LabelTable(list(table.items), list(aligned.names), targets, known, table.source_format, meta)


def skipped_levels(table: LabelTable, tree: Tree) -> tuple[np.ndarray, np.ndarray]:
    """(rows, labels) of known positives whose parent is one of the table's labels, known, and not positive: items whose
    labels skip a level (training adds the parent)."""
    aligned = aligned_tree(tree, table.label_names)
    given = table.num_labels
    parents = np.asarray(aligned.parents[:given], dtype=np.int64)
    checked = np.flatnonzero((parents >= 0) & (parents < given))
    positive = table.targets.astype(bool) & table.known
    parent = parents[checked]
    missing = positive[:, checked] & ~positive[:, parent] & table.known[:, parent]
    rows, where = np.nonzero(missing)
    return rows, checked[where]
