"""Which unlabelled items to label next: uncertain across labels and spread over the feature space."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from tagnet.data.labels import write_labels
from tagnet.data.label_table import LabelTable
from tagnet.data.feature_table import fit_standardization, standardize
from tagnet.errors import ConfigError, DataError


def uncertainty(probs: np.ndarray) -> np.ndarray:
    """Mean binary entropy (bits, 0 to 1) of each item's label probabilities (n_items,)."""
    p = np.clip(np.asarray(probs, dtype=np.float64), 1e-12, 1 - 1e-12)
    return (-(p * np.log2(p) + (1 - p) * np.log2(1 - p))).mean(axis=1)


def suggest_items(probs: np.ndarray, features: np.ndarray, *, n: int, seed: int = 0, focus: float = 0.5) -> np.ndarray:
    """Indices of `n` items to label next, in the order chosen.

    Weighted k-means++ seeding in standardised feature space: the most uncertain item first (mean
    binary entropy over labels), then each next item drawn (from `seed`) with probability proportional
    to uncertainty ** focus times its squared distance to the nearest item chosen so far: uncertain
    items, not all alike. focus=0 spreads the items over the feature space only. On MULAN scene with
    100 to 400 labelled rows focus 0.5 and 0 were level with or up to 0.005 mAP above random picks and
    focus 1 below them (benchmarks/RESULTS.md): a young model's uncertainty is a weak guide.

    Args:
        probs: (n_items, n_labels) the current model's probabilities on the unlabelled items.
        features: (n_items, n_features) their features (NaN = missing).
        focus: how much uncertainty counts, >= 0.
    Raises:
        ConfigError: n < 1 or more than the items, or focus < 0; DataError: shapes disagree.
    """
    p = np.asarray(probs, dtype=np.float64)
    x = np.asarray(features, dtype=np.float64)
    if p.ndim != 2 or x.ndim != 2 or len(p) != len(x):
        raise DataError(f"probabilities {p.shape} and features {x.shape} must be (items, labels) and (items, features) "
                        "for the same items")
    if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= len(p):
        raise ConfigError(f"n={n!r} is not a number of items from 1 to {len(p)}")
    if isinstance(focus, bool) or not isinstance(focus, (int, float)) or not focus >= 0:
        raise ConfigError(f"focus={focus!r} is not a number >= 0")
    score = uncertainty(p)
    weight = score ** focus
    mean, std = fit_standardization(x)
    z = standardize(x, mean, std).astype(np.float64)
    rng = np.random.default_rng(seed)
    chosen = [int(np.argmax(score))]
    left = np.ones(len(z), dtype=bool)
    left[chosen[0]] = False
    nearest = ((z - z[chosen[0]]) ** 2).sum(axis=1)
    for _ in range(n - 1):
        odds = weight * nearest * left
        pick = int(rng.choice(len(z), p=odds / odds.sum())) if odds.sum() > 0 else int(np.flatnonzero(left)[0])
        chosen.append(pick)
        left[pick] = False
        nearest = np.minimum(nearest, ((z - z[pick]) ** 2).sum(axis=1))
    return np.asarray(chosen)


def write_label_requests(path: str | Path, items: Sequence[str], *, label_names: Sequence[str]) -> Path:
    """Write a one-hot label file for `items` with every cell empty (= unknown) for a person to fill in
    with 0 or 1; `tagnet` reads it back as is (cells left empty stay unknown). Returns `path`.

    Raises:
        DataError: no items or no label names.
    """
    if not len(items) or not len(label_names):
        raise DataError(f"a label file needs items and label names, got {len(items)} items and {len(label_names)} labels")
    names = sorted(label_names)
    shape = (len(items), len(names))
    table = LabelTable(list(items), names, np.zeros(shape, np.uint8), np.zeros(shape, bool), "onehot")
    return write_labels(table, path)
