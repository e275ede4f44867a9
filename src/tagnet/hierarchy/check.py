"""What `tagnet data check --hierarchy` finds: a tree that cannot be read (a cycle, two parents), labels missing from
the tree, tree labels without data, and items whose labels skip a level."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tagnet.data.label_table import LabelTable
from tagnet.errors import DataError
from tagnet.hierarchy.read import load_hierarchy
from tagnet.hierarchy.targets import skipped_levels

SHOWN = 5  # names or rows quoted in one finding

Finding = tuple[str, str, str, str]  # (severity, kind, where, message) as tagnet.data.check.Problem takes them


def hierarchy_findings(table: LabelTable, locations: list[str], *, path: str | Path | None,
                       separator: str | None) -> tuple[list[Finding], str]:
    """The findings on `table` under the hierarchy of `path` (or of the label names split at `separator`), and a
    one-line summary of the tree for the check's step table."""
    source = str(path) if path is not None else "label names"
    try:
        tree = load_hierarchy(path, separator=separator, label_names=table.label_names)  # a cycle is refused here
    except DataError as exc:
        return [("error", "hierarchy", source, str(exc))], "the hierarchy could not be read"
    found: list[Finding] = []
    missing = [name for name in table.label_names if name not in tree.index]
    if missing:
        found.append(("error", "label not in hierarchy", source,
                      f"{len(missing)} label(s) of the data are not in the hierarchy: {_names(missing)}; training "
                      "refuses them: add each as a path, or as a root line"))
        return found, f"{len(tree.names)} labels in {tree.levels} level(s); {len(missing)} data label(s) missing"
    aligned = tree.for_labels(table.label_names)
    unused = sorted(set(tree.names) - set(aligned.names))
    if unused:
        found.append(("warning", "hierarchy label without data", source,
                      f"{len(unused)} label(s) of the hierarchy are neither labels of the data nor their ancestors: "
                      f"{_names(unused)}; training leaves them out"))
    rows, labels = skipped_levels(table, aligned)
    if len(rows):
        first = [f"{locations[r]}: {table.label_names[j]!r} without "
                 f"{aligned.names[aligned.parents[aligned.index[table.label_names[j]]]]!r}"
                 for r, j in zip(rows[:SHOWN].tolist(), labels[:SHOWN].tolist())]
        found.append(("warning", "level skipped", _where(locations, rows),
                      f"{len(np.unique(rows))} item(s) have a label without its parent ({'; '.join(first)}"
                      f"{' ...' if len(rows) > SHOWN else ''}); training adds the parent"))
    implied = f"; {len(aligned.implied)} ancestor(s) added as labels: {_names(list(aligned.implied))}" \
        if aligned.implied else ""
    return found, f"{len(aligned.names)} labels in {aligned.levels} level(s){implied}"


def _names(names: list[str]) -> str:
    return ", ".join(map(repr, names[:SHOWN])) + (f" and {len(names) - SHOWN} more" if len(names) > SHOWN else "")


def _where(locations: list[str], rows: np.ndarray) -> str:
    unique = np.unique(rows)
    return ", ".join(locations[r] for r in unique[:SHOWN].tolist()) + (" ..." if len(unique) > SHOWN else "")
