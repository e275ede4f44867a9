"""The optimiser and learning-rate schedule of every training loop (Lightning phases, the fast head loop, DP-SGD,
the throughput probe)."""

from __future__ import annotations

import math

import torch


FUSED_DEVICES = ("cpu", "cuda")  # where torch's fused AdamW kernel runs


def adamw(groups: list[dict], *, weight_decay: float) -> torch.optim.Optimizer:
    """The optimiser of every training loop: AdamW over parameter `groups` ({"params", "lr"} each).

    Fused (one kernel over each parameter instead of about ten small ops) where every parameter is a float tensor on
    the CPU or a CUDA GPU: the same update, and on 2 CPU cores a third of the time of torch's default per-tensor loop
    on MiniLM's 11.4M trainable weights, a tenth on a 0.5M-parameter table head on one thread (benchmarks/RESULTS.md,
    "Faster text fine-tuning steps", "A table's fixed cost")."""
    params = [p for group in groups for p in group["params"]]
    fused = bool(params) and all(p.is_floating_point() and p.device.type in FUSED_DEVICES for p in params)
    return torch.optim.AdamW(groups, lr=groups[0]["lr"], weight_decay=weight_decay, fused=True if fused else None)


def lr_scheduler(optimizer: torch.optim.Optimizer, schedule: str, *, total: int):
    """The per-step learning-rate schedule of `total` steps: None for "constant"; one-cycle up to each group's lr
    (with at least 10 steps; fewer get cosine), else cosine decay."""
    if schedule == "constant":
        return None
    total = max(1, total)
    if schedule == "onecycle" and total >= 10:  # one-cycle needs a few steps per phase; else cosine
        return torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=[g["lr"] for g in optimizer.param_groups],
                                                   total_steps=total, pct_start=0.3)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 0.5 * (1 + math.cos(math.pi * min(step, total) / total)))
