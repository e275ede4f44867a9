"""The one time-budget interface of every modality: a budget counted from the run's start, the throughput a modality
measures, and how many passes or epochs of a phase fit the time left."""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field
from typing import Any

MIN_PASSES = 0.25  # fine-tuning for less than a quarter of the training texts is not worth its start-up
FINAL_SECONDS = 20.0  # after training: thresholds, the artifact (90 MB for MiniLM), validation predictions
SAFETY = 0.92  # the share of the time left that a plan fills (throughput on a shared machine varies)


# A training step (forward, backward, optimiser) of a whole CNN costs about this many forwards in inference mode:
# fine-tuning Lite0+Lite2 at 260 px on 2 CPU cores (bf16 autocast) took 0.24 s per image against 0.069 s per
# forward (benchmarks/RESULTS.md, the --time-budget 10m run).
TRAIN_STEP_FORWARDS = 3.5


@dataclass
class Throughput:
    """Inputs per second of one training step (forward, backward, AdamW) and of inference, measured on real batches,
    and the torch intra-op thread count the training steps ran fastest with (None: the process's, not compared)."""

    train_per_s: float
    eval_per_s: float
    threads: int | None = None

    @classmethod
    def from_forward_seconds(cls, seconds: float) -> "Throughput":
        """The throughput of a network whose inference takes `seconds` per input (a training step costs
        TRAIN_STEP_FORWARDS of them)."""
        return cls(1.0 / (seconds * TRAIN_STEP_FORWARDS), 1.0 / seconds)

    def epoch_seconds(self, n_train: int, n_val: int) -> float:
        """Seconds of one epoch: a pass over `n_train` rows and a validation of `n_val`."""
        return n_train / self.train_per_s + n_val / self.eval_per_s


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


def duration(seconds: float) -> str:
    """15m, 1h30m, 90s: a budget as it would be typed."""
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    text = (f"{hours}h" if hours else "") + (f"{minutes}m" if minutes else "") + (f"{secs}s" if secs else "")
    return text or "0s"


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

    def plan(self, throughput: Throughput, *, n_train: int, n_val: int, batch_size: int, max_epochs: int,
             partial: bool) -> Plan | None:
        """What of a phase of up to `max_epochs` epochs fits the time left at `throughput`: passes over the training
        rows in rounds of a set number of batches when the phase's loader can stop within an epoch (`partial`,
        plan_passes), else whole epochs. None when nothing fits; without a limit, every
        epoch."""
        if partial:
            return plan_passes(seconds_left=self.left(), n_train=n_train, n_val=n_val, batch_size=batch_size,
                               throughput=throughput, max_passes=max_epochs)
        per_epoch = throughput.epoch_seconds(n_train, n_val)
        epochs = _whole_epochs(self.left(), per_epoch, max_epochs)
        if epochs == 0:
            return None
        return Plan(float(epochs), epochs, math.ceil(n_train / batch_size), round(self.left(), 1),
                    round(epochs * per_epoch, 1))


def feature_seconds(forward_seconds: float, images: int, *, passes: int = 2) -> float:
    """Time to compute frozen features of `images` (each seen `passes` times: as is and mirrored)."""
    return forward_seconds * images * passes


def _whole_epochs(seconds_left: float, per_epoch: float, wanted: int) -> int:
    """Whole epochs of `per_epoch` seconds, at most `wanted`, that fit `seconds_left` less FINAL_SECONDS."""
    room = seconds_left - FINAL_SECONDS
    return wanted if math.isinf(room) else max(0, min(wanted, int(room // per_epoch)))
