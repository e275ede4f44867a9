"""Choosing a feature table's head by k-fold cross-validation on the training rows: one-vs-rest L2 logistic
regression (C chosen by the same folds), the MLP, or an ensemble of MLP heads, scored for the run's objective."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from rich.console import Console
from torch import nn

from tagnet.config.settings import TUNE_METRICS, TrainConfig
from tagnet.data.split import train_val_splits
from tagnet.engine import PhaseResult, is_main_process
from tagnet.engine.linear import fit_logistic
from tagnet.errors import DataError
from tagnet.engine.headfit import fit_head, head_probabilities
from tagnet.evaluation.metrics import evaluate_probabilities
from tagnet.decisions.thresholds import Thresholds, fit_decisions, parse_objective

LINEAR_CS = (0.003, 0.01, 0.03, 0.1, 0.3)  # inverse L2 strength on standardised features, ascending
UNSCALED_CS = (0.03, 0.1, 0.3, 1.0, 3.0)  # the same on inputs not standardised (0/1, bag-of-words scaled by the max)
# how the linear head's penalty sees the head's inputs: as given (the modality's scaling), or each column divided by
# its standard deviation (a rare 0/1 feature then weighs as much as a common one)
LINEAR_SCALINGS = ("inputs", "standard")
CV_TOLERANCE = 1e-4  # the linear CV's gradient tolerance: choosing C needs fewer digits than the final fit (1e-5)
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
    scaling: str | None = None
    heads: int = 1
    threshold: dict[str, Any] | None = None
    epochs: int | None = None  # the epochs a final fit of the chosen MLP or ensemble trains (None: linear)
    oof: np.ndarray | None = field(default=None, repr=False)  # the chosen candidate's out-of-fold probabilities

    def to_dict(self) -> dict[str, Any]:
        """JSON-able: {"choice", "metric", "folds", "C", "heads", "epochs" (of a final MLP or ensemble fit), "candidates":
        {name: {mean, std, seconds, ...}},
        "threshold": the p >= 0.5 and CV-fitted global rules' CV Hamming loss and the threshold kept (objective
        hamming at the default p >= 0.5 only)}."""
        return {"choice": self.choice, "metric": self.metric, "folds": self.folds, "C": self.C,
                **({"scaling": self.scaling} if self.scaling else {}), "heads": self.heads,
                **({"epochs": self.epochs} if self.epochs else {}),
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
    objective hamming or fixed thresholds, micro-F1 (at thresholds fitted out of fold) for f1, else mAP (each
    objective's declared `metric`)."""
    if config.select_metric:
        return config.select_metric
    return "hamming_loss" if config.threshold_mode == "fixed" else parse_objective(config.objective or "f1").metric


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
    """One-vs-rest L2 logistic regression on each label's known rows, for every C of `Cs` (all labels at once,
    warm-started in order: tagnet.engine.linear.fit_logistic).

    Returns [(coef (L, F), intercept (L,)) per C]. A label with one class on its rows gets zero weights and the
    logit of its (clipped) rate."""
    return fit_logistic(x, targets, known, Cs=Cs)[0]


def linear_out_of_fold(x: np.ndarray, targets: np.ndarray, known: np.ndarray,
                       folds: list[tuple[np.ndarray, np.ndarray]], *, Cs: tuple[float, ...],
                       scale: np.ndarray | None = None) -> Iterator[np.ndarray]:
    """Out-of-fold probabilities (rows, L) of the linear head for each C of `Cs` in turn: every fold's heads for every
    C fitted in one problem (fit_logistic with the folds' training rows as row sets; `scale` as there), each fold's
    held-out rows scored by its own."""
    paths = fit_logistic(x, targets, known, Cs=Cs, row_sets=[train_rows for train_rows, _ in folds], scale=scale,
                         tol=CV_TOLERANCE)
    held_rows = [x[held] for _, held in folds]  # each fold's held-out rows, copied once for every C
    for c in range(len(Cs)):
        oof = np.zeros(targets.shape, np.float32)
        for (_, held), held_x, path in zip(folds, held_rows, paths):
            oof[held] = linear_probabilities(held_x, *path[c])
        yield oof


