"""Array conventions shared by the decision and metric code: scores kept in the float type they come in, and the
blocks of rows that bound what a (rows x labels) computation copies at once."""

from __future__ import annotations

import numpy as np

ROW_BLOCK_CELLS = 1 << 22  # cells (rows x labels) of one block of rows: what decisions, rankings and bins copy at once


def float_scores(values: object) -> np.ndarray:
    """`values` as a NumPy array of float32 or float64 as given (no 8-byte copy of float32), other types as float64."""
    array = np.asarray(values)
    return array if array.dtype in (np.float32, np.float64) else array.astype(np.float64)


def row_blocks(n: int, width: int) -> list[slice]:
    """Slices of `n` rows of `width` columns, each at most ROW_BLOCK_CELLS cells (at least one row)."""
    step = max(1, ROW_BLOCK_CELLS // max(width, 1))
    return [slice(start, start + step) for start in range(0, n, step)]
