"""Read a label hierarchy: a file of paths (a/b/c per line) or a YAML tree, or the paths inside label names."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator, Sequence

from tagnet.errors import DataError
from tagnet.hierarchy.tree import Tree

YAML_SUFFIXES = (".yaml", ".yml")
DEFAULT_SEPARATOR = "/"


def load_hierarchy(path: str | Path | None, *, separator: str | None = None,
                   label_names: Sequence[str] = ()) -> Tree | None:
    """The hierarchy a run asks for: read from `path` (paths split at `separator`, default /), else from
    `label_names` split at `separator`; None when neither is given. Raises DataError."""
    if path is not None:
        return read_hierarchy(path, separator=separator or DEFAULT_SEPARATOR)
    if separator is not None:
        return hierarchy_from_names(label_names, separator=separator)
    return None


def read_hierarchy(path: str | Path, *, separator: str = DEFAULT_SEPARATOR) -> Tree:
    """A hierarchy file: YAML (.yaml, .yml: nested mappings and lists of names, read with yaml.safe_load) or text, one
    path per line (animal/dog; a line may start below a root: car/taxi puts taxi under car; # starts a comment).

    Raises DataError (one line, naming the file and line) for a missing or empty file, an empty name in a path, a
    label given two different parents, or a cycle."""
    path = Path(path)
    if not separator:
        raise DataError(f"{path}: the hierarchy separator is empty; expected a string such as /")
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise DataError(f"hierarchy file {path} does not exist; expected a file of paths (a/b/c per line) "
                        "or a YAML tree") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"hierarchy file {path} cannot be read as UTF-8 text: {exc}") from None
    edges = list(_yaml_edges(path, text) if path.suffix.lower() in YAML_SUFFIXES else _line_edges(path, text, separator))
    if not edges:
        raise DataError(f"hierarchy file {path} names no label; expected paths such as animal/dog, one per line, "
                        "or a YAML tree")
    return _tree(edges, separator=separator, source=str(path))


def hierarchy_from_names(label_names: Sequence[str], *, separator: str) -> Tree:
    """The hierarchy inside label names split at `separator` (animal/dog is dog under animal; the label names are the
    whole paths, and animal is added as a label when the data lacks it). Raises DataError for an empty part."""
    if not separator:
        raise DataError("the hierarchy separator is empty; expected a string such as /")
    edges = []
    for name in label_names:
        parts = name.split(separator)
        if not all(part.strip() for part in parts):
            raise DataError(f"label {name!r}: an empty part between separators {separator!r}; expected names such "
                            f"as animal{separator}dog")
        prefixes = [separator.join(parts[:k + 1]) for k in range(len(parts))]
        edges += [(prefixes[0], None, f"label {name!r}")]
        edges += [(child, parent, f"label {name!r}") for parent, child in zip(prefixes, prefixes[1:])]
    return _tree(edges, separator=separator, source="label names", full_names=True)


def _line_edges(path: Path, text: str, separator: str) -> Iterator[tuple[str, str | None, str]]:
    """(child, parent or None, where) of every name on every non-empty line."""
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        parts = [part.strip() for part in line.split(separator)]
        if not all(parts):
            raise DataError(f"{path} line {number}: {raw.strip()!r} has an empty name between separators "
                            f"{separator!r}; expected a path such as animal{separator}dog")
        where = f"line {number}"
        yield parts[0], None, where
        yield from ((child, parent, where) for parent, child in zip(parts, parts[1:]))


def _yaml_edges(path: Path, text: str) -> Iterator[tuple[str, str | None, str]]:
    """(child, parent or None, where) of a YAML tree: a mapping name -> children (a mapping, a list, one name or
    nothing), or a list of names and such mappings."""
    import yaml

    try:
        tree = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        raise DataError(f"{path}: not valid YAML ({getattr(exc, 'problem', None) or exc}"
                        + (f" at line {mark.line + 1})" if mark else ")")) from None
    yield from _yaml_children(path, tree, None)


def _yaml_children(path: Path, node: Any, parent: str | None) -> Iterator[tuple[str, str | None, str]]:
    where = f"under {parent!r}" if parent is not None else "at the top"
    if node is None:
        return
    if isinstance(node, (str, int, float)) and not isinstance(node, bool):
        yield str(node), parent, where
    elif isinstance(node, list):
        for child in node:
            yield from _yaml_children(path, child, parent)
    elif isinstance(node, dict):
        for name, children in node.items():
            yield from _yaml_children(path, name, parent)
            yield from _yaml_children(path, children, str(name))
    else:
        raise DataError(f"{path}: {node!r} {where} is a {type(node).__name__}; expected label names, lists and "
                        "mappings of them")


def _tree(edges: list[tuple[str, str | None, str]], *, separator: str, source: str, full_names: bool = False) -> Tree:
    """A Tree from (child, parent or None, where) edges; DataError for a label under two parents or a cycle."""
    parent_of: dict[str, tuple[str, str]] = {}
    names: dict[str, None] = {}
    for child, parent, where in edges:
        names.setdefault(child)
        if parent is None:
            continue
        names.setdefault(parent)
        before = parent_of.setdefault(child, (parent, where))
        if before[0] != parent:
            raise DataError(f"{source} {where}: label {child!r} is under {parent!r} here but under {before[0]!r} "
                            f"({before[1]}); expected one parent per label (name the two differently)")
    order = list(names)
    index = {name: j for j, name in enumerate(order)}
    tree = Tree(tuple(order), tuple(index[parent_of[n][0]] if n in parent_of else -1 for n in order), separator,
                full_names)
    loop = tree.cycle()
    if loop:
        raise DataError(f"{source}: the hierarchy has a cycle: {' -> '.join(loop)}; expected a tree (each label "
                        "below its ancestors only)")
    return tree
