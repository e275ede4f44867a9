"""Choosing a feature table's head by k-fold cross-validation on the training rows: one-vs-rest L2 logistic
regression (C chosen by the same folds), the MLP, or an ensemble of MLP heads, scored for the run's objective."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import scipy.sparse as sp
import torch
from rich.console import Console
from torch import nn

from tagnet.config.settings import TUNE_METRICS, TrainConfig
from tagnet.data.split import train_val_splits
from tagnet.engine import PhaseResult, is_main_process
from tagnet.engine.linear import fit_logistic, logistic_path
from tagnet.errors import ConfigError, DataError
from tagnet.engine.headfit import fit_head, fit_seed_mean, head_probabilities, linear_only, rows_of
from tagnet.evaluation.metrics import evaluate_probabilities
from tagnet.training.budget import TimeBudget
from tagnet.training.recalibration import RECALIBRATED_LOSSES
from tagnet.training.trees import TREE_KINDS, tree_out_of_fold, tree_size
from tagnet.decisions.calibration import PlattScaling, fit_platt, fit_temperature, platt_threshold
from tagnet.decisions.thresholds import Thresholds, parse_objective
from tagnet.models.base import fold_logit_map

# inverse L2 strengths on standardised features, ascending; the path search leaves a grid at the first C past its
# optimum, so the top values are fitted only while the CV score still rises there (a best C on a grid's edge is not
# an optimum found): they cost nothing where the optimum lies lower
LINEAR_CS = (0.003, 0.01, 0.03, 0.1, 0.3, 1.0)
UNSCALED_CS = (0.03, 0.1, 0.3, 1.0, 3.0, 10.0, 30.0)  # the same on inputs not standardised (0/1, bag-of-words scaled by
# the max)
# how the linear head's penalty sees the head's inputs: as given (the modality's scaling), or each column divided by
# its standard deviation (a rare 0/1 feature then weighs as much as a common one)
LINEAR_SCALINGS = ("inputs", "standard")
CV_TOLERANCE = 1e-4  # the linear CV's gradient tolerance (scikit-learn's default, as the final fit's)
ENSEMBLE_HEADS = 5  # heads of the ensemble candidate (unless --ensemble K gives K); 5 and 10 scored alike on MULAN
# training rows x labels above which the network candidates are screened first (speed rule) and the tree candidates are
# left out (each forest leaf holds every label's rate: memory grows with rows x labels x trees; boosting fits per label)
SCREEN_CELLS = 250_000
TREE_DENSE_CELLS = 20_000_000  # rows x features of a sparse table the tree candidates take dense (80 MB in float32)
SCREEN_FOLDS = 2  # the folds an MLP head is screened on against the linear head
# the label smoothings the CV of a run's own head tries with --label-smoothing-cv (smoothing_grid), smallest first: a tie keeps
# the smaller; 0.1 raised pooled micro-F1 by 0.003-0.008 in a nested CV of the photos' head (benchmarks/RESULTS.md)
LABEL_SMOOTHINGS = (0.0, 0.1)
CANDIDATES = ("linear", "mlp", "ensemble")  # simplest first: an exact tie goes to the simpler one (then the trees)
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
    held: np.ndarray | None = field(default=None, repr=False)  # the rows `oof` covers (None: every row)
    label_smoothing: float | None = None  # what the CV chose for the network heads (None: not searched)
    calibration: PlattScaling | None = field(default=None, repr=False)  # the Platt maps `oof` went through (a single
    # network head trained with a loss of RECALIBRATED_LOSSES: `recalibrated`), folded into the final head

    def to_dict(self) -> dict[str, Any]:
        """JSON-able: {"choice", "metric", "folds", "C", "heads", "epochs" (of a final MLP or ensemble fit), "candidates":
        {name: {mean, std, seconds, ...}},
        "threshold": the p >= 0.5 and CV-fitted global rules' CV Hamming loss and the threshold kept (objective
        hamming at the default p >= 0.5 only)}."""
        return {"choice": self.choice, "metric": self.metric, "folds": self.folds, "C": self.C,
                **({"scaling": self.scaling} if self.scaling else {}), "heads": self.heads,
                **({"epochs": self.epochs} if self.epochs else {}),
                **({"label_smoothing": self.label_smoothing} if self.label_smoothing is not None else {}),
                **({"calibration": {"method": "platt", **dataclasses.asdict(self.calibration)}} if self.calibration else {}),
                "candidates": self.candidates, **({"threshold": self.threshold} if self.threshold else {})}

    def applied(self, config: TrainConfig) -> TrainConfig:
        """`config` training the chosen model: a linear head (head_hidden 0) for "linear", `heads` MLP heads for
        "ensemble", unchanged for "mlp"; the label smoothing the CV chose, if it searched one."""
        if self.label_smoothing is not None and self.choice != "linear":
            config = dataclasses.replace(config, label_smoothing=self.label_smoothing)
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
    heads; the random forest of config.forest_trees trees and the gradient-boosted trees of config.boosted_rounds
    rounds, each unless its size is 0, several heads or a label hierarchy: their export graph does not apply the
    hierarchy's rule), else the one named."""
    if config.select != "auto":
        return (config.select,)
    hierarchy = config.hierarchy or config.hierarchy_separator
    trees = tuple(name for name in TREE_KINDS if tree_size(config, name)) \
        if config.ensemble == 1 and not config.cv and not hierarchy else ()
    return (CANDIDATES if config.ensemble == 1 else ("linear", "ensemble")) + trees


