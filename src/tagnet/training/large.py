"""A table's linear head when training rows x labels is very large: its scaling and C chosen on a sample of rows and
labels (one fold), the final head fitted on every row, and no rows x labels float array held more than once."""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np
import scipy.sparse as sp
import torch
from rich.console import Console

from tagnet.config.settings import TUNE_METRICS, TrainConfig
from tagnet.decisions.thresholds import Thresholds
from tagnet.engine import PhaseResult, is_main_process
from tagnet.engine.linear import fit_logistic
from tagnet.training.selection import (CV_TOLERANCE, Selection, Validation, cv_folds, fold_scores,
                                       global_threshold_rule, hamming_rule_applies, linear_candidate,
                                       linear_probabilities, linear_scale, score_summary, select_metric,
                                       set_linear_weights)

# Training rows x labels from which a table's head is chosen the large way (the full CV of 10 settings x 5 folds would
# take hours and hold rows x labels out-of-fold probabilities per setting): 10,000 rows x 1,000 labels and up
LARGE_CELLS = 10_000_000
# With a time budget the large way is also taken when the full CV's estimated seconds pass half of it: about this many
# seconds per training cell (rows x labels), measured on the 2-core machine (bibtex-like 78 s, delicious-like 1,150 s)
FULL_CV_SECONDS_PER_CELL = 1e-4
SAMPLE_ROWS = 5_000  # rows the scaling and C are chosen on (a random sample; every row when fewer)
SAMPLE_LABELS = 250  # labels they are chosen on (a random sample; every label when fewer)
SAMPLE_FOLDS = 5  # the sample's rows are parted as for a 5-fold CV; only its first fold is fitted (80% / 20%)


def is_large(config: TrainConfig, rows: int, labels: int, *, budget_seconds: float | None = None) -> bool:
    """Whether the linear head of --select auto or linear is chosen the large way (choose_large): rows x labels
    >= LARGE_CELLS, or with a time budget a full CV estimated (FULL_CV_SECONDS_PER_CELL) to take more than half of it."""
    if config.select not in ("auto", "linear"):
        return False
    cells = rows * labels
    return cells >= LARGE_CELLS or (budget_seconds is not None and FULL_CV_SECONDS_PER_CELL * cells > budget_seconds / 2)


def _sample(count: int, size: int, rng: np.random.Generator) -> np.ndarray:
    return np.arange(count) if count <= size else np.sort(rng.choice(count, size, replace=False))


def choose_large(config: TrainConfig, x: sp.csr_matrix | np.ndarray, targets: np.ndarray, known: np.ndarray, *,
                 rows: np.ndarray, thresholds_for: Callable[[Validation], Thresholds], console: Console) -> Selection:
    """The linear head's scaling and C for training rows `rows` of a large table, chosen by the run's metric on one fold.

    The scaling and C (linear_candidate's grids) are chosen on SAMPLE_ROWS random rows x SAMPLE_LABELS random labels,
    fitted on the first of SAMPLE_FOLDS folds of the sample's rows (stratified by those labels) and scored on its
    held-out rows (thresholds fitted on one half of them, scored on the other, and the other way round). Then every label is fitted at that C on the
    same fold's training rows: its held-out rows' probabilities (held x labels, float32) are the run's validation
    (Selection.oof, on the rows Selection.held), which the thresholds are fitted on. The MLP and ensemble are not
    candidates here (said in a line). Returns the Selection (choice "linear", folds 1)."""
    started = time.perf_counter()
    metric = select_metric(config)
    rng = np.random.default_rng(config.seed)
    sample = rows[_sample(len(rows), SAMPLE_ROWS, rng)]
    columns = _sample(targets.shape[1], SAMPLE_LABELS, rng)
    xs, ys, ks = x[sample], targets[sample], known[sample]
    train_rows, held = cv_folds(ys[:, columns], ks[:, columns], folds=SAMPLE_FOLDS, seed=config.seed)[0]
    halves = np.array_split(np.random.default_rng(config.seed).permutation(len(held)), 2)
    parts = [(halves[1], halves[0]), (halves[0], halves[1])]  # within the held-out rows: thresholds / scored rows

    def score(oof: np.ndarray) -> list[float]:
        return fold_scores(metric, {"probs": oof[held], "targets": ys[held][:, columns],
                                    "known": ks[held][:, columns]}, parts, thresholds_for)

    C, scaling, scores, _, _ = linear_candidate(xs, ys[:, columns], ks[:, columns], [(train_rows, held)], score=score,
                                                maximize=TUNE_METRICS[metric] == "maximize")
    chosen = time.perf_counter() - started
    [[(coef, intercept)]] = fit_logistic(xs, ys, ks, Cs=(C,), row_sets=[train_rows], tol=CV_TOLERANCE,
                                         scale=linear_scale(xs, scaling))
    probs = linear_probabilities(xs[held], coef, intercept)
    selection = Selection("linear", metric, folds=1, C=C, scaling=scaling, oof=probs)
    selection.held = sample[held]
    selection.candidates["linear"] = score_summary(scores, time.perf_counter() - started, C=C, scaling=scaling, large={
        "rows": len(sample), "labels": len(columns), "fit_rows": len(train_rows), "held_rows": len(held),
        "choosing_seconds": round(chosen, 1)})
    if hamming_rule_applies(config, metric):
        selection.threshold = global_threshold_rule(probs, ys[held], ks[held], parts)
    _say(selection, len(rows), targets.shape[1], console)
    return selection


