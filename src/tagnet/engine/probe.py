"""Measuring a network's training and inference throughput on real batches (a time budget's plans start from it)."""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence

import torch
from torch import nn

from tagnet.engine.optim import adamw
from tagnet.engine.process import torch_threads
from tagnet.training.budget import Throughput


def autocast(precision: str):
    """CPU autocast to the precision's half type (bf16-mixed, 16-mixed); a no-op for 32-bit."""
    dtype = {"bf16-mixed": torch.bfloat16, "16-mixed": torch.float16}.get(precision)
    return torch.autocast("cpu", dtype=dtype, enabled=dtype is not None)


def measure_throughput(network: nn.Module, train_batches: Sequence[tuple[torch.Tensor, torch.Tensor]],
                       eval_batches: Iterable[torch.Tensor], *, precision: str, warmup: int = 3,
                       other_threads: tuple[int, ...] = ()) -> Throughput:
    """Time training steps (forward, BCE, backward, an AdamW step that changes nothing: lr 0 and its own state) on
    `train_batches` after `warmup` of them, and inference on `eval_batches` (after one; fewer are skipped when there
    are few batches, the last is always timed). With `other_threads`, the timed training steps run again at each of
    those torch thread counts and the fastest count is kept (Throughput.threads; inference is timed at it): on a busy
    CPU one thread can be several times faster than two that wait on each other. When another count wins, the
    process's count is timed once more and wins back if faster then: a few seconds of another program's work during
    its first timing once made a 15-minute text run train on one thread at about 60% of its speed
    (benchmarks/RESULTS.md, goemo6). The network's weights are unchanged; its gradients are cleared."""
    trainable = [p for p in network.parameters() if p.requires_grad]
    probe = adamw([{"params": trainable, "lr": 0.0}], weight_decay=0.0)
    was_training = network.training
    network.train()
    first_timed = min(warmup, len(train_batches) - 1)
    train_rate = _rate(_training_steps(network, probe, train_batches, precision)[first_timed:])
    threads = None
    for count in (c for c in other_threads if c != torch.get_num_threads()):
        with torch_threads(count):
            rate = _rate(_training_steps(network, probe, train_batches[first_timed:], precision))
        if rate > train_rate:
            train_rate, threads = rate, count
    if threads is not None:  # a moment's load may have slowed the first timing: the process's count gets a second
        again = _rate(_training_steps(network, probe, train_batches[first_timed:], precision))
        if again > train_rate:
            train_rate, threads = again, None
    network.eval()
    calls: list[tuple[int, float]] = []
    with torch.inference_mode(), torch_threads(threads):
        for inputs in eval_batches:
            started = time.perf_counter()
            with autocast(precision):
                network(inputs)
            calls.append((len(inputs), time.perf_counter() - started))
    network.train(was_training)
    del probe
    eval_rate = _rate(calls[min(1, len(calls) - 1):]) if calls else 3 * train_rate
    return Throughput(round(train_rate, 1), round(eval_rate, 1), threads)


def _training_steps(network: nn.Module, optimizer: torch.optim.Optimizer,
                    batches: Iterable[tuple[torch.Tensor, torch.Tensor]], precision: str) -> list[tuple[int, float]]:
    """(inputs, seconds) of a training step on each of `batches`."""
    steps: list[tuple[int, float]] = []
    for inputs, targets in batches:
        started = time.perf_counter()
        with autocast(precision):
            logits = network(inputs)
        nn.functional.binary_cross_entropy_with_logits(logits.float(), targets).backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        steps.append((len(inputs), time.perf_counter() - started))
    return steps


def _rate(timed: list[tuple[int, float]]) -> float:
    """Inputs per second of (inputs, seconds) calls (the warm-up left out by the caller; at least one kept)."""
    return sum(n for n, _ in timed) / max(sum(t for _, t in timed), 1e-9)