def smoothing_grid(config: TrainConfig, names: tuple[str, ...] | None) -> tuple[float, ...]:
    """The label smoothings the CV of candidates `names` tries: LABEL_SMOOTHINGS for the run's own single head ("head",
    an image model's) with config.label_smoothing_cv (the default) and no config.label_smoothing, else none (the given
    value, or 0, trains). Smoothing raised the photos' micro-F1 by 0.0045 in a nested CV (4 seeds); the probabilities
    it pulls toward 0.5 are re-spread by folded_temperatures (out-of-fold calibration error 0.059 -> 0.013)."""
    wanted = config.label_smoothing_cv and config.label_smoothing is None
    return LABEL_SMOOTHINGS if names == ("head",) and wanted else ()


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


def fit_linear(x: np.ndarray, targets: np.ndarray, known: np.ndarray, *, Cs: tuple[float, ...],
               tol: float = CV_TOLERANCE) -> list[tuple[np.ndarray, np.ndarray]]:
    """One-vs-rest L2 logistic regression on each label's known rows, for every C of `Cs` (all labels at once,
    warm-started in order: tagnet.engine.linear.fit_logistic, to gradient tolerance `tol`).

    Returns [(coef (L, F), intercept (L,)) per C]. A label with one class on its rows gets zero weights and the
    logit of its (clipped) rate."""
    return fit_logistic(x, targets, known, Cs=Cs, tol=tol)[0]


def linear_out_of_fold(x: np.ndarray, targets: np.ndarray, known: np.ndarray,
                       folds: list[tuple[np.ndarray, np.ndarray]], *, Cs: tuple[float, ...],
                       scale: np.ndarray | None = None) -> Iterator[np.ndarray]:
    """Out-of-fold probabilities (rows, L) of the linear head for each C of `Cs` in turn: every fold's heads fitted
    in one problem (tagnet.engine.linear.logistic_path with the folds' training rows as row sets; `scale` as there),
    one C at a time (a C is fitted only when its turn comes: a caller that stops early pays for no more), each
    fold's held-out rows scored by its own."""
    paths = logistic_path(x, targets, known, Cs=Cs, row_sets=[train_rows for train_rows, _ in folds], scale=scale,
                          tol=CV_TOLERANCE)
    held_rows = [x[held] for _, held in folds]  # each fold's held-out rows, copied once for every C
    for fitted in paths:
        oof = np.zeros(targets.shape, np.float32)
        for (_, held), held_x, (coef, intercept) in zip(folds, held_rows, fitted):
            oof[held] = linear_probabilities(held_x, coef, intercept)
        yield oof


def linear_scale(x: np.ndarray, scaling: str) -> np.ndarray | None:
    """Column multipliers of LINEAR_SCALINGS' `scaling` on rows `x`: None for "inputs", 1 / std for "standard"
    (1 for a constant column)."""
    if scaling == "inputs":
        return None
    if sp.issparse(x):
        mean = np.asarray(x.mean(axis=0), dtype=np.float64).ravel()
        std = np.sqrt(np.maximum(np.asarray(x.multiply(x).mean(axis=0), dtype=np.float64).ravel() - mean ** 2, 0.0))
    else:
        std = np.asarray(x, dtype=np.float64).std(axis=0)
    return np.where(std > 1e-8, 1.0 / np.where(std > 1e-8, std, 1.0), 1.0)


