"""Tests of the joint logistic regression (tagnet.engine.linear) and the linear candidate's search along C."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import torch
from sklearn.linear_model import LogisticRegression

import tagnet.engine.linear as linear_engine
from tagnet.engine.process import one_torch_thread
from tagnet.engine.linear import as_rows, fit_logistic, logistic_path
from tagnet.training.selection import (LINEAR_CS, UNSCALED_CS, cv_folds, linear_candidate, linear_out_of_fold,
                                      linear_scale, screen_folds)


def _table(seed: int, rows: int = 200, features: int = 40):
    """Standard-normal features, 3 labels each driven by 2 of them (the others noise: large C overfits them)."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(rows, features))
    x = (x - x.mean(0)) / x.std(0)
    logits = x[:, :6].reshape(rows, 3, 2).sum(2) + 1.5 * rng.normal(size=(rows, 3))
    targets = (logits > 0.5).astype(np.uint8)
    return x, targets, np.ones(targets.shape, bool)


def _log_loss(targets: np.ndarray, folds):
    def score(oof: np.ndarray) -> list[float]:
        p = np.clip(oof, 1e-6, 1 - 1e-6)
        cells = -(targets * np.log(p) + (1 - targets) * np.log(1 - p))
        return [float(cells[held].mean()) for _, held in folds]
    return score


def test_path_search_picks_the_full_grids_C_and_leaves_the_larger_ones_unfitted():
    x, targets, known = _table(0)
    folds = cv_folds(targets, known, folds=4, seed=0)
    score = _log_loss(targets, folds)
    with one_torch_thread():
        full = [np.mean(score(oof)) for oof in linear_out_of_fold(x, targets, known, folds, Cs=LINEAR_CS)]
        calls = []
        C, scaling, scores, oof, _ = linear_candidate(x, targets, known, folds, maximize=False,
                                                   score=lambda probs: calls.append(1) or score(probs))
    assert full == pytest.approx(sorted(full[:3], reverse=True) + full[3:])  # falls, then ...
    best = int(np.argmin(full))
    assert 0 < best < len(LINEAR_CS) - 2  # ... an optimum inside the grid, two C values past it
    assert (C, scaling) == (LINEAR_CS[best], "inputs") and np.mean(scores) == pytest.approx(full[best], rel=1e-6)
    assert len(calls) == best + 2  # the first C past the optimum ends the search
    assert np.mean(score(oof)) == pytest.approx(full[best], rel=1e-6)


def test_an_optimum_past_the_old_top_of_the_grid_is_followed_there():
    # many rows, few noise-free features: the weakest penalty tried fits best, beyond the grid's former top (0.3)
    rng = np.random.default_rng(3)
    x = rng.normal(size=(2000, 4))
    targets = ((x[:, :2] + 0.1 * rng.normal(size=(2000, 2))) > 0).astype(np.uint8)
    known = np.ones(targets.shape, bool)
    folds = cv_folds(targets, known, folds=3, seed=0)
    score = _log_loss(targets, folds)
    with one_torch_thread():
        full = [np.mean(score(oof)) for oof in linear_out_of_fold(x, targets, known, folds, Cs=LINEAR_CS)]
        C, scaling, scores, _, _ = linear_candidate(x, targets, known, folds, maximize=False, score=score)
    assert full == sorted(full, reverse=True)  # still falling at the grid's top: the search follows it there
    assert (C, scaling) == (LINEAR_CS[-1], "inputs") and C > 0.3
    assert np.mean(scores) == pytest.approx(full[-1], rel=1e-6)


def test_scaling_screened_on_two_folds_then_its_grid_searched_on_every_fold():
    x, targets, known = _table(1, rows=240)
    x = x * np.geomspace(0.05, 5.0, x.shape[1])  # columns of unequal spread: the two scalings differ
    folds = cv_folds(targets, known, folds=4, seed=0)
    score, screen = _log_loss(targets, folds), _log_loss(targets, screen_folds(folds))
    with one_torch_thread():
        paths = {name: [np.mean(screen(oof)) for oof in linear_out_of_fold(x, targets, known, folds[:2], Cs=Cs,
                                                                           scale=linear_scale(x, name))]
                 for name, Cs in (("inputs", UNSCALED_CS), ("standard", LINEAR_CS))}
        calls = []
        C, scaling, scores, oof, screened = linear_candidate(
            x, targets, known, folds, maximize=False, score=lambda probs: calls.append(1) or score(probs),
            screen_score=screen)
        Cs = UNSCALED_CS if scaling == "inputs" else LINEAR_CS
        full = [np.mean(score(p)) for p in linear_out_of_fold(x, targets, known, folds, Cs=Cs,
                                                              scale=linear_scale(x, scaling))]
    # the screen's search: each path's best mean log loss on the two screened folds, the lower one's scaling kept
    best_of = {name: min(values[:int(np.argmax(np.diff(values) > 0)) + 1] if np.any(np.diff(values) > 0) else values)
               for name, values in paths.items()}
    assert screened == pytest.approx(best_of, rel=1e-4) and best_of["inputs"] != pytest.approx(best_of["standard"])
    assert scaling == min(best_of, key=best_of.get)
    best = int(np.argmin(full))  # the kept scaling's grid on every fold, as without the screen
    assert C == Cs[best] and np.mean(scores) == pytest.approx(full[best], rel=1e-4)
    assert np.mean(score(oof)) == pytest.approx(full[best], rel=1e-4) and (oof > 0).all()
    assert len(calls) == min(best + 2, len(Cs))  # only the kept scaling scored on every fold


