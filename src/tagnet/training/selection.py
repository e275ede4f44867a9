"""Choosing a feature table's head by k-fold cross-validation on the training rows: one-vs-rest L2 logistic
regression (C chosen by the same folds), the MLP, or an ensemble of MLP heads, scored for the run's objective."""

from __future__ import annotations

import dataclasses
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
from torch import nn

from tagnet.config.settings import TUNE_METRICS, TrainConfig
from tagnet.data.split import train_val_splits
from tagnet.engine import PhaseResult
from tagnet.errors import DataError
from tagnet.engine.headfit import fit_head, head_probabilities
from tagnet.evaluation.metrics import evaluate_probabilities
from tagnet.decisions.thresholds import Thresholds, fit_decisions, parse_objective

LINEAR_CS = (0.003, 0.01, 0.03, 0.1, 0.3)  # inverse L2 strength on standardised features, ascending
ENSEMBLE_HEADS = 5  # heads of the ensemble candidate (unless --ensemble K gives K); 5 and 10 scored alike on MULAN
CANDIDATES = ("linear", "mlp", "ensemble")  # simplest first: an exact tie goes to the simpler one
Validation = dict[str, np.ndarray]


@dataclass
class Selection:
    """What cross-validation chose: the candidate, the metric, each candidate's fold scores and time, the linear C and
    the number of heads of the chosen model."""

    choice: str
    metric: str
    folds: int = 0
    candidates: dict[str, dict[str, Any]] = field(default_factory=dict)
    C: float | None = None
    heads: int = 1
    threshold: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-able: {"choice", "metric", "folds", "C", "heads", "candidates": {name: {mean, std, seconds, ...}},
        "threshold": the p >= 0.5 and CV-fitted global rules' CV Hamming loss and the threshold kept (objective
        hamming at the default p >= 0.5 only)}."""
        return {"choice": self.choice, "metric": self.metric, "folds": self.folds, "C": self.C, "heads": self.heads,
                "candidates": self.candidates, **({"threshold": self.threshold} if self.threshold else {})}

    def applied(self, config: TrainConfig) -> TrainConfig:
        """`config` training the chosen model: a linear head (head_hidden 0) for "linear", `heads` MLP heads for
        "ensemble", unchanged for "mlp"."""
        if self.threshold:
            config = dataclasses.replace(config, fixed_threshold=self.threshold["value"])
        if self.choice == "linear":
            return dataclasses.replace(config, head_hidden=0)
        if self.choice == "ensemble" and not config.cv:
            return dataclasses.replace(config, ensemble=self.heads)
        return config


def select_metric(config: TrainConfig) -> str:
    """The metric candidates are compared on: select_metric if given, else the objective's own: Hamming loss for
    objective hamming or fixed thresholds, micro-F1 (at thresholds fitted out of fold) for f1, else mAP."""
    if config.select_metric:
        return config.select_metric
    kind = parse_objective(config.objective or "f1").kind
    if kind == "hamming" or config.threshold_mode == "fixed":
        return "hamming_loss"
    return "micro_f1" if kind == "f1" else "mAP"


def candidate_names(config: TrainConfig) -> tuple[str, ...]:
    """The candidates --select compares: every one for auto (no single MLP when --ensemble or --cv asks for several
    heads), else the one named."""
    if config.select != "auto":
        return (config.select,)
    return CANDIDATES if config.ensemble == 1 else ("linear", "ensemble")


def ensemble_heads(config: TrainConfig) -> int:
    """Heads of the ensemble candidate: config.ensemble when it asks for several, else ENSEMBLE_HEADS."""
    return config.ensemble if config.ensemble > 1 else ENSEMBLE_HEADS


def cv_folds(targets: np.ndarray, known: np.ndarray, *, folds: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """(training rows, held-out rows) of `folds` multilabel-stratified folds (data.split.train_val_splits); raises
    DataError for too few rows."""
    if len(targets) < 2 * folds:
        raise DataError(f"cv_folds={folds} needs at least {2 * folds} training rows, got {len(targets)}; "
                        "lower cv_folds or choose the head with --select mlp|linear")
    return train_val_splits(targets, known, folds=folds, seed=seed)


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
    """`metric` on each fold's held-out rows of out-of-fold probabilities `val`, at thresholds fitted by the run's
    rule on the other folds' rows (so a rule that adapts to its data is scored on rows it was not fitted on)."""
    scores = []
    for train_rows, rows in folds:
        fitted = thresholds_for({key: value[train_rows] for key, value in val.items()})
        part = {key: value[rows] for key, value in val.items()}
        report = evaluate_probabilities(part["targets"], part["probs"], fitted,
                                        label_names=[str(j) for j in range(part["targets"].shape[1])],
                                        known=part["known"])
        value = getattr(report, metric)
        scores.append(float("nan") if value is None else float(value))
    return scores


