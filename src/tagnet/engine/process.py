"""This process's part in training, none of it needing Lightning (whose import alone costs seconds, so a table's
linear or MLP head never loads it): its rank, seeds, thread count and precision, and what a training phase returns."""

from __future__ import annotations

import atexit
import contextlib
import functools
import os
import random
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch

from tagnet.config.settings import TrainConfig


def is_main_process() -> bool:
    """True unless this process is a non-zero rank of a distributed run (torchrun, SLURM or Lightning)."""
    for name in ("RANK", "SLURM_PROCID"):
        if name in os.environ:
            return int(os.environ[name]) == 0
    return int(os.environ.get("LOCAL_RANK", 0)) == 0 and int(os.environ.get("NODE_RANK", 0)) == 0


@functools.cache
def close_process_group_at_exit() -> None:
    """Destroy torch.distributed's process group when this process exits, while the interpreter is still whole (once
    per process; nothing when no group is up by then). Left to interpreter teardown, gloo's worker threads can still
    hold work that touches Python objects, and the process dies with SIGABRT ("terminate called without an active
    exception") after its work is done; see pytorch/pytorch pull request 179291."""
    atexit.register(_destroy_process_group)


def _destroy_process_group() -> None:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


@dataclass
class PhaseResult:
    """What one training phase produced: the best epoch's score, epoch and validation outputs."""

    best_score: float
    best_epoch: int
    epochs_run: int
    validation: dict
    seconds: float
    is_global_zero: bool = True


@contextlib.contextmanager
def torch_threads(count: int | None) -> Iterator[None]:
    """`count` torch intra-op threads inside the block (None: as they are), the previous count after it."""
    previous = torch.get_num_threads()
    if count is not None:
        torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def one_torch_thread(enabled: bool = True) -> contextlib.AbstractContextManager[None]:
    """One intra-op thread while `enabled`: a head on cached features does tiny matrix products that lose more
    to thread synchronisation than they gain (up to 50x slower per step with 2 threads on a busy 2-core CPU)."""
    return torch_threads(1 if enabled else None)


def default_precision(config: TrainConfig) -> str:
    """bf16 autocast where the CPU/GPU supports it, else 32-bit."""
    if config.precision:
        return config.precision
    if torch.cuda.is_available() and config.accelerator != "cpu":
        return "bf16-mixed" if torch.cuda.is_bf16_supported() else "16-mixed"
    return "bf16-mixed" if torch.cpu._is_avx512_bf16_supported() else "32-true"


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and PyTorch as Lightning's seed_everything does (the same generators, the same
    PL_GLOBAL_SEED and PL_SEED_WORKERS variables its spawned processes read), without importing Lightning."""
    os.environ["PL_GLOBAL_SEED"] = str(seed)
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    os.environ["PL_SEED_WORKERS"] = "0"
