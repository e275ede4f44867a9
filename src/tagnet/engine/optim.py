"""The optimiser and learning-rate schedule of every training loop (Lightning phases, the fast head loop, DP-SGD,
the throughput probe)."""

from __future__ import annotations

import math

import torch


def adamw(groups: list[dict], *, weight_decay: float) -> torch.optim.Optimizer:
    """The optimiser of every training loop: AdamW over parameter `groups` ({"params", "lr"} each), PyTorch's fused
    kernel (the same update in one pass over each tensor: 0.6 ms a step of a 0.5M-parameter head on one CPU thread,
    against 6-8 ms for the default per-tensor loop)."""
    return torch.optim.AdamW(groups, lr=groups[0]["lr"], weight_decay=weight_decay, fused=True)


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