def select_head(config: TrainConfig, x: np.ndarray, targets: np.ndarray, known: np.ndarray, *,
                make_head: Callable[[], nn.Module], thresholds_for: Callable[[Validation], Thresholds],
                console: Console) -> Selection:
    """Compare the candidates config.select names by config.cv_folds-fold CV on rows `x` (standardised).

    `make_head()` returns a new, untrained MLP head. In each fold the MLP candidate is one head trained as a single
    head is (early stopping on its own held-out part of the fold's training rows) and the ensemble candidate is
    ensemble_heads(config) such heads, each with its own held-out part, averaged (the first of them is the MLP
    candidate, so the MLP costs nothing extra); both are trained by tagnet.engine.headfit.fit_head. The linear candidate's
    C is the best of LINEAR_CS on the same folds (so its score is slightly optimistic). Every score is out of fold,
    at thresholds fitted on the other folds. Returns the Selection (without any CV when config.select names "mlp"
    or "ensemble")."""
    metric = select_metric(config)
    names = candidate_names(config)
    heads = ensemble_heads(config)
    if names == ("mlp",):
        return Selection("mlp", metric)
    if names == ("ensemble",):
        return Selection("ensemble", metric, heads=heads)
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
    chosen_oof = {"linear": linear_oof[LINEAR_CS.index(selection.C)]}
    selection.candidates["linear"] = _summary(by_c[selection.C], time.perf_counter() - started, C=selection.C)
    if "mlp" in names or "ensemble" in names:
        many = heads if "ensemble" in names else 1
        single = dataclasses.replace(config, ensemble=1)
        features = torch.as_tensor(x, dtype=torch.float32)
        oof = {"mlp": np.zeros(targets.shape, np.float32), "ensemble": np.zeros(targets.shape, np.float32)}
        seconds = {"mlp": 0.0, "ensemble": 0.0}
        for k, (train_rows, held) in enumerate(folds):
            for i, (rows, val_rows) in enumerate(train_val_splits(targets, known, rows=train_rows, heads=many,
                                                                  val_fraction=config.val_fraction, seed=config.seed)):
                started = time.perf_counter()
                head = make_head()
                fit_head(head, features, targets, known, rows, val_rows, config=single,
                         seed=config.seed + 1000 * k + i)
                probs = head_probabilities(head, features[torch.as_tensor(held)])
                spent = time.perf_counter() - started
                if i == 0:
                    oof["mlp"][held], seconds["mlp"] = probs, seconds["mlp"] + spent
                oof["ensemble"][held] += probs / many
                seconds["ensemble"] += spent
        for name in ("mlp", "ensemble"):
            if name in names:
                val = {"probs": oof[name], "targets": targets, "known": known}
                chosen_oof[name] = oof[name]
                extra = {"heads": heads} if name == "ensemble" else {}
                selection.candidates[name] = _summary(fold_scores(metric, val, folds, thresholds_for), seconds[name],
                                                      **extra)
    selection.choice = better(selection.candidates, key=lambda name: selection.candidates[name]["mean"])
    selection.heads = heads if selection.choice == "ensemble" else config.ensemble
    if (metric == "hamming_loss" and parse_objective(config.objective or "f1").kind == "hamming"
            and config.threshold_mode == "fixed" and config.fixed_threshold == 0.5):
        selection.threshold = _global_threshold(chosen_oof[selection.choice], targets, known, folds)
    for name, score in selection.candidates.items():
        detail = (f", C={score['C']}" if "C" in score else "") + (f", {score['heads']} heads" if "heads" in score else "")
        console.print(f"  {name:<8} {metric} {score['mean']:.4f} ± {score['std']:.4f} over {len(folds)} folds "
                      f"({score['seconds']:.1f} s{detail})")
    console.print(f"chose the {selection.choice} head{'s' if selection.heads > 1 else ''} by {len(folds)}-fold CV "
                  f"on {metric}")
    if selection.threshold:
        rule = selection.threshold
        console.print(f"  threshold: p >= 0.5 {rule['p>=0.5']['mean']:.4f}, one global threshold fitted on the other "
                      f"folds {rule['global']['mean']:.4f}: p >= {rule['value']:.3f} kept")
    return selection


def _global_threshold(probs: np.ndarray, targets: np.ndarray, known: np.ndarray,
                      folds: list[tuple[np.ndarray, np.ndarray]]) -> dict[str, Any]:
    """The Hamming-loss rule by the same CV: p >= 0.5 against one global threshold fitted for Hamming loss on the
    other folds' out-of-fold probabilities. The global one is kept (fitted on every row) only if its CV Hamming loss is
    lower; {"p>=0.5": summary, "global": summary, "value": the threshold kept}."""
    val = {"probs": probs, "targets": targets, "known": known}
    half = fold_scores("hamming_loss", val, folds, lambda part: Thresholds("fixed", [0.5] * targets.shape[1]))

    def global_rule(part: Validation) -> Thresholds:
        return fit_decisions(part["targets"], part["probs"], objective="hamming", mode="global",
                             known=part["known"]).thresholds

    fitted = fold_scores("hamming_loss", val, folds, global_rule)
    value = 0.5 if np.mean(fitted) >= np.mean(half) else float(global_rule(val).values[0])
    return {"p>=0.5": _summary(half, 0.0), "global": _summary(fitted, 0.0), "value": round(value, 6)}


def _summary(scores: list[float], seconds: float, **extra: Any) -> dict[str, Any]:
    return {"mean": float(np.nanmean(scores)), "std": float(np.nanstd(scores)), "folds": [round(s, 6) for s in scores],
            "seconds": round(seconds, 2), **extra}


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