def linear_candidate(x: np.ndarray, targets: np.ndarray, known: np.ndarray, folds: list[tuple[np.ndarray, np.ndarray]],
                     *, score: Callable[[np.ndarray], list[float]], maximize: bool,
                     screen_score: Callable[[np.ndarray], list[float]] | None = None
                     ) -> tuple[float, str, list[float], np.ndarray, dict[str, float]]:
    """The linear head's scaling of LINEAR_SCALINGS and C with the best mean `score` (fold scores of out-of-fold
    probabilities): inputs already standardised (every column std within 0.25 of 1 on these rows) are taken as they
    are with LINEAR_CS; others both as they are with UNSCALED_CS and standardised with LINEAR_CS.

    Each scaling's grid is searched along the regularisation path (ascending C, warm-started) and left at the first
    C whose mean score is worse than the best of that path so far: the CV score of L2 logistic regression rises to
    one optimum in C and falls after it (more C, more fitting), and the larger C values are the slow ones to fit.
    With `screen_score` (fold scores of probabilities out of the first SCREEN_FOLDS folds, at many rows x labels) the
    scaling is chosen first by the same search on those folds alone, and only its grid goes on to the other folds
    (the screened folds' fits are kept: the chosen grid's C is still searched on every fold).
    Returns (C, scaling, its fold scores, its out-of-fold probabilities, each scaling's screened mean score)."""
    sign = 1.0 if maximize else -1.0
    standard = linear_scale(x, "standard")
    grids = ([("inputs", None, LINEAR_CS)] if np.allclose(standard, 1.0, atol=0.25) else
             [("inputs", None, UNSCALED_CS), ("standard", standard, LINEAR_CS)])
    screened: dict[str, float] = {}
    if screen_score is not None and len(grids) > 1 and len(folds) > SCREEN_FOLDS:
        paths = {name: _Kept(linear_out_of_fold(x, targets, known, folds[:SCREEN_FOLDS], Cs=Cs, scale=scale))
                 for name, scale, Cs in grids}
        screened = {name: float(np.mean(_path_search(paths[name], screen_score, sign)[1])) for name, _, _ in grids}
        name, scale, Cs = max(grids, key=lambda grid: sign * screened[grid[0]])
        rest = _Kept(linear_out_of_fold(x, targets, known, folds[SCREEN_FOLDS:], Cs=Cs, scale=scale))
        kept = paths.pop(name)
        paths.clear()  # the other scaling's fits are done with
        grids = [(name, (kept[i] + rest[i] for i in range(len(Cs))), Cs)]
    else:
        grids = [(name, linear_out_of_fold(x, targets, known, folds, Cs=Cs, scale=scale), Cs)
                 for name, scale, Cs in grids]
    best: tuple[float, str, list[float], np.ndarray] | None = None
    for name, oofs, Cs in grids:
        at, scores, oof = _path_search(oofs, score, sign)
        if best is None or sign * np.mean(scores) > sign * np.mean(best[2]):
            best = (Cs[at], name, scores, oof)
    assert best is not None
    return (*best, screened)


class _Kept:
    """The items of an iterator by index, each drawn from it when first asked for and kept (a path's fits reused
    past the point where one search left it)."""

    def __init__(self, items: Iterator[np.ndarray]):
        self.items, self.kept = items, []

    def __getitem__(self, i: int) -> np.ndarray:
        while len(self.kept) <= i:
            self.kept.append(next(self.items))
        return self.kept[i]

    def __iter__(self) -> Iterator[np.ndarray]:
        i = 0
        while True:
            try:
                yield self[i]
            except StopIteration:
                return
            i += 1


