"""Large tables: the linear head chosen on a sample (one fold), fitted on every row, validated on the held-out rows."""

from __future__ import annotations

import json

import numpy as np
import scipy.sparse as sp
import torch
from rich.console import Console
from torch import nn

from tagnet.config.settings import TrainConfig
from tagnet.decisions.thresholds import Thresholds
from tagnet.engine import PhaseResult
from tagnet.engine.linear import fit_logistic
from tagnet.training import large
from tagnet.training.large import choose_large, fit_large_final, is_large
from tagnet.training.selection import CV_TOLERANCE, cv_folds, linear_candidate, linear_scale
from tagnet.training.trainer import train
from tagnet.training.validation import merged_validation

CONFIG = TrainConfig(cv_folds=5).for_modality("tabular")  # objective hamming: p >= 0.5


def _table(n: int, labels: int, seed: int) -> tuple[sp.csr_matrix, np.ndarray, np.ndarray]:
    """0/1 sparse rows of 40 features; label j is on where feature j or j + labels is (with 10% noise)."""
    rng = np.random.default_rng(seed)
    x = (rng.random((n, 40)) < 0.15).astype(np.float32)
    targets = ((x[:, :labels] + x[:, labels:2 * labels]) > 0).astype(np.uint8)
    targets = np.where(rng.random(targets.shape) < 0.1, 1 - targets, targets).astype(np.uint8)
    return sp.csr_matrix(x), targets, np.ones(targets.shape, bool)


def _fixed(val: dict) -> Thresholds:
    return Thresholds("fixed", [0.5] * val["targets"].shape[1])


def test_the_large_way_starts_at_its_cell_count_or_half_the_budget():
    assert not is_large(CONFIG, 9_999, 1_000) and is_large(CONFIG, 10_000, 1_000)
    assert is_large(TrainConfig(select="linear"), 100_000, 10_000)
    assert not is_large(TrainConfig(select="mlp"), 100_000, 10_000)  # a named network keeps its own path
    # 4,880 x 159 cells: a full CV of about 78 s; the large way under a 120 s budget, not under a 200 s one
    assert is_large(CONFIG, 4_880, 159, budget_seconds=120) and not is_large(CONFIG, 4_880, 159, budget_seconds=200)


def test_choice_on_the_whole_small_table_is_the_linear_candidate_on_its_first_fold(monkeypatch):
    x, targets, known = _table(300, 6, 0)
    chosen = choose_large(CONFIG, x, targets, known, rows=np.arange(300), thresholds_for=_fixed,
                          console=Console(record=True, width=200))
    # the sample is every row and label here: the same choice as the full path's candidate on that one fold
    train_rows, held = cv_folds(targets, known, folds=large.SAMPLE_FOLDS, seed=CONFIG.seed)[0]  # every label sampled
    assert np.array_equal(chosen.held, held) and chosen.folds == 1 and chosen.choice == "linear"
    halves = np.array_split(np.random.default_rng(CONFIG.seed).permutation(len(held)), 2)
    from tagnet.training.selection import fold_scores
    C, scaling, scores, oof, _ = linear_candidate(
        x, targets, known, [(train_rows, held)], maximize=False,
        score=lambda p: fold_scores("hamming_loss", {"probs": p[held], "targets": targets[held], "known": known[held]},
                                    [(halves[1], halves[0]), (halves[0], halves[1])], _fixed))
    assert (chosen.C, chosen.scaling) == (C, scaling)
    assert chosen.candidates["linear"]["folds"] == [round(s, 6) for s in scores]
    # its validation is every label fitted at that C on the fold's training rows: the candidate's own held-out outputs
    np.testing.assert_allclose(chosen.oof, oof[held], atol=1e-2)  # a cold start, not the path's warm one
    assert chosen.threshold is not None and chosen.threshold["value"] > 0  # the hamming rule, on the two halves


