"""The speed rule of table head selection at many labels x rows: the network candidates screened before their CV."""

from __future__ import annotations

import dataclasses

import numpy as np
from rich.console import Console
from torch import nn

from tagnet.config.settings import TrainConfig
from tagnet.decisions.thresholds import Thresholds
from tagnet.training import selection
from tagnet.training.selection import cv_folds, select_head, screened_networks


def _table(n: int, seed: int, *, xor: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Two labels, each of two of six normal features: linear (x0 + x1 > 0) or not (x0 * x1 > 0); 10% flipped."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 6)).astype(np.float32)
    rule = (lambda a, b: a * b > 0) if xor else (lambda a, b: a + b > 0)
    targets = np.column_stack([rule(x[:, 0], x[:, 1]), rule(x[:, 2], x[:, 3])]).astype(np.float32)
    return x, np.where(rng.random(targets.shape) < 0.1, 1 - targets, targets), np.ones(targets.shape, bool)


def _select(x, targets, known, config):
    def make_head():
        return nn.Sequential(nn.Dropout(0.2), nn.Linear(6, 32), nn.ReLU(), nn.Linear(32, 2))

    console = Console(record=True, width=200)
    chosen = select_head(config, x, targets, known, make_head=make_head,
                         thresholds_for=lambda val: Thresholds("fixed", [0.5, 0.5]), console=console)
    return chosen, console.export_text()


CONFIG = TrainConfig(epochs=12, batch_size=16, lr=0.05, head_hidden=32, cv_folds=4).for_modality("tabular")


def test_mlp_screened_out_where_the_linear_head_wins_on_the_same_folds(monkeypatch):
    monkeypatch.setattr(selection, "SCREEN_CELLS", 100)  # 240 rows x 2 labels count as many
    chosen, text = _select(*_table(240, 0, xor=False), CONFIG)
    mlp = chosen.candidates["mlp"]
    assert list(chosen.candidates) == ["linear", "mlp"] and chosen.choice == "linear"  # no ensemble fitted
    assert len(mlp["folds"]) == selection.SCREEN_FOLDS == 2 and mlp["seconds"] > 0
    assert mlp["mean"] >= mlp["linear_on_same_folds"]  # Hamming loss: the MLP lost the screen
    assert "screened on 2 folds" in mlp["note"] and "screened on 2 folds" in text


def test_mlp_that_wins_the_screen_gets_the_full_cv(monkeypatch):
    monkeypatch.setattr(selection, "SCREEN_CELLS", 100)
    chosen, _ = _select(*_table(240, 0, xor=True), CONFIG)
    assert list(chosen.candidates) == ["linear", "mlp", "ensemble"] and chosen.choice in ("mlp", "ensemble")
    assert all(len(score["folds"]) == 4 and "note" not in score for score in chosen.candidates.values())


def test_no_screen_below_the_cells_and_networks_skipped_over_a_quarter_of_the_budget():
    x, targets, known = _table(240, 0, xor=False)
    folds = cv_folds(targets, known, folds=4, seed=0)
    oof = np.full(targets.shape, 0.5, np.float32)
    args = dict(make_head=lambda: None, thresholds_for=lambda val: Thresholds("fixed", [0.5, 0.5]))
    assert screened_networks(CONFIG, ("linear", "mlp", "ensemble"), x, targets, known, folds, oof, linear_seconds=1e6,
                             **args) is None  # 480 cells: the full CV as before
    budget = dataclasses.replace(CONFIG, time_budget="40")
    big = np.zeros((300_000, 1), np.float32)  # only the size is read before the budget rule
    skipped = screened_networks(budget, ("linear", "mlp", "ensemble"), big, big, big.astype(bool), folds, oof,
                                linear_seconds=20.0, **args)
    assert skipped["folds"] == [] and "the linear CV took 20 s of the 40 s budget" in skipped["note"]
    assert screened_networks(budget, ("linear",), big, big, big.astype(bool), folds, oof, linear_seconds=20.0,
                             **args) is None
