"""The training-step math both training loops share (the Lightning module and the fast head loop): mixup, the loss
of a batch and the validation scores early stopping compares."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from tagnet.evaluation.metrics import f1_at, mean_average_precision


def mixup(inputs: torch.Tensor, targets: torch.Tensor, known: torch.Tensor, *, alpha: float, rng,
          generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """A batch mixed with a shuffled copy of itself: lam ~ Beta(alpha, alpha) drawn from `rng` (a NumPy Generator, or
    the np.random module), the shuffle from `generator` (torch's global one when None); a cell is known when both of
    its sources are."""
    lam = float(rng.beta(alpha, alpha))
    perm = torch.randperm(inputs.shape[0], generator=generator, device=inputs.device if generator is None else "cpu")
    perm = perm.to(inputs.device)
    return (lam * inputs + (1 - lam) * inputs[perm], lam * targets + (1 - lam) * targets[perm],
            known & known[perm])


def batch_loss(network: nn.Module, loss: nn.Module, inputs: torch.Tensor, targets: torch.Tensor,
               known: torch.Tensor, *, alpha: float, rng, generator: torch.Generator | None = None) -> torch.Tensor:
    """The loss of one training batch of float inputs, mixed up first when `alpha` > 0 (see mixup)."""
    if alpha > 0:
        inputs, targets, known = mixup(inputs, targets, known, alpha=alpha, rng=rng, generator=generator)
    return loss(network(inputs).float(), targets, known)


def head_score(targets: np.ndarray, probs: np.ndarray, known: np.ndarray) -> float:
    """What early stopping compares: validation mAP; -1 once training has diverged (non-finite probabilities), 0 when
    no validation row has a positive (no mAP to compare)."""
    if not np.isfinite(probs).all():
        return -1.0
    score = mean_average_precision(targets, probs, known)
    return score if np.isfinite(score) else 0.0


def validation_score(targets: np.ndarray, probs: np.ndarray, known: np.ndarray) -> dict[str, float]:
    """Validation metrics logged each epoch: mAP (0 when no validation row has a positive) and micro/macro F1 at 0.5
    (NaN once training has diverged)."""
    if not np.isfinite(probs).all():  # NaN stops training (EarlyStopping's check_finite); the best epoch is kept
        return {"mAP": float("nan"), "micro_f1": float("nan"), "macro_f1": float("nan")}
    micro_f1, macro_f1 = f1_at(targets, probs, known)
    score = mean_average_precision(targets, probs, known)
    return {"mAP": score if np.isfinite(score) else 0.0, "micro_f1": micro_f1, "macro_f1": macro_f1}
