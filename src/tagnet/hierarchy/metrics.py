"""Hierarchical scores: precision, recall and F1 with ancestors included (Kiritchenko et al. 2005), and per depth."""

from __future__ import annotations

from typing import Any

import numpy as np

from tagnet.hierarchy.tree import Tree


def hierarchical_prf(targets: np.ndarray, chosen: np.ndarray, tree: Tree,
                     known: np.ndarray | None = None) -> dict[str, float]:
    """Hierarchical precision, recall and F1 (Kiritchenko, Matwin, Nock, Famili 2005): each item's true and predicted
    label sets are augmented with all their ancestors, then hP = sum |P' & T'| / sum |P'|, hR = sum |P' & T'| / sum |T'|
    (micro-summed over items, on the known cells), hF1 their harmonic mean; 0 where a sum is 0."""
    mask = np.ones(np.shape(targets), dtype=bool) if known is None else np.asarray(known, dtype=bool)
    truth = tree.with_ancestors(targets) & mask
    said = tree.with_ancestors(chosen) & mask
    both, n_said, n_true = int((truth & said).sum()), int(said.sum()), int(truth.sum())
    precision = both / n_said if n_said else 0.0
    recall = both / n_true if n_true else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": precision, "recall": recall, "f1": f1}


def per_depth(targets: np.ndarray, chosen: np.ndarray, ap: np.ndarray, tree: Tree,
              known: np.ndarray) -> list[dict[str, Any]]:
    """For each depth (1 = the roots): its labels, micro precision/recall/F1 over their known cells, and mAP (mean of
    the per-label AP `ap` over its labels that have one; None without any)."""
    truth, said, mask = np.asarray(targets).astype(bool), np.asarray(chosen, dtype=bool), np.asarray(known, dtype=bool)
    rows = []
    for level in range(1, tree.levels + 1):  # one vectorised pass per level, never per label
        cols = np.flatnonzero(tree.depth == level)
        t, s, m = truth[:, cols], said[:, cols], mask[:, cols]
        tp, fp, fn = int((t & s & m).sum()), int((~t & s & m).sum()), int((t & ~s & m).sum())
        values = ap[cols][np.isfinite(ap[cols])]
        rows.append({"depth": level, "labels": len(cols),
                     "micro_precision": tp / (tp + fp) if tp + fp else 0.0,
                     "micro_recall": tp / (tp + fn) if tp + fn else 0.0,
                     "micro_f1": 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 0.0,
                     "mAP": float(values.mean()) if len(values) else None})
    return rows


def hierarchy_scores(targets: np.ndarray, chosen: np.ndarray, ap: np.ndarray, tree: Tree,
                     known: np.ndarray) -> dict[str, Any]:
    """What a report says of a hierarchy: hierarchical precision/recall/F1, the decisions that break it (a label
    without its parent) and the per-depth scores."""
    return {**hierarchical_prf(targets, chosen, tree, known), "inconsistent": tree.inconsistent(chosen), "per_depth": per_depth(targets, chosen, ap, tree, known)}
