"""Tests of the time budget (passes that fit), length-bucketed batches, the token limit and text's recipe choice."""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch
from torch import nn

from tagnet.engine import measure_throughput
from tagnet.engine.process import torch_threads
from tagnet.training.budget import SAFETY, FINAL_SECONDS, Throughput, duration, plan_passes
from tagnet.training.recipes import Recipe, choose_recipe, phase_epochs
from tagnet.config.settings import TrainConfig
from tagnet.data.label_table import LabelTable
from tagnet.data.text import BucketBatchSampler, PadCollate, pad_multiple
from tagnet.modalities import get
from tagnet.modalities.base import LabeledInputs
from tagnet.modalities import text as text_modality
from tagnet.models.text import token_limit


def _seconds(usable: float) -> float:
    """The time left that leaves `usable` seconds to a plan."""
    return (usable + FINAL_SECONDS) / SAFETY


def test_plan_fits_passes_and_validations_into_the_time_left():
    # 1000 rows at 10/s: a pass is 100 s; 100 validation rows at 100/s: 1 s per round; 250 s usable
    plan = plan_passes(seconds_left=_seconds(250), n_train=1000, n_val=100, batch_size=10,
                       throughput=Throughput(10, 100), max_passes=5)
    # 2.5 passes -> 3 rounds -> (250 - 3) / 100 = 2.47 passes -> 82 batches per round (246 of 100 per pass)
    assert (plan.rounds, plan.batches_per_round, plan.passes) == (3, 82, 2.46)
    assert plan.estimated_seconds == pytest.approx(2.46 * 100 + 3 * 1, abs=0.1)
    capped = plan_passes(seconds_left=_seconds(10_000), n_train=1000, n_val=100, batch_size=10,
                         throughput=Throughput(10, 100), max_passes=3)
    assert (capped.rounds, capped.batches_per_round, capped.passes) == (3, 100, 3.0)
    # under a quarter of a pass fits: no plan
    assert plan_passes(seconds_left=_seconds(20), n_train=1000, n_val=100, batch_size=10,
                       throughput=Throughput(10, 100), max_passes=3) is None


def test_bucketed_batches_hold_every_row_once_per_pass_with_similar_lengths():
    rng = np.random.default_rng(0)
    lengths = rng.integers(3, 60, size=1003)
    sampler = BucketBatchSampler(lengths, 16, seed=1, pool=10)
    for epoch in range(2):
        sampler.set_epoch(epoch)
        batches = list(sampler)
        assert len(batches) == len(sampler) == 63
        rows = np.concatenate(batches)
        assert sorted(rows.tolist()) == list(range(1003))  # each row exactly once
        spread = np.mean([np.ptp(lengths[b]) for b in batches])
        assert spread < np.ptp(lengths) / 4  # a pool of 160 sorted by length: batches span few lengths
    sampler.set_epoch(0)
    first = [b for b in sampler]
    sampler.set_epoch(1)
    assert [list(b) for b in sampler] != [list(b) for b in first]  # a new order each pass
    sampler.set_epoch(0)
    assert [list(b) for b in sampler] == [list(b) for b in first]  # and the same order for the same epoch


def test_fractional_epochs_walk_one_stream_of_passes():
    lengths = np.arange(100) % 17 + 2
    sampler = BucketBatchSampler(lengths, 10, seed=0, batches_per_epoch=7)  # 10 batches per pass, 0.7 pass per epoch
    stream = []
    for epoch in range(4):
        sampler.set_epoch(epoch)
        batches = list(sampler)
        assert len(batches) == len(sampler) == 7
        stream += batches
    # 28 batches = pass 0 (10), pass 1 (10), 8 of pass 2: every row once in each full pass
    for number in range(2):
        rows = np.concatenate(stream[number * 10:(number + 1) * 10])
        assert sorted(rows.tolist()) == list(range(100))
        assert [list(b) for b in stream[number * 10:(number + 1) * 10]] == [list(b) for b in sampler.one_pass(number)]
    assert len(set(np.concatenate(stream[20:]).tolist())) == 80


