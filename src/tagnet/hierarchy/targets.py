"""Targets under a hierarchy: every known positive implies its ancestors; labels only the tree names are added."""

from __future__ import annotations

import numpy as np

from tagnet.data.label_table import LabelTable
from tagnet.hierarchy.tree import Tree


def aligned_tree(tree: Tree, label_names: list[str]) -> Tree:
    """`tree` when it is aligned to `label_names` already (its labels are they and its implied ancestors), else
    tree.for_labels(label_names)."""
    if set(tree.names) == set(label_names) | set(tree.implied) and not set(label_names) & set(tree.implied):
        return tree
    return tree.for_labels(label_names)


def with_implied_ancestors(table: LabelTable, tree: Tree) -> LabelTable:
    """`table` with the columns of `tree` aligned to its labels (tree.for_labels: the implied ancestors added) and
    every known positive's ancestors made known positives (one sparse product). An implied ancestor, which the file
    never names, is known negative where none of its descendants is positive and all of them are known; else unknown.

    Raises DataError (from tree.for_labels) naming the labels the tree lacks."""
    aligned = aligned_tree(tree, table.label_names)
    cols = np.array([aligned.index[name] for name in table.label_names], dtype=np.int64)
    shape = (len(table), len(aligned.names))
    positives, unknown = np.zeros(shape, bool), np.zeros(shape, bool)
    positives[:, cols] = table.targets.astype(bool) & table.known
    unknown[:, cols] = ~table.known
    closed = aligned.with_ancestors(positives)
    known = ~(np.asarray(aligned.ancestors.T @ unknown.T.astype(np.float32)).T > 0)  # implied: all below known
    known[:, cols] = table.known
    known |= closed
    targets = np.zeros(shape, dtype=table.targets.dtype)
    targets[:, cols] = table.targets
    targets[closed] = 1
    meta = {**table.meta, "implied_labels": list(aligned.implied)} if aligned.implied else dict(table.meta)
    return LabelTable(list(table.items), list(aligned.names), targets, known, table.source_format, meta)


def skipped_levels(table: LabelTable, tree: Tree) -> tuple[np.ndarray, np.ndarray]:
    """(rows, columns of `table`) of known positives whose parent is one of the table's labels, known, and not
    positive: items whose labels skip a level (training adds the parent)."""
    aligned = aligned_tree(tree, table.label_names)
    column = {name: j for j, name in enumerate(table.label_names)}
    parent = np.array([column.get(aligned.names[p], -1) if (p := aligned.parents[aligned.index[name]]) >= 0 else -1
                       for name in table.label_names], dtype=np.int64)
    checked = np.flatnonzero(parent >= 0)
    positive = table.targets.astype(bool) & table.known
    missing = positive[:, checked] & ~positive[:, parent[checked]] & table.known[:, parent[checked]]
    rows, where = np.nonzero(missing)
    return rows, checked[where]
