"""Tree ensembles as table-head candidates (the random forest, gradient-boosted trees): their out-of-fold
probabilities for the CV (when their cost fits) and the chosen ensemble fitted into the model's head as ONNX-ML."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from rich.console import Console

from tagnet.config.settings import TrainConfig
from tagnet.engine import PhaseResult
from tagnet.errors import ModelError
from tagnet.models import TagnetModel
from tagnet.models.boosting import boosted_onnx, boosted_probabilities, fit_boosted
from tagnet.models.trees import PARITY_TOLERANCE, ForestHead, fit_forest, forest_onnx, forest_probabilities, \
    missing_packages
from tagnet.training.budget import TimeBudget, duration

CHECK_ROWS = 1000  # training rows the ONNX graph of an ensemble trained on every row is checked on
PROBE_SIZES = (2, 8)  # trees (or rounds) of the two small fits that estimate an ensemble's CV cost: fixed + per unit
PROBE_REPEATS = 2  # each probe fit timed this often, the fastest kept: one fit stalled by a busy core (OpenMP threads
# wait at every barrier) would otherwise be extrapolated to the whole CV (a 1 s CV estimated over 2 min, seen in a test)
PROBE_LABELS = 3  # labels a per-label ensemble's probe fits, those with the most rows of their rarer class (its cost
# is scaled to every label)
UNBUDGETED_SECONDS = 120.0  # without a time budget, gradient-boosted trees (a fit per label) estimated to take longer
# than this in their CV are left out; the forest (one fit for every label) is always compared
Folds = list[tuple[np.ndarray, np.ndarray]]


@dataclass(frozen=True)
class TreeKind:
    """A tree-ensemble candidate: how it fits (rows, targets, known, size, seed), gives probabilities and becomes
    ONNX bytes (float32 rows in), the setting that sizes it, and the unit of that size."""

    fit: Callable[[np.ndarray, np.ndarray, np.ndarray, int, int], Any]
    probabilities: Callable[[Any, np.ndarray], np.ndarray]
    onnx: Callable[[Any, int], bytes]
    setting: str
    unit: str
    per_label: bool  # a fit per label: probed on PROBE_LABELS labels, and held to UNBUDGETED_SECONDS without a budget


TREE_KINDS = {
    "forest": TreeKind(lambda x, t, k, size, seed: fit_forest(x, t, k, trees=size, seed=seed), forest_probabilities,
                       forest_onnx, "forest_trees", "trees", False),
    "boosted": TreeKind(lambda x, t, k, size, seed: fit_boosted(x, t, k, rounds=size, seed=seed),
                        boosted_probabilities, boosted_onnx, "boosted_rounds", "rounds", True),
}


def tree_size(config: TrainConfig, name: str) -> int:
    """Trees (forest) or boosting rounds (boosted) of candidate `name` under `config`."""
    return int(getattr(config, TREE_KINDS[name].setting))


def estimated_cv_seconds(kind: TreeKind, x: np.ndarray, targets: np.ndarray, known: np.ndarray, folds: Folds, *,
                         size: int, seed: int) -> float:
    """Seconds `kind`'s CV would take: fits of PROBE_SIZES on the first fold's training rows (after one untimed fit that
    pays the first call's costs; each the fastest of PROBE_REPEATS), a fixed cost plus a cost per tree or round, scaled
    to `size`, every fold and (per label) every label."""
    rows = folds[0][0]
    positives = np.where(known[rows], targets[rows] > 0, False).sum(0)
    both = np.minimum(positives, known[rows].sum(0) - positives)  # a label of one class fits no trees: not a probe
    labels = np.argsort(-both, kind="stable")[:PROBE_LABELS] if kind.per_label else np.arange(targets.shape[1])
    probe = (x[rows], targets[rows][:, labels], known[rows][:, labels])
    kind.fit(*probe, 1, seed)
    seconds = [min(_timed(kind.fit, *probe, probe_size, seed) for _ in range(PROBE_REPEATS)) for probe_size in PROBE_SIZES]
    per_unit = max(0.0, (seconds[1] - seconds[0]) / (PROBE_SIZES[1] - PROBE_SIZES[0]))
    one_fit = seconds[0] + per_unit * (size - PROBE_SIZES[0])
    return one_fit * targets.shape[1] / len(labels) * len(folds)


def _timed(function: Callable[..., Any], *args: Any) -> float:
    """Wall seconds of one call of `function(*args)`."""
    started = time.perf_counter()
    function(*args)
    return time.perf_counter() - started


def _cost_note(name: str, kind: TreeKind, estimate: float, folds: int, budget: TimeBudget | None) -> str | None:
    """Why candidate `name` is left out at an estimated CV cost of `estimate` seconds, or None when it fits."""
    if budget is not None and budget.seconds is not None:
        return None if budget.fits(estimate) else budget.note(
            f"{name} left out: its {folds}-fold CV would take about {duration(estimate)}, "
            f"{duration(max(0.0, budget.left()))} are left")
    if not kind.per_label or estimate <= UNBUDGETED_SECONDS:
        return None
    return (f"{name} left out: its {folds}-fold CV would take about {duration(estimate)}, more than "
            f"{duration(UNBUDGETED_SECONDS)} (a fit per label; --time-budget lets it in when it fits)")


def tree_out_of_fold(name: str, x: np.ndarray, targets: np.ndarray, known: np.ndarray, folds: Folds, *, size: int,
                     seed: int, budget: TimeBudget | None, console: Console) -> tuple[np.ndarray, float] | None:
    """(out-of-fold probabilities, seconds) of tree candidate `name` of `size` trees or rounds on `folds`; None, said in
    a line, when the packages it needs are missing or its estimated cost does not fit (_cost_note)."""
    missing = missing_packages()
    if missing:
        console.print(f"  {name:<8} left out: it needs {', '.join(missing)} (pip install 'tagnet[trees]')")
        return None
    kind, started = TREE_KINDS[name], time.perf_counter()
    if kind.per_label or (budget is not None and budget.seconds is not None):
        note = _cost_note(name, kind, estimated_cv_seconds(kind, x, targets, known, folds, size=size, seed=seed),
                          len(folds), budget)
        if note is not None:
            console.print("  " + note)
            return None
    oof = np.zeros(targets.shape, np.float32)
    for k, (train_rows, held) in enumerate(folds):
        oof[held] = kind.probabilities(kind.fit(x[train_rows], targets[train_rows], known[train_rows], size, seed + k),
                                       x[held])
    return oof, time.perf_counter() - started


def checked_tree_onnx(kind: TreeKind, fitted: Any, x: np.ndarray) -> tuple[bytes, np.ndarray]:
    """(`kind`'s ONNX bytes of `fitted`, its own probabilities of rows `x`), the model checked on those rows: ONNX
    Runtime's probabilities within PARITY_TOLERANCE of the fitted model's, else ModelError."""
    model = kind.onnx(fitted, x.shape[1])
    expected = kind.probabilities(fitted, x)
    got = ForestHead(model).probabilities(torch.from_numpy(np.ascontiguousarray(x, np.float32)))
    diff = float(np.abs(got - expected).max()) if len(x) else 0.0
    if not diff <= PARITY_TOLERANCE:
        raise ModelError(f"the trees' ONNX model differs from the fitted model by up to {diff:.2e} on {len(x)} rows; "
                         f"expected at most {PARITY_TOLERANCE:.0e}")
    return model, expected


def fit_tree_head(name: str, model: TagnetModel, x: np.ndarray, targets: np.ndarray, known: np.ndarray,
                  rows: np.ndarray, val_rows: np.ndarray, *, size: int, seed: int) -> PhaseResult:
    """The model's head made tree candidate `name` fitted on `rows`, stored as ONNX checked against the fitted model on
    `val_rows` (on at most CHECK_ROWS of the training rows when there are none); returns a PhaseResult with the
    validation rows' probabilities."""
    kind, started = TREE_KINDS[name], time.perf_counter()
    fitted = kind.fit(x[rows], targets[rows], known[rows], size, seed)
    check = val_rows if len(val_rows) else rows[:CHECK_ROWS]
    graph, probs = checked_tree_onnx(kind, fitted, x[check])
    model.head = ForestHead(graph)
    val = {"probs": probs[:len(val_rows)], "targets": targets[val_rows], "known": known[val_rows]}
    return PhaseResult(best_score=float("nan"), best_epoch=0, epochs_run=0, validation=val,
                       seconds=time.perf_counter() - started)
