"""The random forest as a table-head candidate: its out-of-fold probabilities for the CV (when its cost fits the time
budget) and the chosen forest fitted into the model's head."""

from __future__ import annotations

import time

import numpy as np
from rich.console import Console

from tagnet.engine import PhaseResult
from tagnet.models import TagnetModel
from tagnet.models.trees import ForestHead, checked_forest_onnx, fit_forest, forest_probabilities, missing_packages
from tagnet.training.budget import TimeBudget, duration

CHECK_ROWS = 1000  # training rows the ONNX graph of a forest trained on every row is checked on
PROBE_TREES = 4  # trees of the small fit that estimates the forest's CV cost under a time budget
Folds = list[tuple[np.ndarray, np.ndarray]]


def estimated_cv_seconds(x: np.ndarray, targets: np.ndarray, known: np.ndarray, folds: Folds, *, trees: int,
                         seed: int) -> float:
    """Seconds the forest's CV would take: a PROBE_TREES-tree fit on the first fold's training rows, timed, scaled to
    `trees` trees and every fold."""
    started = time.perf_counter()
    rows = folds[0][0]
    fit_forest(x[rows], targets[rows], known[rows], trees=PROBE_TREES, seed=seed)
    return (time.perf_counter() - started) * trees / PROBE_TREES * len(folds)


def forest_out_of_fold(x: np.ndarray, targets: np.ndarray, known: np.ndarray, folds: Folds, *, trees: int, seed: int,
                       budget: TimeBudget | None, console: Console) -> tuple[np.ndarray, float] | None:
    """(out-of-fold probabilities, seconds) of a `trees`-tree forest (tagnet.models.trees.fit_forest) on `folds`; None,
    said in a line, when the packages it needs are missing or (under a time budget) its estimated cost does not fit
    the time left."""
    missing = missing_packages()
    if missing:
        console.print(f"  forest   left out: it needs {', '.join(missing)} (pip install 'tagnet[trees]')")
        return None
    started = time.perf_counter()
    if budget is not None and budget.seconds is not None:
        estimate = estimated_cv_seconds(x, targets, known, folds, trees=trees, seed=seed)
        if not budget.fits(estimate):
            console.print("  " + budget.note(f"forest left out: its {len(folds)}-fold CV would take about "
                                             f"{duration(estimate)}, {duration(max(0.0, budget.left()))} are left"))
            return None
    oof = np.zeros(targets.shape, np.float32)
    for k, (train_rows, held) in enumerate(folds):
        forest = fit_forest(x[train_rows], targets[train_rows], known[train_rows], trees=trees, seed=seed + k)
        oof[held] = forest_probabilities(forest, x[held])
    return oof, time.perf_counter() - started


def fit_forest_head(model: TagnetModel, x: np.ndarray, targets: np.ndarray, known: np.ndarray, rows: np.ndarray,
                    val_rows: np.ndarray, *, trees: int, seed: int) -> PhaseResult:
    """The model's head made a forest fitted on `rows`, stored as ONNX checked against scikit-learn on `val_rows` (on
    at most CHECK_ROWS of the training rows when there are none); returns a PhaseResult with the validation rows'
    probabilities."""
    started = time.perf_counter()
    forest = fit_forest(x[rows], targets[rows], known[rows], trees=trees, seed=seed)
    check = val_rows if len(val_rows) else rows[:CHECK_ROWS]
    graph, probs = checked_forest_onnx(forest, x[check])
    model.head = ForestHead(graph)
    val = {"probs": probs[:len(val_rows)], "targets": targets[val_rows], "known": known[val_rows]}
    return PhaseResult(best_score=float("nan"), best_epoch=0, epochs_run=0, validation=val,
                       seconds=time.perf_counter() - started)
