"""Time budgets: the recipe a run follows, its measured throughput, how many passes or epochs fit the time left, and
what was chosen."""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Iterable

import torch
from torch import nn

MIN_PASSES = 0.25  # fine-tuning for less than a quarter of the training texts is not worth its start-up
FINAL_SECONDS = 20.0  # after training: thresholds, the artifact (90 MB for MiniLM), validation predictions
SAFETY = 0.92  # the share of the time left that a plan fills (throughput on a shared machine varies)


@dataclass
class Throughput:
    """Inputs per second of one training step (forward, backward, AdamW) and of inference, measured on real batches."""

    train_per_s: float
    eval_per_s: float


@dataclass
class Recipe:
    """What a run trains: "head" (on the frozen encoder), "head+finetune" (then the whole network, kept only if better),
    "finetune" (the whole network from the start) or "train" (a network without a frozen encoder); `budget` in seconds
    (None: no limit), the throughput it was chosen with and the sentence that says why."""

    name: str
    budget: float | None = None
    throughput: Throughput | None = None
    reason: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "Recipe":
        throughput = values.get("throughput")
        return cls(values["name"], values.get("budget"), Throughput(**throughput) if throughput else None,
                   values.get("reason", ""))


@dataclass
class Plan:
    """A budget-sized training phase: `passes` over the training rows in `rounds` epochs (one validation each) of
    `batches_per_round` batches."""

    passes: float
    rounds: int
    batches_per_round: int
    seconds_left: float
    estimated_seconds: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def plan_passes(*, seconds_left: float, n_train: int, n_val: int, batch_size: int, throughput: Throughput,
                max_passes: float, min_passes: float = MIN_PASSES) -> Plan | None:
    """The passes over `n_train` rows that fit `seconds_left` (SAFETY share of it, less FINAL_SECONDS and one validation
    of `n_val` rows per round), at most `max_passes`; one round per started pass. None when under `min_passes` fit."""
    usable = seconds_left * SAFETY - FINAL_SECONDS
    pass_seconds = n_train / throughput.train_per_s
    val_seconds = n_val / throughput.eval_per_s
    passes = min(max_passes, usable / pass_seconds)
    for _ in range(3):  # the validations take time from training: settle rounds and passes together
        rounds = max(1, math.ceil(passes - 1e-9))
        passes = min(max_passes, (usable - rounds * val_seconds) / pass_seconds)
    if passes < min_passes:
        return None
    rounds = max(1, math.ceil(passes - 1e-9))
    per_pass = math.ceil(n_train / batch_size)
    batches = max(1, round(passes * per_pass / rounds))
    passes = batches * rounds / per_pass
    return Plan(round(passes, 3), rounds, batches, round(seconds_left, 1),
                round(passes * pass_seconds + rounds * val_seconds, 1))


def _autocast(precision: str):
    dtype = {"bf16-mixed": torch.bfloat16, "16-mixed": torch.float16}.get(precision)
    return torch.autocast("cpu", dtype=dtype, enabled=dtype is not None)


def measure_throughput(network: nn.Module, train_batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
                       eval_batches: Iterable[torch.Tensor], *, precision: str, warmup: int = 3) -> Throughput:
    """Time training steps (forward, BCE, backward, an AdamW step that changes nothing: lr 0 and its own state) on
    `train_batches` after `warmup` of them, and inference on `eval_batches` (after one; fewer are skipped when there
    are few batches, the last is always timed). The network's weights are
    unchanged; its gradients are cleared."""
    trainable = [p for p in network.parameters() if p.requires_grad]
    probe = torch.optim.AdamW(trainable, lr=0.0, weight_decay=0.0)
    was_training = network.training
    network.train()
    steps: list[tuple[int, float]] = []
    for inputs, targets in train_batches:
        started = time.perf_counter()
        with _autocast(precision):
            logits = network(inputs)
        nn.functional.binary_cross_entropy_with_logits(logits.float(), targets).backward()
        probe.step()
        probe.zero_grad(set_to_none=True)
        steps.append((len(inputs), time.perf_counter() - started))
    network.eval()
    calls: list[tuple[int, float]] = []
    with torch.inference_mode():
        for inputs in eval_batches:
            started = time.perf_counter()
            with _autocast(precision):
                network(inputs)
            calls.append((len(inputs), time.perf_counter() - started))
    network.train(was_training)
    del probe
    train_rate = _rate(steps[min(warmup, len(steps) - 1):])
    eval_rate = _rate(calls[min(1, len(calls) - 1):]) if calls else 3 * train_rate
    return Throughput(round(train_rate, 1), round(eval_rate, 1))


def _rate(timed: list[tuple[int, float]]) -> float:
    """Inputs per second of (inputs, seconds) calls (the warm-up left out by the caller; at least one kept)."""
    return sum(n for n, _ in timed) / max(sum(t for _, t in timed), 1e-9)


def duration(seconds: float) -> str:
    """15m, 1h30m, 90s: a budget as it would be typed."""
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    text = (f"{hours}h" if hours else "") + (f"{minutes}m" if minutes else "") + (f"{secs}s" if secs else "")
    return text or "0s"


# A training step (forward, backward, optimiser) of a whole CNN costs about this many forwards in inference mode:
# fine-tuning Lite0+Lite2 at 260 px on 2 CPU cores (bf16 autocast) took 0.24 s per image against 0.069 s per
# forward (benchmarks/RESULTS.md, the --time-budget 10m run).
TRAIN_STEP_FORWARDS = 3.5


@dataclass
class TimeBudget:
    """A wall-time budget counted from `started` (time.perf_counter()); `seconds` None means no limit."""

    seconds: float | None
    started: float = field(default_factory=time.perf_counter)
    choices: list[str] = field(default_factory=list)

    def left(self) -> float:
        """Seconds left (inf without a limit)."""
        if self.seconds is None:
            return math.inf
        return self.seconds - (time.perf_counter() - self.started)

    def fits(self, estimate: float) -> bool:
        """Whether `estimate` seconds of work, plus the reserve for finishing, fit in what is left."""
        return estimate + FINAL_SECONDS <= self.left()

    def to_dict(self) -> dict:
        """JSON-able: {"seconds", "choices"} (saved in the run and the artifact)."""
        return {"seconds": self.seconds, "choices": list(self.choices)}

    def note(self, choice: str) -> str:
        """Record a choice (saved in the run) and return it as a line to print."""
        self.choices.append(choice)
        return f"time budget {duration(self.seconds)}: {choice}"


def feature_seconds(forward_seconds: float, images: int, *, passes: int = 2) -> float:
    """Time to compute frozen features of `images` (each seen `passes` times: as is and mirrored)."""
    return forward_seconds * images * passes


def finetune_epochs_that_fit(budget: TimeBudget, *, forward_seconds: float, train_images: int, val_images: int,
                             wanted: int) -> tuple[int, float]:
    """How many of `wanted` fine-tuning epochs fit in the time left, and the estimated seconds of one epoch.

    An epoch trains on `train_images` (TRAIN_STEP_FORWARDS forwards each) and validates on `val_images` (one)."""
    epoch = forward_seconds * (TRAIN_STEP_FORWARDS * train_images + val_images)
    room = budget.left() - FINAL_SECONDS
    return (wanted if math.isinf(room) else max(0, min(wanted, int(room // epoch)))), epoch
