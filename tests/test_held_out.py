"""Tests of the held-out rows parted into early-stopping and threshold rows, and of --loss auto's probe."""

from __future__ import annotations

import types

import numpy as np
import pytest
import torch
from rich.console import Console
from sklearn.metrics import average_precision_score, f1_score

from tagnet.config.settings import TrainConfig
from tagnet.decisions.thresholds import fit_decisions
from tagnet.errors import ConfigError, DataError
from tagnet.modalities.base import HeadInputs
from tagnet.training import loss_choice
from tagnet.training.losses import AUTO_CANDIDATES, make_loss
from tagnet.training.validation import held_out_decisions, stopping_score, threshold_slice

NAMES = ["a", "b", "c"]


def _data(n: int = 200, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    targets = (rng.random((n, 3)) < [0.5, 0.2, 0.1]).astype(np.float32)
    probs = np.clip(targets * 0.4 + rng.random((n, 3)) * 0.6, 0, 1).astype(np.float32)
    return targets, probs


def test_held_out_rows_part_into_disjoint_stratified_stopping_and_threshold_rows():
    targets, _ = _data()
    known = np.ones_like(targets, dtype=bool)
    val = np.arange(100, 200)
    stop, kept = threshold_slice(targets, known, [(np.arange(100), val)], share=0.5, seed=0)
    assert len(np.intersect1d(stop, kept)) == 0
    np.testing.assert_array_equal(np.union1d(stop, kept), val)
    assert len(kept) == 50
    for label in range(3):  # each part keeps about the held-out rows' share of every label
        assert abs(targets[stop, label].mean() - targets[kept, label].mean()) <= 0.05
    assert threshold_slice(targets, known, [(np.arange(100), val)], share=0.0, seed=0) is None
    with pytest.raises(DataError, match="too few to keep threshold_share=0.5.*threshold_share=0"):
        threshold_slice(targets, known, [(np.arange(199), np.array([199]))], share=0.5, seed=0)


def test_early_stopping_scores_only_its_rows():
    targets, probs = _data()
    val_rows = np.arange(100, 200)
    stop = val_rows[::3]
    known = np.ones_like(targets, dtype=bool)
    score = stopping_score(val_rows, (stop, np.setdiff1d(val_rows, stop)))
    got = score(targets[val_rows], probs[val_rows], known[val_rows])
    expected = np.mean([average_precision_score(targets[stop, j], probs[stop, j]) for j in range(3)])
    assert got["mAP"] == pytest.approx(expected)
    probs_changed = probs.copy()
    probs_changed[np.setdiff1d(val_rows, stop)] = 0.5  # the threshold rows never move the score
    assert score(targets[val_rows], probs_changed[val_rows], known[val_rows])["mAP"] == pytest.approx(expected)


def test_thresholds_are_fitted_on_their_rows_and_scored_on_the_others_beside_the_optimistic_estimate():
    targets, probs = _data(400, seed=1)
    rows = np.arange(400)
    known = np.ones_like(targets, dtype=bool)
    stop, kept = rows[rows % 2 == 0], rows[rows % 2 == 1]
    val = {"probs": probs, "targets": targets, "known": known}
    config = TrainConfig().for_modality("text")
    fit, report, fitted_on, estimates = held_out_decisions(val, rows, (stop, kept), config, NAMES)
    expected = fit_decisions(targets[kept], probs[kept], objective="f1", known=known[kept]).thresholds
    np.testing.assert_allclose(fit.thresholds.values, expected.values)
    np.testing.assert_array_equal(fitted_on["probs"], probs[kept])
    honest = f1_score(targets[stop], probs[stop] >= np.asarray(expected.values), average="macro", zero_division=0)
    assert report.macro_f1 == pytest.approx(honest) == pytest.approx(estimates["honest"]["macro_f1"])
    own = fit_decisions(targets[stop], probs[stop], objective="f1", known=known[stop]).thresholds
    optimistic = f1_score(targets[stop], probs[stop] >= np.asarray(own.values), average="macro", zero_division=0)
    assert estimates["optimistic"]["macro_f1"] == pytest.approx(optimistic)
    assert estimates["optimistic"]["macro_f1"] >= estimates["honest"]["macro_f1"]
    assert estimates["honest"]["rows"] == estimates["optimistic"]["rows"] == 200
    _, whole, _, none = held_out_decisions(val, rows, None, config, NAMES)  # no slices: fitted and scored on all
    assert none is None and whole.macro_f1 == pytest.approx(f1_score(
        targets, probs >= np.asarray(fit_decisions(targets, probs, objective="f1").thresholds.values),
        average="macro", zero_division=0))


def test_auto_is_resolved_before_a_loss_is_made():
    with pytest.raises(ConfigError, match="loss='auto' is chosen by a probe"):
        make_loss(TrainConfig(loss="auto"), label_frequency=np.array([0.5]))
    assert TrainConfig().for_modality("text").loss == "auto"
    assert TrainConfig().for_modality("image").loss == TrainConfig().for_modality("tabular").loss == "bce"


def _probe_run(tmp_path, targets: np.ndarray) -> types.SimpleNamespace:
    """A run's state as choose_loss reads it: frozen outputs, one split with its slices, settings, a console."""
    plan = types.SimpleNamespace(config=TrainConfig(epochs=2, seed=3).for_modality("text"),
                                 kind=types.SimpleNamespace(frozen=lambda config: True))
    plan.with_config = lambda config: types.SimpleNamespace(config=config, kind=plan.kind, with_config=plan.with_config)
    rows = np.arange(len(targets))
    table = types.SimpleNamespace(targets=targets, known=np.ones_like(targets, dtype=bool))
    return types.SimpleNamespace(
        plan=plan, data=types.SimpleNamespace(table=table), splits=[(rows[:60], rows[60:])],
        slices=(rows[60:80], rows[80:]), head_inputs=HeadInputs(torch.zeros(len(targets), 4)), run_dir=tmp_path,
        resume=False, main=True, console=Console(record=True, width=300), loss_choice=None)


@pytest.mark.parametrize("winner", AUTO_CANDIDATES)
def test_the_loss_is_the_one_scoring_best_on_the_early_stopping_rows(tmp_path, monkeypatch, winner):
    targets, _ = _data(100)
    seen = []

    def fit_head(head, x, targets_, known, train, stop, *, config, seed):
        seen.append((config.loss, train.copy(), stop.copy()))
        perfect = targets_[stop]  # the winner ranks every early-stopping row right, the others are at random
        return (perfect if config.loss == winner else np.random.default_rng(0).random(perfect.shape)), 1

    monkeypatch.setattr(loss_choice, "fit_head", fit_head)
    run = _probe_run(tmp_path, targets)
    loss_choice.choose_loss(run)
    assert run.plan.config.loss == winner and run.loss_choice["chosen"] == winner
    assert run.loss_choice["scores"][winner] == 1.0 and max(run.loss_choice["scores"].values()) == 1.0
    assert [name for name, _, _ in seen] == list(AUTO_CANDIDATES)
    for _, train, stop in seen:  # trained on the training rows, scored on the early-stopping rows only
        np.testing.assert_array_equal(train, np.arange(60))
        np.testing.assert_array_equal(stop, np.arange(60, 80))
    assert f"loss: {winner} (the best of 3 heads" in run.console.export_text()
    assert (tmp_path / "checkpoints" / "loss.json").is_file()


def test_a_resumed_run_follows_its_loss_choice(tmp_path, monkeypatch):
    targets, _ = _data(100)
    monkeypatch.setattr(loss_choice, "fit_head", lambda *a, config, **k: (a[2][a[5]] if config.loss == "asl"
                        else np.full(a[2][a[5]].shape, 0.5), 1))
    loss_choice.choose_loss(_probe_run(tmp_path, targets))
    monkeypatch.setattr(loss_choice, "fit_head", lambda *a, **k: pytest.fail("probed again on resume"))
    again = _probe_run(tmp_path, targets)
    again.resume = True
    loss_choice.choose_loss(again)
    assert again.plan.config.loss == "asl"


def test_a_recipe_without_frozen_outputs_probes_on_a_sample_it_embeds(tmp_path, monkeypatch):
    """Fine-tuning from the start leaves no frozen outputs: the probe embeds at most PROBE_TRAIN_ROWS training and
    PROBE_STOP_ROWS early-stopping rows, drawn from those rows only."""
    targets, _ = _data(100)
    monkeypatch.setattr(loss_choice, "PROBE_TRAIN_ROWS", 10)
    monkeypatch.setattr(loss_choice, "PROBE_STOP_ROWS", 5)
    embedded = []

    def head_inputs(model, data, state, *, cache_dir, progress):
        embedded.append(data.rows)
        return HeadInputs(torch.as_tensor(targets[data.rows]))  # features that are the targets themselves

    run = _probe_run(tmp_path, targets)
    run.head_inputs, run.model, run.state, run.cache_dir, run.progress = None, None, {}, tmp_path, False
    run.plan.kind.head_inputs = head_inputs
    run.data.subset = lambda rows: types.SimpleNamespace(rows=rows)
    x, t, k, train, stop = loss_choice._probe_inputs(run)
    rows = embedded[0]
    assert len(train) == 10 and len(stop) == 5 and len(rows) == 15
    assert set(rows[train]) <= set(range(60)) and set(rows[stop]) <= set(range(60, 80))  # early-stopping rows only
    np.testing.assert_array_equal(t, targets[rows])
    np.testing.assert_array_equal(x.numpy(), targets[rows])