def _path_search(oofs: Iterable[np.ndarray], score: Callable[[np.ndarray], list[float]], sign: float
                 ) -> tuple[int, list[float], np.ndarray]:
    """The index, fold scores and out-of-fold probabilities of the best mean `score` (times `sign`) along `oofs`,
    drawn until the first worse than the best so far (past the path's optimum)."""
    best: tuple[int, list[float], np.ndarray] | None = None
    for i, oof in enumerate(oofs):
        scores = score(oof)
        if best is not None and sign * np.mean(scores) < sign * np.mean(best[1]):
            break
        if best is None or sign * np.mean(scores) > sign * np.mean(best[1]):
            best = (i, scores, oof)
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
                console: Console, budget: TimeBudget | None = None, names: tuple[str, ...] | None = None,
                augmented: np.ndarray | None = None, refit: bool = False) -> Selection:
    """Compare the candidates `names` (default candidate_names(config)) by config.cv_folds-fold CV on rows `x`.

    `make_head()` returns a new, untrained head. In each fold the MLP candidate ("mlp", or "head": the run's own head,
    e.g. an image model's linear one) is one head trained as a single head is (early stopping on its own held-out part
    of the fold's training rows, with `augmented` copies of its training rows when given) and the ensemble candidate
    is ensemble_heads(config) such heads, each with its own held-out part, averaged (the first of them is the MLP
    candidate, so the MLP costs nothing extra); both are trained by tagnet.engine.headfit.fit_head, and their epochs
    for a final fit on every row are the median of the folds' best epochs; at many rows x labels they are screened
    first (screened_networks). The linear candidate's scaling and C are the best on the same folds (so its score is
    slightly optimistic; at many rows x labels the scaling is screened on SCREEN_FOLDS folds first: linear_candidate).
    A tree candidate (tagnet.training.trees: the forest, the gradient-boosted trees) is left out, said in a line, when
    its estimated CV cost does not fit `budget` (boosted: trees.UNBUDGETED_SECONDS without one). Every score is out of
    fold, at thresholds fitted on the other folds. The run's own head ("head") with
    --label-smoothing-cv (the default) and no label smoothing given also has its smoothing chosen so, from LABEL_SMOOTHINGS
    (network_candidates).
    Returns the Selection, with the chosen candidate's out-of-fold probabilities (without any CV when one MLP,
    ensemble or tree is named and not `refit`); ConfigError when the one named tree is left out."""
    metric = select_metric(config)
    names = names or candidate_names(config)
    heads = ensemble_heads(config)
    if names in (("mlp",), ("ensemble",), *((name,) for name in TREE_KINDS)) and not refit:
        return Selection(names[0], metric, heads=heads if names == ("ensemble",) else 1)
    folds = cv_folds(targets, known, folds=config.cv_folds, seed=config.seed)
    better = max if TUNE_METRICS[metric] == "maximize" else min
    selection = Selection("", metric, folds=len(folds))
    oofs, epochs = {}, {}
    if "linear" in names:
        started = time.perf_counter()
        def scored(on: list[tuple[np.ndarray, np.ndarray]]) -> Callable[[np.ndarray], list[float]]:
            return lambda oof: fold_scores(metric, {"probs": oof, "targets": targets, "known": known}, on,
                                           thresholds_for)

        selection.C, selection.scaling, scores, oofs["linear"], scalings = linear_candidate(
            x, targets, known, folds, maximize=TUNE_METRICS[metric] == "maximize", score=scored(folds),
            screen_score=scored(screen_folds(folds)) if targets.size > SCREEN_CELLS else None)
        selection.candidates["linear"] = score_summary(scores, time.perf_counter() - started, C=selection.C,
                                                  scaling=selection.scaling,
                                                  **({"scalings_screened": scalings} if scalings else {}))
        screened = screened_networks(config, names, x, targets, known, folds, oofs["linear"], make_head=make_head,
                                     thresholds_for=thresholds_for,
                                     linear_seconds=selection.candidates["linear"]["seconds"])
        if screened is not None:
            selection.candidates["mlp"] = screened
            names = tuple(name for name in names if name not in ("mlp", "ensemble"))
    networks = tuple(name for name in names if name != "linear" and name not in TREE_KINDS)
    if networks:
        smoothings = smoothing_grid(config, names)
        found = network_candidates(config, networks, x, targets, known, folds, make_head=make_head, augmented=augmented,
                                   score=lambda oof: fold_scores(metric, {"probs": oof, "targets": targets,
                                                                          "known": known}, folds, thresholds_for),
                                   maximize=TUNE_METRICS[metric] == "maximize", smoothings=smoothings)
        for name, (summary, oof, epoch) in found.items():
            selection.candidates[name], oofs[name], epochs[name] = summary, oof, epoch
    trees = [name for name in TREE_KINDS if name in names]
    small_sparse = bool(trees) and sp.issparse(x) and x.shape[0] * x.shape[1] <= TREE_DENSE_CELLS
    tree_rows = x.toarray() if small_sparse else x  # a small sparse table: its trees take the same rows dense, once
    for name in trees:
        _tree_candidate(name, selection, oofs, config, tree_rows, targets, known, folds, thresholds_for, budget,
                        console)
    compared = [name for name, score in selection.candidates.items() if "note" not in score]  # not screened out
    if not compared:  # a named tree left out (the line above says why)
        raise ConfigError(f"--select {names[0]}: left out by its size or cost rule (said above); choose another head, "
                          "or give --time-budget")
    selection.choice = better(compared, key=lambda name: selection.candidates[name]["mean"])
    selection.heads = heads if selection.choice == "ensemble" else config.ensemble
    selection.oof, selection.epochs = oofs[selection.choice], epochs.get(selection.choice)
    selection.label_smoothing = selection.candidates[selection.choice].get("label_smoothing")
    if recalibrated(config, selection.choice):
        selection.calibration = fit_platt(targets, selection.oof, known)
        selection.oof = selection.calibration.apply(selection.oof).astype(np.float32)
    if hamming_rule_applies(config, metric):
        selection.threshold = global_threshold_rule(selection.oof, targets, known, folds)
    _say_selection(selection, console)
    return selection