def _say(selection: Selection, rows: int, labels: int, console: Console) -> None:
    """What the large way chose, in two lines (three with the threshold rule)."""
    score, large = selection.candidates["linear"], selection.candidates["linear"]["large"]
    console.print(f"  {rows:,} rows x {labels:,} labels >= {LARGE_CELLS:,} cells (or over the time budget): the head's "
                  f"settings chosen on {large['rows']:,} rows x {large['labels']:,} labels, fitted on "
                  f"{large['fit_rows']:,} and scored on {large['held_rows']:,}; the MLP and ensemble are not candidates "
                  "at this size", soft_wrap=True)
    console.print(f"  linear   {selection.metric} {score['mean']:.4f} ± {score['std']:.4f} over 2 halves of the held-out "
                  f"rows ({score['seconds']:.1f} s, C={selection.C}, {selection.scaling} scaling)", soft_wrap=True)
    if selection.threshold:
        rule = selection.threshold
        console.print(f"  threshold: p >= 0.5 {rule['p>=0.5']['mean']:.4f}, one Platt-fitted global threshold from the "
                      f"other half {rule['global']['mean']:.4f}: p >= {rule['value']:.3f} kept")


def fit_large_final(heads: list[torch.nn.Module], x: sp.csr_matrix | np.ndarray, targets: np.ndarray,
                    known: np.ndarray, selection: Selection) -> tuple[list[PhaseResult], list[tuple[np.ndarray, np.ndarray]]]:
    """Every linear head (Dropout, Linear) fitted on every row at the C and scaling of `selection` (choose_large; one
    fit_logistic problem, CV_TOLERANCE), its coefficients copied in. Returns (one PhaseResult per head whose validation
    is the choosing fold's held-out probabilities, the run's splits: every row trains, those rows validate); no
    probabilities of the training rows are computed."""
    started = time.perf_counter()
    [[(coef, intercept)]] = fit_logistic(x, targets, known, Cs=(selection.C,), tol=CV_TOLERANCE,
                                         scale=linear_scale(x, selection.scaling))
    for head in heads:
        set_linear_weights(head, coef, intercept)
    held = selection.held
    val = {"probs": selection.oof, "targets": targets[held], "known": known[held]}
    seconds = (time.perf_counter() - started) / len(heads)
    results = [PhaseResult(best_score=float("nan"), best_epoch=0, epochs_run=0, validation=val, seconds=seconds,
                           is_global_zero=is_main_process()) for _ in heads]
    return results, [(np.arange(len(targets)), held)] * len(heads)