def linear_scale(x: np.ndarray, scaling: str) -> np.ndarray | None:
    """Column multipliers of LINEAR_SCALINGS' `scaling` on rows `x`: None for "inputs", 1 / std for "standard"
    (1 for a constant column)."""
    if scaling == "inputs":
        return None
    std = np.asarray(x, dtype=np.float64).std(axis=0)
    return np.where(std > 1e-8, 1.0 / np.where(std > 1e-8, std, 1.0), 1.0)


def linear_candidate(x: np.ndarray, targets: np.ndarray, known: np.ndarray, folds: list[tuple[np.ndarray, np.ndarray]],
                     *, score: Callable[[np.ndarray], list[float]], maximize: bool
                     ) -> tuple[float, str, list[float], np.ndarray]:
    """The linear head's scaling of LINEAR_SCALINGS and C with the best mean `score` (fold scores of out-of-fold
    probabilities): inputs already standardised (every column std within 0.25 of 1 on these rows) are taken as they are with LINEAR_CS; others both as they are with
    UNSCALED_CS and standardised with LINEAR_CS. Returns (C, scaling, its fold scores, its out-of-fold
    probabilities)."""
    best: tuple[float, str, list[float], np.ndarray] | None = None
    sign = 1.0 if maximize else -1.0
    standard = linear_scale(x, "standard")
    grids = ([("inputs", None, LINEAR_CS)] if np.allclose(standard, 1.0, atol=0.25) else
             [("inputs", None, UNSCALED_CS), ("standard", standard, LINEAR_CS)])
    for scaling, scale, Cs in grids:
        for C, oof in zip(Cs, linear_out_of_fold(x, targets, known, folds, Cs=Cs, scale=scale)):
            scores = score(oof)
            if best is None or sign * np.mean(scores) > sign * np.mean(best[2]):
                best = (C, scaling, scores, oof)
    assert best is not None
    return best


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
                console: Console, names: tuple[str, ...] | None = None, augmented: np.ndarray | None = None,
                refit: bool = False) -> Selection:
    """Compare the candidates `names` (default candidate_names(config)) by config.cv_folds-fold CV on rows `x`.

    `make_head()` returns a new, untrained head. In each fold the MLP candidate ("mlp", or "head": the run's own head,
    e.g. an image model's linear one) is one head trained as a single head is (early stopping on its own held-out part
    of the fold's training rows, with `augmented` copies of its training rows when given) and the ensemble candidate
    is ensemble_heads(config) such heads, each with its own held-out part, averaged (the first of them is the MLP
    candidate, so the MLP costs nothing extra); both are trained by tagnet.engine.headfit.fit_head, and their epochs
    for a final fit on every row are the median of the folds' best epochs. The linear candidate's C is the best of
    LINEAR_CS on the same folds (so its score is slightly optimistic). Every score is out of fold, at thresholds fitted
    on the other folds. Returns the Selection, with the chosen candidate's out-of-fold probabilities (without any CV
    when one MLP or ensemble is named and not `refit`)."""
    metric = select_metric(config)
    names = names or candidate_names(config)
    heads = ensemble_heads(config)
    if names in (("mlp",), ("ensemble",)) and not refit:
        return Selection(names[0], metric, heads=heads if names == ("ensemble",) else 1)
    folds = cv_folds(targets, known, folds=config.cv_folds, seed=config.seed)
    better = max if TUNE_METRICS[metric] == "maximize" else min
    selection = Selection("", metric, folds=len(folds))
    oofs, epochs = {}, {}
    if "linear" in names:
        started = time.perf_counter()
        selection.C, selection.scaling, scores, oofs["linear"] = linear_candidate(
            x, targets, known, folds, maximize=TUNE_METRICS[metric] == "maximize",
            score=lambda oof: fold_scores(metric, {"probs": oof, "targets": targets, "known": known}, folds,
                                          thresholds_for))
        selection.candidates["linear"] = _summary(scores, time.perf_counter() - started, C=selection.C,
                                                  scaling=selection.scaling)
    networks = [name for name in names if name != "linear"]
    if networks:
        oof, seconds, epochs = _network_out_of_fold(config, x, targets, known, folds, make_head=make_head,
                                                    heads=heads if "ensemble" in names else 1, augmented=augmented)
        for name in networks:
            kind = "ensemble" if name == "ensemble" else "mlp"
            oofs[name], epochs[name] = oof[kind], epochs[kind]
            val = {"probs": oof[kind], "targets": targets, "known": known}
            extra = {"heads": heads} if name == "ensemble" else {}
            selection.candidates[name] = _summary(fold_scores(metric, val, folds, thresholds_for), seconds[kind],
                                                  epochs=epochs[kind], **extra)
    selection.choice = better(selection.candidates, key=lambda name: selection.candidates[name]["mean"])
    selection.heads = heads if selection.choice == "ensemble" else config.ensemble
    selection.oof, selection.epochs = oofs[selection.choice], epochs.get(selection.choice)
    if (metric == "hamming_loss" and parse_objective(config.objective or "f1").kind == "hamming"
            and config.threshold_mode == "fixed" and config.fixed_threshold == 0.5):
        selection.threshold = _global_threshold(selection.oof, targets, known, folds)
    _say_selection(selection, console)
    return selection


