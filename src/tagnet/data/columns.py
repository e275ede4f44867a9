"""Which column of a table holds what: the usual names of id and label columns, and finding one in a header."""

from __future__ import annotations

from typing import Sequence

ID_COLUMNS = ("image", "id", "file", "filename", "path", "item", "image_id", "file_name")
LABEL_COLUMNS = ("labels", "tags", "label", "categories")


def pick_column(header: Sequence[str], names: Sequence[str]) -> int | None:
    """The first of `names` that is a column of `header` (case-insensitive), or None."""
    lowered = [h.lower() for h in header]
    for name in names:
        if name in lowered:
            return lowered.index(name)
    return None