def _say_selection(selection: Selection, console: Console) -> None:
    """Each candidate's CV score and detail, then the choice."""
    for name, score in selection.candidates.items():
        if "note" in score:
            console.print(f"  {name:<8} {score['note']} ({score['seconds']:.1f} s)")
            continue
        detail = ((f", C={score['C']}, {score['scaling']} scaling" if "C" in score else "")
                  + (f", {score['heads']} heads" if "heads" in score else "")
                  + (f", {score[TREE_KINDS[name].unit]} {TREE_KINDS[name].unit}" if name in TREE_KINDS else "")
                  + (f", best epoch {score['epochs']} (median)" if "epochs" in score else ""))
        console.print(f"  {name:<8} {selection.metric} {score['mean']:.4f} ± {score['std']:.4f} over "
                      f"{selection.folds} folds ({score['seconds']:.1f} s{detail})")
        if "smoothing_scores" in score:
            tried = ", ".join(f"{value}: {mean:.4f}" for value, mean in score["smoothing_scores"].items())
            console.print(f"  label smoothing {score['label_smoothing']:g} chosen by {selection.folds}-fold CV on "
                          f"{selection.metric} ({tried})")
    if len(selection.candidates) > 1:
        console.print(f"chose the {selection.choice} head{'s' if selection.heads > 1 else ''} by {selection.folds}-fold "
                      f"CV on {selection.metric}")
    if selection.threshold:
        rule = selection.threshold
        console.print(f"  threshold: p >= 0.5 {rule['p>=0.5']['mean']:.4f}, one Platt-fitted global threshold from the "
                      f"other folds {rule['global']['mean']:.4f}: p >= {rule['value']:.3f} kept")


def _tree_candidate(name: str, selection: Selection, chosen_oof: dict[str, np.ndarray], config: TrainConfig,
                    x: np.ndarray, targets: np.ndarray, known: np.ndarray, folds: list[tuple[np.ndarray, np.ndarray]],
                    thresholds_for: Callable[[Validation], Thresholds], budget: TimeBudget | None,
                    console: Console) -> None:
    """Tree candidate `name`'s fold scores added to `selection` and its out-of-fold probabilities to `chosen_oof`,
    unless tagnet.training.trees.tree_out_of_fold leaves it out (said there), the table has more than SCREEN_CELLS
    rows x labels, or its rows are still sparse (select_head makes those of at most TREE_DENSE_CELLS cells dense)."""
    too_wide = sp.issparse(x)
    if targets.size > SCREEN_CELLS or too_wide:
        console.print(f"  {name:<8} left out: " + (
            f"sparse inputs of {x.shape[0]} rows x {x.shape[1]} features > {TREE_DENSE_CELLS:,} cells (its trees "
            "take dense rows)" if too_wide else f"{targets.shape[0]} rows x {targets.shape[1]} labels > "
            f"{SCREEN_CELLS:,} (" + ("its leaves would hold every label's rate)" if name == "forest" else
                                     "a fit per label)")))
        return
    size = tree_size(config, name)
    found = tree_out_of_fold(name, x, targets, known, folds, size=size, seed=config.seed, budget=budget,
                             console=console)
    if found is not None:
        chosen_oof[name] = found[0]
        val = {"probs": found[0], "targets": targets, "known": known}
        selection.candidates[name] = score_summary(fold_scores(selection.metric, val, folds, thresholds_for), found[1],
                                                   **{TREE_KINDS[name].unit: size})