def test_pad_collate_rounds_up_to_a_multiple():
    collate = PadCollate(0, 8)
    items = [(torch.tensor([5, 6, 7]), torch.zeros(2), torch.ones(2, dtype=torch.bool), 0),
             (torch.tensor(list(range(1, 10))), torch.ones(2), torch.ones(2, dtype=torch.bool), 1)]
    ids, targets, known, index = collate(items)
    assert ids.shape == (2, 16) and ids[0, 3:].eq(0).all() and ids[1, :9].tolist() == list(range(1, 10))
    assert index.tolist() == [0, 1]
    assert PadCollate(0)(items)[0].shape == (2, 9)


def test_text_batches_pad_to_a_multiple_of_8_in_half_precision_only():
    precisions = ("32-true", "32", "64-true", "bf16-mixed", "16-mixed", "bf16-true", "16", "transformer-engine")
    assert [pad_multiple(p) for p in precisions] == [1, 1, 1, 8, 8, 8, 8, 8]


def test_token_limit_is_the_99th_percentile_rounded_up_to_8():
    assert token_limit([18] * 99 + [37]) == 24  # the 99th percentile is 18.19 -> 19 -> 24
    assert token_limit(list(range(1, 101))) == 104  # 99.01 -> 100 -> 104
    assert token_limit([3, 4]) == 8  # at least 8
    assert token_limit([500] * 10) == 256  # at most the encoder's 256
    assert token_limit([]) == 256


def test_measuring_throughput_changes_no_weight():
    torch.manual_seed(0)
    network = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))
    before = {k: v.clone() for k, v in network.state_dict().items()}
    batches = [(torch.randn(5, 4), torch.rand(5, 3).round()) for _ in range(5)]
    rates = measure_throughput(network, batches, [torch.randn(7, 4)] * 3, precision="32-true")
    assert rates.train_per_s > 0 and rates.eval_per_s > 0
    for key, value in network.state_dict().items():
        assert torch.equal(value, before[key]), key
    assert all(p.grad is None for p in network.parameters())
    one = measure_throughput(network, batches[:1], [], precision="32-true")  # fewer batches than the warm-up
    assert one.train_per_s > 0 and one.eval_per_s == pytest.approx(3 * one.train_per_s, rel=0.01)


class _ThreadSensitive(nn.Module):
    """A network whose steps take 1 ms on `fast` torch threads and 20 ms on any other count (a busy or idle CPU)."""

    def __init__(self, fast: int) -> None:
        super().__init__()
        self.linear, self.fast, self.eval_threads = nn.Linear(4, 3), fast, []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        time.sleep(0.001 if torch.get_num_threads() == self.fast else 0.02)
        if not self.training:
            self.eval_threads.append(torch.get_num_threads())
        return self.linear(x)


@pytest.mark.parametrize("fast, chosen", [(1, 1), (2, None)])
def test_the_probe_keeps_the_faster_thread_count(fast, chosen):
    network = _ThreadSensitive(fast)
    batches = [(torch.randn(5, 4), torch.rand(5, 3).round()) for _ in range(4)]
    with torch_threads(2):
        rates = measure_throughput(network, batches, [torch.randn(7, 4)] * 2, precision="32-true", warmup=2,
                                   other_threads=(1, 2))  # 2, the count it runs at, is not timed twice
        assert torch.get_num_threads() == 2
    assert rates.threads == chosen and set(network.eval_threads) == {fast}
    assert 5 / 0.02 < rates.train_per_s < 5 / 0.001 * 1.01  # the fast count's rate (1 ms a step, plus the step's work)


class _BusyAtFirst(nn.Module):
    """A network whose first `busy` training steps take 100 ms (another program's moment of work), then 10 ms on 2
    torch threads and 50 ms on 1 (margins wide enough for a loaded CI machine's scheduling and thread waits)."""

    def __init__(self, busy: int) -> None:
        super().__init__()
        self.linear, self.busy, self.calls = nn.Linear(4, 3), busy, 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += self.training
        time.sleep(0.1 if self.training and self.calls <= self.busy else
                   0.01 if torch.get_num_threads() == 2 else 0.05)
        return self.linear(x)


