"""`--time-budget`: which recipe fits the wall time left, estimated from measured speeds, and what was chosen."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

# A training step (forward, backward, optimiser) of a whole CNN costs about this many forwards in inference mode:
# fine-tuning Lite0+Lite2 at 260 px on 2 CPU cores (bf16 autocast) took 0.24 s per image against 0.069 s per
# forward (benchmarks/RESULTS.md, the --time-budget 10m run).
TRAIN_STEP_FORWARDS = 3.5
# Kept back for what follows training: thresholds, the report, writing the artifact.
RESERVE_SECONDS = 15.0


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
        return estimate + RESERVE_SECONDS <= self.left()

    def to_dict(self) -> dict:
        """JSON-able: {"seconds", "choices"} (saved in the run and the artifact)."""
        return {"seconds": self.seconds, "choices": list(self.choices)}

    def note(self, choice: str) -> str:
        """Record a choice (saved in the run) and return it as a line to print."""
        self.choices.append(choice)
        return f"time budget {format_seconds(self.seconds)}: {choice}"


def format_seconds(seconds: float | None) -> str:
    """90 -> '1m30s', 300 -> '5m', 42.4 -> '42s'."""
    if seconds is None or math.isinf(seconds):
        return "none"
    minutes, rest = divmod(int(round(seconds)), 60)
    return f"{minutes}m{rest:02d}s".replace("m00s", "m") if minutes else f"{rest}s"


def feature_seconds(forward_seconds: float, images: int, *, passes: int = 2) -> float:
    """Time to compute frozen features of `images` (each seen `passes` times: as is and mirrored)."""
    return forward_seconds * images * passes


def finetune_epochs_that_fit(budget: TimeBudget, *, forward_seconds: float, train_images: int, val_images: int,
                             wanted: int) -> tuple[int, float]:
    """How many of `wanted` fine-tuning epochs fit in the time left, and the estimated seconds of one epoch.

    An epoch trains on `train_images` (TRAIN_STEP_FORWARDS forwards each) and validates on `val_images` (one)."""
    epoch = forward_seconds * (TRAIN_STEP_FORWARDS * train_images + val_images)
    room = budget.left() - RESERVE_SECONDS
    return (wanted if math.isinf(room) else max(0, min(wanted, int(room // epoch)))), epoch
