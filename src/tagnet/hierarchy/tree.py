"""Tree: a label hierarchy as label names with a parent per label, and the consistency rule applied level by level."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Any, Sequence

import numpy as np
from scipy import sparse

from tagnet.errors import ArtifactError, DataError

RULE = ("probabilities: p'(child) = min(p(child), p'(parent)), so no label is more probable than its parent; "
        "decisions: a label is predicted only when it passes its threshold and so does every ancestor")


@dataclass(frozen=True)
class Tree:
    """A label hierarchy (a forest: several roots).

    Attributes:
        names: the labels, in the order of a model's outputs once aligned (Tree.for_labels).
        parents: the index of each label's parent in `names`, -1 for a root.
        separator: what joins a label's path for display (and splits paths in the files it came from).
        full_names: the names are whole paths already (a hierarchy read from label names such as animal/dog).
        implied: labels added as ancestors of the data's labels: the label file never names them.
    """

    names: tuple[str, ...]
    parents: tuple[int, ...]
    separator: str = "/"
    full_names: bool = False
    implied: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        assert len(self.names) == len(self.parents) and all(-1 <= p < len(self.names) for p in self.parents)

    @cached_property
    def index(self) -> dict[str, int]:
        """{label name: its position}."""
        return {name: j for j, name in enumerate(self.names)}

    @cached_property
    def up(self) -> np.ndarray:
        """Each label's parent index, a root's own index (one step up, staying at the roots)."""
        parents = np.asarray(self.parents, dtype=np.int64).reshape(-1)
        return np.where(parents >= 0, parents, np.arange(len(parents)))

    @cached_property
    def depth(self) -> np.ndarray:
        """Each label's depth: 1 for a root, 2 for its children, ... (DataError for a cycle)."""
        depth = self._depths()
        if depth is None:
            raise DataError(f"the hierarchy has a cycle: {' -> '.join(self.cycle())}")
        return depth

    def _depths(self) -> np.ndarray | None:
        """Each label's depth, None when the parents hold a cycle (one vectorised step up per level)."""
        parents = np.asarray(self.parents, dtype=np.int64).reshape(-1)
        depth, above = np.ones(len(parents), dtype=np.int64), parents.copy()
        for _ in range(len(parents) + 1):  # one step up per level: at most as many levels as labels
            if not (above >= 0).any():
                return depth
            depth += above >= 0
            above = np.where(above >= 0, parents[np.maximum(above, 0)], -1)
        return None

    @property
    def levels(self) -> int:
        """The number of levels (the largest depth; 0 for an empty tree)."""
        return int(self.depth.max()) if len(self.names) else 0

    def cycle(self) -> list[str]:
        """The names along one cycle of parents (first name repeated at the end), [] when there is none (found by
        the vectorised depth pass; the walk label by label runs only to name a cycle)."""
        if self._depths() is not None:
            return []
        parents = np.asarray(self.parents, dtype=np.int64)
        for start in range(len(parents)):
            seen, node = [], start
            while node >= 0 and node not in seen and len(seen) <= len(parents):
                seen.append(node)
                node = int(parents[node])
            if node >= 0:
                loop = seen[seen.index(node):]
                return [self.names[j] for j in loop + [node]]
        return []

    @cached_property
    def ancestors(self) -> sparse.csr_matrix:
        """(labels, labels) 0/1 sparse matrix: [i, j] = 1 when j is a proper ancestor of i."""
        parents = np.asarray(self.parents, dtype=np.int64).reshape(-1)
        rows, cols, above = [], [], parents.copy()
        for _ in range(self.levels - 1):
            has = np.flatnonzero(above >= 0)
            rows.append(has)
            cols.append(above[has])
            above = np.where(above >= 0, parents[np.maximum(above, 0)], -1)
        i = np.concatenate(rows) if rows else np.zeros(0, np.int64)
        j = np.concatenate(cols) if cols else np.zeros(0, np.int64)
        size = len(parents)
        return sparse.csr_matrix((np.ones(len(i), np.float32), (i, j)), shape=(size, size))

    def with_ancestors(self, sets: np.ndarray) -> np.ndarray:
        """(items, labels) 0/1 -> bool: each item's labels and all their ancestors (one sparse product)."""
        sets = np.asarray(sets).astype(bool)
        if not len(self.names):
            return sets
        implied = np.asarray(self.ancestors.T @ sets.T.astype(np.float32)).T > 0
        return sets | implied

    def consistent(self, probs: np.ndarray) -> np.ndarray:
        """Probabilities (items, labels) under the rule p'(child) = min(p(child), p'(parent)): one vectorised step
        per level, each label taking the minimum with its parent's (so after all steps, with every ancestor's)."""
        out = np.asarray(probs)
        for _ in range(self.levels - 1):
            out = np.minimum(out, out[:, self.up])
        return out

    def gate(self, chosen: np.ndarray) -> np.ndarray:
        """Decisions (items, labels) with every label whose parent (so some ancestor) is not chosen dropped."""
        out = np.asarray(chosen, dtype=bool)
        for _ in range(self.levels - 1):
            out = out & out[:, self.up]
        return out

    def inconsistent(self, chosen: np.ndarray) -> int:
        """How many (item, label) decisions have the label chosen without its parent."""
        chosen = np.asarray(chosen, dtype=bool)
        has_parent = np.asarray(self.parents) >= 0
        return int((chosen[:, has_parent] & ~chosen[:, self.up[has_parent]]).sum())

    @cached_property
    def paths(self) -> list[str]:
        """Each label's path from its root, e.g. vehicle/car/taxi (the name itself when names are whole paths)."""
        if self.full_names:
            return list(self.names)
        paths = list(self.names)
        parents = np.asarray(self.parents, dtype=np.int64)
        order = np.argsort(self.depth, kind="stable")  # parents before children
        for j in order[self.depth[order] > 1]:
            paths[j] = paths[parents[j]] + self.separator + self.names[j]
        return paths

    def for_labels(self, label_names: Sequence[str], *, source: str = "hierarchy") -> Tree:
        """This tree restricted to `label_names` and the ancestors they lack (listed as `implied`): all sorted by name
        when `label_names` are (as LabelTable keeps them), else `label_names` in their order followed by the implied.

        Raises DataError naming the labels the tree lacks."""
        missing = [name for name in label_names if name not in self.index]
        if missing:
            raise DataError(f"{source}: label(s) {', '.join(map(repr, missing[:5]))}"
                            f"{f' and {len(missing) - 5} more' if len(missing) > 5 else ''} of the data are not in "
                            "the hierarchy; expected every label in it (add each as a path, or as a root line)")
        given = np.zeros(len(self.names), dtype=bool)
        given[[self.index[name] for name in label_names]] = True
        kept = self.with_ancestors(given[None, :])[0]
        implied = tuple(sorted(self.names[j] for j in np.flatnonzero(kept & ~given)))
        names = [*label_names, *implied]
        names = sorted(names) if list(label_names) == sorted(label_names) else names
        where = {name: k for k, name in enumerate(names)}
        parents = [where[self.names[p]] if (p := self.parents[self.index[name]]) >= 0 else -1 for name in names]
        return Tree(tuple(names), tuple(parents), self.separator, self.full_names, implied)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able form (from_dict reads it back): names, parents, separator, full_names, implied."""
        return {"names": list(self.names), "parents": [int(p) for p in self.parents], "separator": self.separator,
                "full_names": self.full_names, "implied": list(self.implied), "rule": RULE}

    @classmethod
    def from_dict(cls, data: Any, *, num_labels: int | None = None, source: str = "hierarchy") -> Tree:
        """A tree written by to_dict; ArtifactError naming `source` when malformed."""
        if not isinstance(data, dict) or not isinstance(data.get("names"), list) \
                or not isinstance(data.get("parents"), list):
            raise ArtifactError(f"{source}: expected an object with lists names and parents, got {data!r:.80}")
        names, parents = data["names"], data["parents"]
        size = len(names)
        if not all(isinstance(n, str) for n in names) or len(parents) != size or not all(
                isinstance(p, int) and not isinstance(p, bool) and -1 <= p < size for p in parents):
            raise ArtifactError(f"{source}: expected {size} label names and as many parent indices from -1 to "
                                f"{size - 1}")
        if not isinstance(data.get("implied", []), list):
            raise ArtifactError(f"{source}: 'implied' is not a list of label names")
        if num_labels is not None and size != num_labels:
            raise ArtifactError(f"{source}: {size} labels for a model with {num_labels} outputs")
        tree = cls(tuple(names), tuple(parents), str(data.get("separator", "/")), bool(data.get("full_names")),
                   tuple(str(n) for n in data.get("implied", [])))
        loop = tree.cycle()
        if loop:
            raise ArtifactError(f"{source}: the hierarchy has a cycle: {' -> '.join(loop)}")
        return tree