def test_the_final_fit_is_every_rows_regression_and_validates_on_the_held_out_rows():
    x, targets, known = _table(300, 6, 1)
    chosen = choose_large(CONFIG, x, targets, known, rows=np.arange(300), thresholds_for=_fixed,
                          console=Console(record=True, width=200))
    heads = [nn.Sequential(nn.Dropout(0.0), nn.Linear(40, 6))]
    results, splits = fit_large_final(heads, x, targets, known, chosen)
    [[(coef, intercept)]] = fit_logistic(x, targets, known, Cs=(chosen.C,), tol=CV_TOLERANCE,
                                         scale=linear_scale(x, chosen.scaling))
    assert torch.equal(heads[0][1].weight.data, torch.from_numpy(coef))
    assert torch.equal(heads[0][1].bias.data, torch.from_numpy(intercept))
    assert np.array_equal(splits[0][0], np.arange(300)) and np.array_equal(splits[0][1], chosen.held)
    assert results[0].validation["probs"] is chosen.oof
    assert np.array_equal(results[0].validation["targets"], targets[chosen.held])


def _result(probs, targets):
    return PhaseResult(best_score=0.0, best_epoch=0, epochs_run=0, seconds=0.0,
                       validation={"probs": probs, "targets": targets, "known": np.ones(targets.shape, bool)})


def test_merged_validation_averages_the_heads_on_the_rows_they_hold_out_only():
    splits = [(np.array([0, 1]), np.array([5, 2])), (np.array([0]), np.array([2, 7]))]
    results = [_result(np.array([[0.5], [0.2]], np.float32), np.array([[1], [0]])),
               _result(np.array([[0.4], [0.9]], np.float32), np.array([[0], [1]]))]
    val, rows = merged_validation(splits, results, 1_000_000)  # a million rows: arrays of the 3 held-out rows only
    assert rows.tolist() == [2, 5, 7]
    np.testing.assert_allclose(val["probs"][:, 0], [0.3, 0.5, 0.9], rtol=1e-6)
    assert val["targets"][:, 0].tolist() == [0, 1, 1] and val["probs"].dtype == np.float32


def test_train_takes_the_large_way_above_its_cell_count(tmp_path, monkeypatch):
    monkeypatch.setattr(large, "LARGE_CELLS", 500)  # 240 rows x 4 labels count as large
    x, targets, _ = _table(240, 4, 2)
    names = [f"f{j}" for j in range(40)] + [f"l{j}" for j in range(4)]
    lines = ["@relation big"] + [f"@attribute {n} {{0,1}}" for n in names] + ["@data"]
    for row, labels in zip(x.toarray().astype(int), targets):
        cells = [f"{j} 1" for j, v in enumerate(np.concatenate([row, labels])) if v]
        lines.append("{" + ",".join(cells) + "}")
    (tmp_path / "big.arff").write_text("\n".join(lines) + "\n")
    result = train(tmp_path / "big.arff", out_dir=tmp_path / "run", progress=False,
                   read_options={"label_count": 4}, config=TrainConfig(forest_trees=0, boosted_rounds=0))
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    chosen = metrics["selection"]
    assert chosen["choice"] == "linear" and chosen["folds"] == 1 and chosen["candidates"]["linear"]["large"]["rows"] == 240
    assert list(chosen["candidates"]) == ["linear"]  # no network candidates at this size
    assert metrics["final_fit"] == {"rows": 240, "all_rows": True, "folds": 1, "C": chosen["C"], "validation_rows": 48,
                                    "validation": "held-out rows of one fold of a sample"}
    assert result.report.n_items == chosen["candidates"]["linear"]["large"]["held_rows"] == 48


def test_the_warning_on_labels_without_positives_names_ten_at_many_labels():
    from tagnet.evaluation.metrics import evaluate_probabilities

    targets = np.zeros((4, 25), np.uint8)
    targets[:, 0] = 1
    report = evaluate_probabilities(targets, np.full(targets.shape, 0.3), [0.5] * 25,
                                    label_names=[f"l{j}" for j in range(25)])
    [line] = report.warnings()
    assert line.startswith("24 label(s) have no positive in this data (l1, l2, l3, l4, l5, l6, l7, l8, l9, l10 and 14 "
                           "more, listed in the JSON report's labels_without_positives): mAP")
    assert len(report.labels_without_positives) == 24
