"""Writing files so that a kill never leaves half of one: temp file, fsync, rename; JSON and YAML written that way."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    """Write via `write(temp_path)` to a temp file next to `path`, fsync it, then os.replace it into place.

    The file gets the permissions of any new file (0666 less the umask), not mkstemp's private 0600, so that
    another account (a service serving the model) can read it.
    """
    path = Path(path)
    handle, temp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(handle)
    temp = Path(temp_name)
    try:
        write(temp)
        os.chmod(temp, 0o666 & ~_umask())
        with open(temp, "rb") as written:
            os.fsync(written.fileno())
        os.replace(temp, path)
    finally:
        temp.unlink(missing_ok=True)
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


def json_default(value: Any) -> Any:
    """JSON encoder fallback: numpy numbers and arrays as Python values, paths as strings."""
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON-serialisable")


def write_json(path: Path, data: Any) -> None:
    """Write `data` as indented JSON, atomically."""
    text = json.dumps(data, indent=2, default=json_default) + "\n"
    atomic_write(Path(path), lambda temp: temp.write_text(text, encoding="utf-8"))


def write_yaml(path: Path, data: Any) -> None:
    """Write `data` (plain JSON-able values) as YAML in its own key order, atomically."""
    import yaml

    text = yaml.safe_dump(data, sort_keys=False)
    atomic_write(Path(path), lambda temp: temp.write_text(text, encoding="utf-8"))
