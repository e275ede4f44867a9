"""Choosing a feature table's head by k-fold cross-validation on the training rows: one-vs-rest L2 logistic
regression (C chosen by the same folds) or the MLP, scored for the run's objective."""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from rich.console import Console
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from threadpoolctl import threadpool_limits

from tagnet.config import TUNE_METRICS, TrainConfig
from tagnet.data.split import kfold_rows
from tagnet.data.table import LabelTable
from tagnet.engine import PhaseResult
from tagnet.errors import DataError
from tagnet.metrics import evaluate_probabilities
from tagnet.thresholds import Thresholds

LINEAR_CS = (0.003, 0.01, 0.03, 0.1, 0.3)  # inverse L2 strength on standardised features, ascending
Validation = dict[str, np.ndarray]


@dataclass
class Selection:
    """What cross-validation chose: the candidate, the metric, each candidate's fold scores and time, the linear C."""

    choice: str
    metric: str
    folds: int = 0
    candidates: dict[str, dict[str, Any]] = field(default_factory=dict)
    C: float | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-able: {"choice", "metric", "folds", "C", "candidates": {name: {mean, std, seconds, ...}}}."""
        return {"choice": self.choice, "metric": self.metric, "folds": self.folds, "C": self.C,
                "candidates": self.candidates}


def select_metric(config: TrainConfig) -> str:
    """The metric candidates are compared on: select_metric, else Hamming loss for fixed thresholds, else mAP."""
    return config.select_metric or ("hamming_loss" if config.threshold_mode == "fixed" else "mAP")


def cv_folds(targets: np.ndarray, known: np.ndarray, *, folds: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """(training rows, held-out rows) of `folds` multilabel-stratified folds (data.split.kfold_rows); raises
    DataError for too few rows."""
    if len(targets) < 2 * folds:
        raise DataError(f"cv_folds={folds} needs at least {2 * folds} training rows, got {len(targets)}; "
                        "lower cv_folds or choose the head with --select mlp|linear")
    table = LabelTable([str(i) for i in range(len(targets))], [str(j) for j in range(targets.shape[1])],
                       targets, known)
    every = np.arange(len(targets))
    return [(np.setdiff1d(every, held), held) for held in kfold_rows(table, folds=folds, seed=seed)]


def linear_probabilities(x: np.ndarray, coef: np.ndarray, intercept: np.ndarray) -> np.ndarray:
    """sigmoid(x @ coef.T + intercept), as the linear head computes it."""
    return (1.0 / (1.0 + np.exp(-(x @ coef.T + intercept)))).astype(np.float32)


def fit_linear(x: np.ndarray, targets: np.ndarray, known: np.ndarray, *, Cs: tuple[float, ...]
               ) -> list[tuple[np.ndarray, np.ndarray]]:
    """One-vs-rest L2 logistic regression on each label's known rows, for every C of `Cs` (warm-started in order).

    Returns [(coef (L, F), intercept (L,)) per C]. A label with one class on its rows gets zero weights and the
    logit of its (clipped) rate."""
    x = np.asarray(x, dtype=np.float64)  # lbfgs on float32 rows runs many times slower
    out = [(np.zeros((targets.shape[1], x.shape[1])), np.zeros(targets.shape[1])) for _ in Cs]
    for j in range(targets.shape[1]):
        rows = known[:, j]
        y = targets[rows, j]
        if len(y) == 0 or y.min() == y.max():
            rate = np.clip(y.mean() if len(y) else 0.5, 1e-3, 1 - 1e-3)
            for _, intercept in out:
                intercept[j] = np.log(rate / (1 - rate))
            continue
        model = LogisticRegression(max_iter=300, warm_start=True)
        for (coef, intercept), C in zip(out, Cs):
            model.set_params(C=C)
            # one BLAS thread: products this small lose more to thread contention than they gain (5-10x on 2 busy
            # cores); a few iterations short of tolerance at a large C changes nothing
            with warnings.catch_warnings(), threadpool_limits(1):
                warnings.simplefilter("ignore", ConvergenceWarning)
                model.fit(x[rows], y)
            coef[j], intercept[j] = model.coef_[0], model.intercept_[0]
    return out


def fold_scores(metric: str, val: Validation, folds: list[tuple[np.ndarray, np.ndarray]],
                thresholds_for: Callable[[Validation], Thresholds]) -> list[float]:
    """`metric` on each fold's held-out rows of out-of-fold `val`, at thresholds fitted on that fold by the run's rule."""
    scores = []
    for _, rows in folds:
        part = {key: value[rows] for key, value in val.items()}
        report = evaluate_probabilities(part["targets"], part["probs"], thresholds_for(part),
                                        label_names=[str(j) for j in range(part["targets"].shape[1])],
                                        known=part["known"])
        scores.append(float(getattr(report, metric)))
    return scores


def select_head(config: TrainConfig, x: np.ndarray, targets: np.ndarray, known: np.ndarray, *,
                train_mlp: Callable[[int, np.ndarray, np.ndarray], np.ndarray],
                thresholds_for: Callable[[Validation], Thresholds], console: Console) -> Selection:
    """Compare the candidates config.select names by config.cv_folds-fold CV on rows `x` (standardised).

    `train_mlp(fold, train_rows, held_rows)` returns the MLP's probabilities of the held-out rows. The linear
    candidate's C is the best of LINEAR_CS on the same folds (so its score, like the MLP's early-stopped one,
    is slightly optimistic). Returns the Selection ("mlp" without any CV when config.select is "mlp")."""
    metric = select_metric(config)
    names = ("linear", "mlp") if config.select == "auto" else (config.select,)
    if names == ("mlp",):
        return Selection("mlp", metric)
    folds = cv_folds(targets, known, folds=config.cv_folds, seed=config.seed)
    better = max if TUNE_METRICS[metric] == "maximize" else min
    selection = Selection("", metric, folds=len(folds))
    started = time.perf_counter()
    linear_oof = [np.zeros(targets.shape, np.float32) for _ in LINEAR_CS]
    for train_rows, held in folds:
        for oof, (coef, intercept) in zip(linear_oof, fit_linear(x[train_rows], targets[train_rows],
                                                                 known[train_rows], Cs=LINEAR_CS)):
            oof[held] = linear_probabilities(x[held], coef, intercept)
    by_c = {C: fold_scores(metric, {"probs": oof, "targets": targets, "known": known}, folds, thresholds_for)
            for C, oof in zip(LINEAR_CS, linear_oof)}
    selection.C = better(by_c, key=lambda C: np.mean(by_c[C]))
    selection.candidates["linear"] = _summary(by_c[selection.C], started, C=selection.C)
    if "mlp" in names:
        started = time.perf_counter()
        mlp_oof = np.zeros(targets.shape, np.float32)
        for k, (train_rows, held) in enumerate(folds):
            mlp_oof[held] = train_mlp(k, train_rows, held)
        val = {"probs": mlp_oof, "targets": targets, "known": known}
        selection.candidates["mlp"] = _summary(fold_scores(metric, val, folds, thresholds_for), started)
    selection.choice = better(selection.candidates, key=lambda name: selection.candidates[name]["mean"])
    for name, score in selection.candidates.items():
        console.print(f"  {name:<7} {metric} {score['mean']:.4f} ± {score['std']:.4f} over {len(folds)} folds "
                      f"({score['seconds']:.1f} s)" + (f", C={score['C']}" if "C" in score else ""))
    console.print(f"chose the {selection.choice} head by {len(folds)}-fold CV on {metric}")
    return selection


def _summary(scores: list[float], started: float, **extra: Any) -> dict[str, Any]:
    return {"mean": float(np.mean(scores)), "std": float(np.std(scores)), "folds": [round(s, 6) for s in scores],
            "seconds": round(time.perf_counter() - started, 2), **extra}


def fit_linear_heads(heads: list[torch.nn.Module], x: np.ndarray, targets: np.ndarray, known: np.ndarray,
                     splits: list[tuple[np.ndarray, np.ndarray]], *, C: float) -> list[PhaseResult]:
    """Each linear head (Dropout, Linear) fitted by logistic regression on its split's training rows: the
    coefficients copied into its Linear. Returns one PhaseResult per head with its held-out probabilities."""
    results = []
    for head, (train_rows, val_rows) in zip(heads, splits):
        started = time.perf_counter()
        [(coef, intercept)] = fit_linear(x[train_rows], targets[train_rows], known[train_rows], Cs=(C,))
        linear = head[1]
        with torch.no_grad():
            linear.weight.copy_(torch.from_numpy(coef))
            linear.bias.copy_(torch.from_numpy(intercept))
        val = {"probs": linear_probabilities(x[val_rows], coef, intercept), "targets": targets[val_rows],
               "known": known[val_rows]}
        results.append(PhaseResult(best_score=float("nan"), best_epoch=0, epochs_run=0, validation=val,
                                   seconds=time.perf_counter() - started))
    return results