def test_logistic_path_one_C_at_a_time_is_scikit_learns_fit_at_each():
    rng = np.random.default_rng(3)
    x = (rng.random((150, 12)) < 0.25).astype(np.float32)  # sparse 0/1 rows
    targets = np.column_stack([x[:, 0] + x[:, 1] + 0.4 * rng.normal(size=150) > 0.5,
                               x[:, 2] - x[:, 3] + 0.4 * rng.normal(size=150) > 0.2]).astype(np.uint8)
    known = np.ones(targets.shape, bool)
    Cs = (0.1, 1.0, 3.0)
    with one_torch_thread():
        path = logistic_path(sp.csr_matrix(x), targets, known, Cs=Cs, tol=1e-6)
        first = next(path)  # the first C alone: the larger ones are not fitted until asked for
        rest = list(path)
        joint = fit_logistic(sp.csr_matrix(x), targets, known, Cs=Cs, tol=1e-6)[0]
    for C, [(coef, intercept)], (joint_coef, _) in zip(Cs, [first, *rest], joint):
        np.testing.assert_array_equal(coef, joint_coef)  # the same fit, given lazily
        for j in range(2):
            expected = LogisticRegression(C=C, tol=1e-10, max_iter=10_000).fit(x, targets[:, j])
            np.testing.assert_allclose(coef[j], expected.coef_[0], atol=1e-3)
            assert intercept[j] == pytest.approx(expected.intercept_[0], abs=1e-3)


def test_sparse_rows_multiply_as_the_dense_matrix_does():
    """as_rows' sparse products (embedding bags over the CSR arrays) equal the dense products, with an empty row, an
    empty column, negative values and a duplicated cell (summed) in the matrix."""
    coo = sp.coo_matrix(([2.0, -1.5, 0.5, 3.0, 1.0], ([0, 0, 2, 3, 3], [1, 3, 0, 1, 1])), shape=(4, 5))
    dense = coo.toarray().astype(np.float32)  # row 1 and column 2, 4 empty; cell (3, 1) given twice: 4.0
    X, XT, XT2 = as_rows(coo)
    generator = torch.Generator().manual_seed(0)
    weights, residuals = torch.randn(5, 3, generator=generator), torch.randn(4, 3, generator=generator)
    assert torch.allclose(X @ weights, torch.from_numpy(dense) @ weights, atol=1e-6)
    assert torch.allclose(XT @ residuals, torch.from_numpy(dense.T) @ residuals, atol=1e-6)
    assert torch.allclose(XT2 @ residuals, torch.from_numpy(dense.T ** 2) @ residuals, atol=1e-5)
    assert (X @ weights)[1].abs().max() == 0 and dense[3, 1] == 4.0


def test_a_wide_table_is_fitted_a_few_labels_at_a_time_to_the_same_weights(monkeypatch):
    """At more (features + 1) x columns than WEIGHT_CELLS the labels are split into blocks (a wide vocabulary's
    L-BFGS history would otherwise hold 40 arrays of every feature x label x fold); each column is fitted on its own,
    so the split changes nothing but the float sums."""
    x, targets, known = _table(1, rows=150, features=30)
    sets = [np.arange(0, 100), np.arange(50, 150)]
    with one_torch_thread():
        whole = fit_logistic(x, targets, known, Cs=(0.1, 1.0), row_sets=sets)
        blocks = []
        fit_block = linear_engine._fit_block
        monkeypatch.setattr(linear_engine, "_fit_block",
                            lambda *a, **k: blocks.append(a[3].shape[1]) or fit_block(*a, **k))
        monkeypatch.setattr(linear_engine, "WEIGHT_CELLS", 31 * 2)  # one label (2 weight columns of 30 + 1) a block
        split = fit_logistic(x, targets, known, Cs=(0.1, 1.0), row_sets=sets)
    assert blocks == [2, 2, 2] * 2  # 3 labels x 2 row sets, at each of the 2 C values
    for whole_set, split_set in zip(whole, split):
        for (coef, intercept), (split_coef, split_intercept) in zip(whole_set, split_set):
            np.testing.assert_allclose(split_coef, coef, atol=1e-5)
            np.testing.assert_allclose(split_intercept, intercept, atol=1e-5)
