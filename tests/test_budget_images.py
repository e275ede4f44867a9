"""Tests of --time-budget for images: the estimates, and the backbone and fine-tuning train() picks and says."""

from __future__ import annotations

import json
import time

import pytest
from rich.console import Console

from tagnet.training.budget import FINAL_SECONDS, Throughput, TimeBudget, feature_seconds
from tagnet.config.settings import TrainConfig
from tagnet.training.trainer import train


def test_budget_counts_from_its_start_and_keeps_a_reserve():
    budget = TimeBudget(100.0, started=time.perf_counter() - 40.0)
    assert 59.0 < budget.left() <= 60.0
    assert budget.fits(60.0 - FINAL_SECONDS - 1.0) and not budget.fits(60.0 - FINAL_SECONDS + 1.0)
    assert TimeBudget(None).fits(1e12) and TimeBudget(None).left() == float("inf")
    assert budget.note("head only") == "time budget 1m40s: head only" and budget.to_dict() == {
        "seconds": 100.0, "choices": ["head only"]}


def test_finetune_epochs_are_what_fits_of_the_wanted():
    assert feature_seconds(0.05, 1000) == 100.0  # every image as is and mirrored
    # an epoch: 0.01 s x (3.5 x 1000 training + 250 validation) = 37.5 s
    images = Throughput.from_forward_seconds(0.01)
    assert images.epoch_seconds(1000, 250) == pytest.approx(37.5)

    def epochs(budget: TimeBudget, wanted: int) -> int:
        plan = budget.plan(images, n_train=1000, n_val=250, batch_size=10, max_epochs=wanted, partial=False)
        return 0 if plan is None else plan.rounds

    budget = TimeBudget(100.0 + FINAL_SECONDS, started=time.perf_counter())
    assert epochs(budget, 5) == 2
    assert epochs(budget, 2) == 2
    assert epochs(TimeBudget(10.0), 2) == 0
    assert epochs(TimeBudget(None), 2) == 2


def _train(synthetic_data, out, budget):
    config = TrainConfig(backbone="efficientnet_lite0+efficientnet_lite1", image_size=32, epochs=2, batch_size=16,
                         finetune_epochs=1, time_budget=budget)
    console = Console(record=True, width=200)
    result = train(synthetic_data.labels_csv, images_dir=synthetic_data.images_dir, out_dir=out, config=config,
                   progress=False, console=console)
    return result, console.export_text(), json.loads((out / "metrics.json").read_text())


def test_a_tight_budget_takes_the_fastest_backbone_and_the_head_only(synthetic_data, tmp_path):
    result, said, run = _train(synthetic_data, tmp_path / "run", "1s")
    assert "features would take about" in said and "using efficientnet_lite" in said and "head only" in said
    choices = run["time_budget"]["choices"]
    assert run["time_budget"]["seconds"] == 1.0 and len(choices) == 2 and choices[1].startswith("head only")
    meta = json.loads((result.artifact_dir / "tagnet.json").read_text())
    assert meta["model"]["name"] in ("efficientnet_lite0", "efficientnet_lite1") and meta["extra"]["finetuned"] is False
    assert meta["extra"]["time_budget"] == run["time_budget"]


def test_a_generous_budget_keeps_the_fused_backbone_and_fine_tunes(synthetic_data, tmp_path):
    result, said, run = _train(synthetic_data, tmp_path / "run", "1h")
    assert "features take about" in said and "fine-tuning 1 epoch(s) after the head" in said
    phases = [line.split(",")[0] for line in (tmp_path / "run" / "metrics.csv").read_text().splitlines()[1:]]
    assert phases == ["head", "head", "finetune"]
    meta = json.loads((result.artifact_dir / "tagnet.json").read_text())
    assert meta["model"]["name"] == "efficientnet_lite0+efficientnet_lite1"


def test_a_fused_backbone_gives_way_to_the_strongest_step_that_fits_then_its_fastest_member():
    from tagnet.modalities.image import budget_step
    from tagnet.modalities.specs import IMAGE

    todo = {"efficientnet_lite0": 35.0, "efficientnet_lite1": 50.0, "efficientnet_lite2": 75.0}
    steps = IMAGE.budget_steps
    assert steps == ("efficientnet_lite0+efficientnet_lite2",)
    assert budget_step(todo, steps, lambda seconds: seconds <= 110.0) == "efficientnet_lite0+efficientnet_lite2"
    assert budget_step(todo, steps, lambda seconds: seconds <= 100.0) == "efficientnet_lite0"  # the pair does not fit
    # a fused name whose members the step does not all hold, or the step itself: its fastest member
    assert budget_step({"efficientnet_lite0": 35.0, "efficientnet_lite1": 50.0}, steps, lambda s: s <= 60) == \
        "efficientnet_lite0"
    assert budget_step({"efficientnet_lite0": 35.0, "efficientnet_lite2": 75.0}, steps, lambda s: s <= 100) == \
        "efficientnet_lite0"
    # a member already cached counts nothing
    assert budget_step({**todo, "efficientnet_lite2": 0.0}, steps, lambda s: s <= 40.0) == \
        "efficientnet_lite0+efficientnet_lite2"