def test_a_moments_load_during_the_first_timing_does_not_choose_one_thread():
    """The process's 2 threads timed while busy lose to 1 thread; timed again, they win back: the plan keeps them."""
    network = _BusyAtFirst(busy=4)
    batches = [(torch.randn(5, 4), torch.rand(5, 3).round()) for _ in range(4)]
    with torch_threads(2):
        rates = measure_throughput(network, batches, [torch.randn(7, 4)] * 2, precision="32-true", warmup=2,
                                   other_threads=(1,))
    assert network.calls == 4 + 2 + 2  # warm-up and timed steps at 2 threads, 1 thread, 2 threads again
    assert rates.threads is None and 5 / 0.05 < rates.train_per_s < 5 / 0.01 * 1.01


def test_duration_reads_like_the_setting():
    assert [duration(s) for s in (900, 90, 5400, 3601)] == ["15m", "1m30s", "1h30m", "1h1s"]


def _texts(n: int) -> LabeledInputs:
    table = LabelTable([str(i) for i in range(n)], ["a", "b"], np.eye(2, dtype=np.float32)[np.arange(n) % 2],
                       np.ones((n, 2), dtype=bool))
    return LabeledInputs(table, text_modality.as_text_array([f"text {i}" for i in range(n)]))


@pytest.mark.parametrize("settings, n, rate, expected", [
    ({}, 300, 100.0, "head+finetune"),  # small data: the frozen pass is cheap and validation decides
    ({}, 5000, 100.0, "finetune"),  # 5000 texts at 100/s: 50 s a pass, fine-tuning from the start
    ({"time_budget": "30s"}, 5000, 100.0, "head"),  # 30 s: not a quarter pass
    ({"finetune": False}, 5000, 100.0, "head"),
    ({"finetune": True}, 5000, 100.0, "head+finetune"),
    ({"ensemble": 3}, 5000, 100.0, "head"),
    ({"finetune_frozen_layers": 3}, 5000, 100.0, "finetune"),
])
def test_text_recipe_follows_data_size_and_budget(monkeypatch, settings, n, rate, expected):
    kind = get("text")
    monkeypatch.setattr(type(kind), "throughput", lambda self, *args: Throughput(rate, 3 * rate))
    config = TrainConfig(**settings).for_modality("text")
    data = _texts(n)
    split = (np.arange(int(n * 0.8)), np.arange(int(n * 0.8), n))
    recipe = choose_recipe(kind, None, data, split, config=config, elapsed=5.0)
    assert isinstance(recipe, Recipe) and recipe.name == expected
    if not settings:
        assert recipe.budget == 900 and recipe.throughput.train_per_s == rate and "15m (default)" in recipe.reason
    if recipe.name == "finetune":
        frozen = config.finetune_frozen_layers
        assert ("the encoder above its lowest 3 layers" if frozen else "the whole encoder") in recipe.reason
    assert Recipe.from_dict(recipe.to_dict()) == recipe


def test_epochs_bound_every_phase():
    assert phase_epochs(TrainConfig(epochs=1), "finetune") == 1  # --epochs 1: one epoch of fine-tuning too
    assert phase_epochs(TrainConfig(epochs=15, finetune_epochs=3), "finetune") == 3
    assert phase_epochs(TrainConfig(epochs=4), "head") == phase_epochs(TrainConfig(epochs=4), "train") == 4
    recipe = choose_recipe(get("text"), None, _texts(10), (np.arange(8), np.arange(8, 10)),
                           config=TrainConfig(epochs=2, finetune=True).for_modality("text"), elapsed=0.0)
    assert recipe.name == "head+finetune" and recipe.stages == ("frozen_outputs", "heads", "finetune")