def network_candidates(config: TrainConfig, names: tuple[str, ...], x: np.ndarray | sp.csr_matrix, targets: np.ndarray,
                       known: np.ndarray, folds: list[tuple[np.ndarray, np.ndarray]], *,
                       make_head: Callable[[], nn.Module], augmented: np.ndarray | None,
                       score: Callable[[np.ndarray], list[float]], maximize: bool, smoothings: tuple[float, ...] = ()
                       ) -> dict[str, tuple[dict[str, Any], np.ndarray, int]]:
    """The network candidates `names` ("mlp" or "head", "ensemble") by the CV of network_out_of_fold, once per label
    smoothing of `smoothings` (none: config's own), each candidate keeping the smoothing of its best mean `score` (fold
    scores of out-of-fold probabilities; a tie keeps the earlier), its heads initialised alike (torch seeded with
    config.seed before each). Returns {name: (its summary, with the smoothing
    chosen and every smoothing's mean score when several were tried; its out-of-fold probabilities; its epochs)}."""
    sign = 1.0 if maximize else -1.0
    found: dict[str, tuple[dict[str, Any], np.ndarray, int]] = {}
    tried: dict[str, dict[str, float]] = {name: {} for name in names}
    seconds_spent = {name: 0.0 for name in names}
    for smoothing in smoothings or (None,):
        tried_config = config if smoothing is None else dataclasses.replace(config, label_smoothing=smoothing)
        torch.manual_seed(config.seed)  # every smoothing's heads start from the same weights: a paired comparison
        oof, seconds, epochs = network_out_of_fold(tried_config, x, targets, known, folds, make_head=make_head,
                                                   many=ensemble_heads(config) if "ensemble" in names else 1,
                                                   augmented=augmented)
        for name in names:
            kind = "ensemble" if name == "ensemble" else "mlp"
            extra = {"heads": ensemble_heads(config)} if name == "ensemble" else {}
            if smoothing is not None:
                extra["label_smoothing"] = smoothing
            seconds_spent[name] += seconds[kind]
            scored = cross_fitted_platt(oof[kind], targets, known, folds) if recalibrated(config, kind) else oof[kind]
            summary = score_summary(score(scored), seconds[kind], epochs=epochs[kind], **extra)
            if smoothing is not None:
                tried[name][f"{smoothing:g}"] = summary["mean"]
            if name not in found or sign * summary["mean"] > sign * found[name][0]["mean"]:
                found[name] = (summary, oof[kind], epochs[kind])
    for name, (summary, _, _) in found.items():
        summary["seconds"] = round(seconds_spent[name], 2)
        if len(tried[name]) > 1:
            summary["smoothing_scores"] = tried[name]
    return found