def _network_out_of_fold(config: TrainConfig, x: np.ndarray, targets: np.ndarray, known: np.ndarray,
                         folds: list[tuple[np.ndarray, np.ndarray]], *, make_head: Callable[[], nn.Module], heads: int,
                         augmented: np.ndarray | None
                         ) -> tuple[dict[str, np.ndarray], dict[str, float], dict[str, int]]:
    """Out-of-fold probabilities of the MLP candidate (each fold's first head) and the ensemble (its `heads` heads
    averaged), their seconds, and their epochs for a final fit (the median of their heads' best epochs)."""
    single = dataclasses.replace(config, ensemble=1)
    features = torch.as_tensor(x, dtype=torch.float32)
    copies = None if augmented is None else torch.as_tensor(augmented, dtype=torch.float32)
    oof = {"mlp": np.zeros(targets.shape, np.float32), "ensemble": np.zeros(targets.shape, np.float32)}
    seconds = {"mlp": 0.0, "ensemble": 0.0}
    best: dict[str, list[int]] = {"mlp": [], "ensemble": []}
    for k, (train_rows, held) in enumerate(folds):
        held_features = features[torch.as_tensor(held)]  # scored by each of the fold's heads
        for i, (rows, val_rows) in enumerate(train_val_splits(targets, known, rows=train_rows, heads=heads,
                                                              val_fraction=config.val_fraction, seed=config.seed)):
            started = time.perf_counter()
            head = make_head()
            _, best_epoch = fit_head(head, features, targets, known, rows, val_rows, config=single,
                                     seed=config.seed + 1000 * k + i, augmented=copies)
            probs = head_probabilities(head, held_features)
            spent = time.perf_counter() - started
            if i == 0:
                oof["mlp"][held], seconds["mlp"] = probs, seconds["mlp"] + spent
                best["mlp"].append(best_epoch)
            oof["ensemble"][held] += probs / heads
            seconds["ensemble"] += spent
            best["ensemble"].append(best_epoch)
    return oof, seconds, {name: int(np.ceil(np.median(values))) for name, values in best.items()}