def network_out_of_fold(config: TrainConfig, x: np.ndarray | sp.csr_matrix, targets: np.ndarray, known: np.ndarray,
                        folds: list[tuple[np.ndarray, np.ndarray]], *, many: int, make_head: Callable[[], nn.Module],
                        augmented: np.ndarray | None = None
                        ) -> tuple[dict[str, np.ndarray], dict[str, float], dict[str, int]]:
    """Out-of-fold probabilities of the MLP candidate (each fold's first head) and of the ensemble of `many` heads
    (each with its own held-out part of the fold's training rows, averaged) on the held-out rows of `folds` (rows of
    no fold stay 0), their seconds, and their epochs for a final fit (the median of their heads' best epochs). Heads
    train with `augmented` copies of their rows when given; sparse rows are made dense one batch at a time."""
    single = dataclasses.replace(config, ensemble=1)
    features = x if sp.issparse(x) else torch.as_tensor(x, dtype=torch.float32)
    copies = None if augmented is None else torch.as_tensor(augmented, dtype=torch.float32)
    oof = {"mlp": np.zeros(targets.shape, np.float32), "ensemble": np.zeros(targets.shape, np.float32)}
    seconds = {"mlp": 0.0, "ensemble": 0.0}
    best: dict[str, list[int]] = {"mlp": [], "ensemble": []}
    for k, (train_rows, held) in enumerate(folds):
        held_features = rows_of(features, held, dense=False)  # scored by each of the fold's heads
        for i, (rows, val_rows) in enumerate(train_val_splits(targets, known, rows=train_rows, heads=many,
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
            oof["ensemble"][held] += probs / many
            seconds["ensemble"] += spent
            best["ensemble"].append(best_epoch)
    return oof, seconds, {name: int(np.ceil(np.median(values))) for name, values in best.items()}


def screened_networks(config: TrainConfig, names: tuple[str, ...], x: np.ndarray | sp.csr_matrix, targets: np.ndarray,
                      known: np.ndarray, folds: list[tuple[np.ndarray, np.ndarray]], linear_oof: np.ndarray, *,
                      make_head: Callable[[], nn.Module], thresholds_for: Callable[[Validation], Thresholds],
                      linear_seconds: float) -> dict[str, Any] | None:
    """The speed rule of the network candidates (MLP, ensemble) at many labels x rows. Where the training rows x labels
    exceed SCREEN_CELLS (and --select auto compares several candidates), one MLP head is first screened on the first
    SCREEN_FOLDS folds against the linear head on the same rows (thresholds fitted on the other screened folds' rows);
    only if it wins does the full CV of the MLP and the ensemble follow. With a time budget, a linear CV that already
    took more than a quarter of it skips the networks. Returns the MLP's summary when the networks are left out
    (screened, or over the budget, with a "note"), else None (the full CV runs)."""
    if names == ("linear",) or targets.size <= SCREEN_CELLS or len(folds) <= SCREEN_FOLDS or config.select != "auto":
        return None
    budget = config.budget_seconds()
    if budget is not None and linear_seconds > budget / 4:
        return {"mean": float("nan"), "std": float("nan"), "folds": [], "seconds": 0.0,
                "note": f"not fitted: the linear CV took {linear_seconds:.0f} s of the {budget:.0f} s budget"}
    metric = select_metric(config)
    screen = screen_folds(folds)
    oof, seconds, _ = network_out_of_fold(config, x, targets, known, folds[:SCREEN_FOLDS], many=1, make_head=make_head)
    scores = {name: fold_scores(metric, {"probs": probs, "targets": targets, "known": known}, screen, thresholds_for)
              for name, probs in (("mlp", oof["mlp"]), ("linear", linear_oof))}
    sign = 1.0 if TUNE_METRICS[metric] == "maximize" else -1.0
    if sign * np.mean(scores["mlp"]) > sign * np.mean(scores["linear"]):
        return None
    return {**score_summary(scores["mlp"], seconds["mlp"]), "linear_on_same_folds": float(np.mean(scores["linear"])),
            "note": f"screened on {SCREEN_FOLDS} folds ({targets.shape[0]} rows x {targets.shape[1]} labels > "
                    f"{SCREEN_CELLS:,}): below the linear head there, the MLP and ensemble CV skipped"}


def screen_folds(folds: list[tuple[np.ndarray, np.ndarray]]) -> list[tuple[np.ndarray, np.ndarray]]:
    """The first SCREEN_FOLDS folds' held-out rows as folds of their own: (the other screened folds' held-out rows,
    this fold's), for scoring probabilities out of those folds at thresholds fitted on the other screened ones."""
    held = [rows for _, rows in folds[:SCREEN_FOLDS]]
    return [(np.concatenate([h for i, h in enumerate(held) if i != k]), h) for k, h in enumerate(held)]


def hamming_rule_applies(config: TrainConfig, metric: str) -> bool:
    """Whether the run's decisions are the Hamming objective's p >= 0.5, which global_threshold_rule may replace."""
    return (metric == "hamming_loss" and parse_objective(config.objective or "f1").kind == "hamming"
            and config.threshold_mode == "fixed" and config.fixed_threshold == 0.5)


def global_threshold_rule(probs: np.ndarray, targets: np.ndarray, known: np.ndarray,
                      folds: list[tuple[np.ndarray, np.ndarray]]) -> dict[str, Any]:
    """The Hamming-loss rule by the same CV: p >= 0.5 against one global threshold fitted on the other folds'
    out-of-fold probabilities, where one Platt map of them pooled crosses 0.5 (decisions.calibration.platt_threshold:
    a forest's vote shares, pulled toward each label's rate, cross it below 0.5). The global one is kept (fitted on
    every row) only if its CV Hamming loss is lower; {"p>=0.5": summary, "global": summary, "value": the threshold
    kept}."""
    val = {"probs": probs, "targets": targets, "known": known}
    half = fold_scores("hamming_loss", val, folds, lambda part: Thresholds("fixed", [0.5] * targets.shape[1]))

    def global_rule(part: Validation) -> Thresholds:
        value = platt_threshold(part["targets"], part["probs"], part["known"])
        return Thresholds("global", [value] * targets.shape[1])

    fitted = fold_scores("hamming_loss", val, folds, global_rule)
    value = 0.5 if np.mean(fitted) >= np.mean(half) else platt_threshold(targets, probs, known)
    return {"p>=0.5": score_summary(half, 0.0), "global": score_summary(fitted, 0.0), "value": round(value, 6)}


def score_summary(scores: list[float], seconds: float, **extra: Any) -> dict[str, Any]:
    """A candidate's fold scores as the run records them: mean, std, each fold, seconds and `extra` entries."""
    return {"mean": float(np.nanmean(scores)), "std": float(np.nanstd(scores)), "folds": [round(s, 6) for s in scores],
            "seconds": round(seconds, 2), **extra}


def set_linear_weights(head: torch.nn.Module, coef: np.ndarray, intercept: np.ndarray) -> None:
    """Copy logistic-regression coefficients (L, F) and intercepts (L,) into a linear head (Dropout, Linear)."""
    with torch.no_grad():
        head[1].weight.copy_(torch.from_numpy(coef))
        head[1].bias.copy_(torch.from_numpy(intercept))


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
        set_linear_weights(head, coef, intercept)
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
    given; one head of one Linear layer is the mean of final_seeds fits' weights, fit_seed_mean; a head the CV
    recalibrated gets its Platt maps folded in, else a single head trained with label smoothing gets
    folded_temperatures). Returns one PhaseResult per head whose validation is the CV's out-of-fold probabilities of
    every row (the run's validation report is then the out-of-fold estimate)."""
    started = time.perf_counter()
    rows = np.arange(len(targets))
    if selection.choice == "linear":
        no_rows = np.zeros(0, np.int64)  # the validation is the CV's: no probabilities of the training rows
        fit_linear_heads(heads, x, targets, known, [(rows, no_rows)] * len(heads), C=selection.C,
                         scaling=selection.scaling)
    else:
        features = x if sp.issparse(x) else torch.as_tensor(x, dtype=torch.float32)
        copies = None if augmented is None else torch.as_tensor(augmented, dtype=torch.float32)
        single, seeds = dataclasses.replace(config, ensemble=1), final_seeds(config, heads)
        for k, head in enumerate(heads):
            fit_seed_mean(head, features, targets, known, rows, config=single,
                          seeds=range(config.seed + k, config.seed + k + seeds), augmented=copies,
                          stop_after=selection.epochs)
    seconds = (time.perf_counter() - started) / len(heads)
    probs = selection.oof
    if selection.calibration is not None:
        folded = fold_logit_map(heads[0], selection.calibration.slopes, selection.calibration.intercepts)
        assert folded and len(heads) == 1, "a recalibrated choice is one head ending in a Linear of one output per label"
    elif config.label_smoothing and selection.choice != "linear" and len(heads) == 1:
        probs = folded_temperatures(heads[0], probs, targets, known)
    val = {"probs": probs, "targets": targets, "known": known}
    return [PhaseResult(best_score=float("nan"), best_epoch=selection.epochs or 0, epochs_run=selection.epochs or 0,
                        validation=val, seconds=seconds, is_global_zero=is_main_process()) for _ in heads]


def final_seeds(config: TrainConfig, heads: list[nn.Module]) -> int:
    """How many seeds' fits the final fit of `heads` averages (engine.headfit.fit_seed_mean): config.refit_seeds for
    one head of one Linear layer, else 1 (an ensemble's members and an MLP's hidden layers are not averaged)."""
    return config.refit_seeds if len(heads) == 1 and linear_only(heads[0]) else 1


def recalibrated(config: TrainConfig, candidate: str) -> bool:
    """Whether `candidate`'s out-of-fold probabilities are recalibrated by per-label Platt maps before they are scored
    and kept: a single network head ("mlp", "head"; its map then folds into its last Linear) trained with a loss of
    RECALIBRATED_LOSSES, which moves each label's odds away from its frequency (MULAN yeast's ASL-trained MLP scored CV
    Hamming loss 0.331 at p >= 0.5 unmapped, 0.201 mapped; benchmarks/RESULTS.md). An ensemble averages its members'
    probabilities, which no one map of its output undoes in a Linear: it is scored as it is."""
    return config.loss in RECALIBRATED_LOSSES and candidate in ("mlp", "head")


def cross_fitted_platt(probs: np.ndarray, targets: np.ndarray, known: np.ndarray,
                       folds: list[tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
    """Out-of-fold `probs` with each fold's held-out rows mapped by per-label Platt maps (decisions.calibration.fit_platt)
    fitted on the other folds' rows: recalibrated probabilities that can be scored without having fitted their map."""
    mapped = probs.copy()
    for train_rows, held in folds:
        mapped[held] = fit_platt(targets[train_rows], probs[train_rows], known[train_rows]).apply(probs[held])
    return mapped


def folded_temperatures(head: nn.Module, probs: np.ndarray, targets: np.ndarray, known: np.ndarray) -> np.ndarray:
    """Per-label temperatures fitted on the out-of-fold `probs` (decisions.calibration.fit_temperature), folded into
    `head`'s last Linear (models.base.fold_logit_map with slopes 1 / T_j: sigmoid of its output is then
    sigmoid(logit / T_j)), and `probs` scaled alike; `probs` as they are when the head does not end in a Linear of
    one output per label.

    Label smoothing trains probabilities toward 0.5 (the photos' out-of-fold calibration error 0.011 -> 0.059): the
    temperatures give them back their spread in the model itself, so the Predictor and the ONNX graph need nothing
    more, and every label's ranking (hence its best threshold's decisions) stays as it was."""
    scaling = fit_temperature(targets, probs, known)
    slopes = 1.0 / np.asarray(scaling.temperatures)
    if not fold_logit_map(head, slopes.tolist(), [0.0] * len(slopes)):
        return probs
    return scaling.apply(probs).astype(np.float32)