def _say_selection(selection: Selection, console: Console) -> None:
    """Each candidate's CV score and detail, then the choice."""
    for name, score in selection.candidates.items():
        detail = ((f", C={score['C']}, {score['scaling']} scaling" if "C" in score else "")
                  + (f", {score['heads']} heads" if "heads" in score else "")
                  + (f", best epoch {score['epochs']} (median)" if "epochs" in score else ""))
        console.print(f"  {name:<8} {selection.metric} {score['mean']:.4f} ± {score['std']:.4f} over "
                      f"{selection.folds} folds ({score['seconds']:.1f} s{detail})")
    if len(selection.candidates) > 1:
        console.print(f"chose the {selection.choice} head{'s' if selection.heads > 1 else ''} by {selection.folds}-fold "
                      f"CV on {selection.metric}")
    if selection.threshold:
        rule = selection.threshold
        console.print(f"  threshold: p >= 0.5 {rule['p>=0.5']['mean']:.4f}, one global threshold fitted on the other "
                      f"folds {rule['global']['mean']:.4f}: p >= {rule['value']:.3f} kept")


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
                     splits: list[tuple[np.ndarray, np.ndarray]], *, C: float, scaling: str | None = None
                     ) -> list[PhaseResult]:
    """Each linear head (Dropout, Linear) fitted by logistic regression on its split's training rows (every head in
    one problem: fit_logistic with the splits' training rows as row sets, the penalty seeing the columns as
    LINEAR_SCALINGS' `scaling` says, default "inputs"): the coefficients copied into its Linear.
    Returns one PhaseResult per head with its held-out probabilities (the seconds shared out evenly)."""
    started = time.perf_counter()
    rows = np.unique(np.concatenate([train_rows for train_rows, _ in splits]))
    paths = fit_logistic(x, targets, known, Cs=(C,), row_sets=[train_rows for train_rows, _ in splits],
                         scale=linear_scale(x[rows], scaling or "inputs"))
    seconds = (time.perf_counter() - started) / len(splits)
    results = []
    for head, (_, val_rows), [(coef, intercept)] in zip(heads, splits, paths):
        linear = head[1]
        with torch.no_grad():
            linear.weight.copy_(torch.from_numpy(coef))
            linear.bias.copy_(torch.from_numpy(intercept))
        val = {"probs": linear_probabilities(x[val_rows], coef, intercept), "targets": targets[val_rows],
               "known": known[val_rows]}
        results.append(PhaseResult(best_score=float("nan"), best_epoch=0, epochs_run=0, validation=val,
                                   seconds=seconds))
    return results


def fit_final_heads(heads: list[torch.nn.Module], x: np.ndarray, targets: np.ndarray, known: np.ndarray,
                    selection: Selection, *, config: TrainConfig, augmented: np.ndarray | None = None
                    ) -> list[PhaseResult]:
    """Every head fitted on every row with what the CV of `selection` chose: the linear head by logistic regression at
    its C and scaling (fit_linear_heads), an MLP or ensemble member for selection.epochs of config.epochs' schedule
    without early stopping (fit_head, member k seeded config.seed + k, with `augmented` copies of the rows when
    given). Returns one PhaseResult per head whose validation is the CV's out-of-fold probabilities of every row (the
    run's validation report is then the out-of-fold estimate)."""
    started = time.perf_counter()
    rows = np.arange(len(targets))
    if selection.choice == "linear":
        fit_linear_heads(heads, x, targets, known, [(rows, rows)] * len(heads), C=selection.C,
                         scaling=selection.scaling)
    else:
        features = torch.as_tensor(x, dtype=torch.float32)
        copies = None if augmented is None else torch.as_tensor(augmented, dtype=torch.float32)
        single = dataclasses.replace(config, ensemble=1)
        for k, head in enumerate(heads):
            fit_head(head, features, targets, known, rows, None, config=single, seed=config.seed + k,
                     augmented=copies, stop_after=selection.epochs)
    seconds = (time.perf_counter() - started) / len(heads)
    val = {"probs": selection.oof, "targets": targets, "known": known}
    return [PhaseResult(best_score=float("nan"), best_epoch=selection.epochs or 0, epochs_run=selection.epochs or 0,
                        validation=val, seconds=seconds, is_global_zero=is_main_process()) for _ in heads]
