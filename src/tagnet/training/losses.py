"""Multi-label training losses: independent sigmoid per label, averaged over known cells; never softmax."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from tagnet.config.settings import TrainConfig, validate_settings
from tagnet.errors import ConfigError

LOSSES = ("bce", "weighted_bce", "focal", "asl")
# what --loss auto chooses among (tagnet.training.loss_choice): plain BCE and the two imbalance-aware losses
AUTO_CANDIDATES = ("bce", "weighted_bce", "asl")
POS_WEIGHT_RANGE = (1.0, 100.0)
_TINY = 1e-12  # floor of the focusing terms' base, keeps fractional powers differentiable


class MultiLabelLoss(nn.Module):
    """Base: smooths targets towards 0.5, computes a per-cell loss and averages it over known cells."""

    def __init__(self, *, label_smoothing: float = 0.0) -> None:
        super().__init__()
        self.label_smoothing = label_smoothing

    def cell_loss(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Loss of every (item, label) cell, same shape as `logits`."""
        raise NotImplementedError

    def smoothed_cell_loss(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """cell_loss after smoothing the targets towards 0.5 by label_smoothing."""
        targets = targets.to(logits.dtype)
        if self.label_smoothing:
            targets = targets * (1.0 - self.label_smoothing) + 0.5 * self.label_smoothing
        return self.cell_loss(logits, targets)

    def item_losses(self, logits: torch.Tensor, targets: torch.Tensor, known: torch.Tensor) -> torch.Tensor:
        """Each item's mean loss over its own known cells (0 for an item with none), shape (batch,): per-item losses
        that do not depend on the other items of the batch (what DP-SGD clips one by one)."""
        loss = torch.where(known.to(torch.bool), self.smoothed_cell_loss(logits, targets), 0.0)
        return loss.sum(dim=1) / known.sum(dim=1).clamp(min=1)

    def forward(self, logits: torch.Tensor, targets: torch.Tensor, known: torch.Tensor | None = None) -> torch.Tensor:
        """Mean loss over the cells where `known` is True (all cells when None); 0 if none is known.

        Args:
            logits: (batch, labels) raw scores.
            targets: (batch, labels) 0/1 (or soft) targets.
            known: (batch, labels) bool mask of cells whose target is known.
        """
        loss = self.smoothed_cell_loss(logits, targets)
        if known is None:
            return loss.mean()
        known = known.to(torch.bool)
        return torch.where(known, loss, torch.zeros_like(loss)).sum() / known.sum().clamp(min=1)


class BCELoss(MultiLabelLoss):
    """Binary cross-entropy per label, optionally weighting positives per label (pos_weight)."""

    def __init__(self, *, pos_weight: torch.Tensor | None = None, label_smoothing: float = 0.0) -> None:
        super().__init__(label_smoothing=label_smoothing)
        self.register_buffer("pos_weight", pos_weight)

    def cell_loss(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return F.binary_cross_entropy_with_logits(logits, targets, pos_weight=self.pos_weight, reduction="none")


class FocalLoss(MultiLabelLoss):
    """Sigmoid focal loss (Lin et al., 2017) without alpha: BCE scaled by (1 - p_t) ** gamma."""

    def __init__(self, *, gamma: float = 2.0, label_smoothing: float = 0.0) -> None:
        super().__init__(label_smoothing=label_smoothing)
        self.gamma = gamma

    def cell_loss(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        p = torch.sigmoid(logits)
        p_t = p * targets + (1 - p) * (1 - targets)
        bce = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
        # clamped: with gamma < 1 the power's gradient at 0 (a saturated sigmoid) is infinite and gives NaN
        return bce * (1 - p_t).clamp(min=_TINY) ** self.gamma


class AsymmetricLoss(MultiLabelLoss):
    """Asymmetric loss (Ridnik et al., ICCV 2021).

    With p = sigmoid(logit) and the shifted negative probability p_m = max(p - clip, 0):
    loss = -y (1 - p)^gamma_pos log(p) - (1 - y) p_m^gamma_neg log(1 - p_m).
    """

    def __init__(self, *, gamma_neg: float = 4.0, gamma_pos: float = 0.0, clip: float = 0.05,
                 label_smoothing: float = 0.0) -> None:
        super().__init__(label_smoothing=label_smoothing)
        self.gamma_neg, self.gamma_pos, self.clip = gamma_neg, gamma_pos, clip

    def cell_loss(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        p = torch.sigmoid(logits)
        # (1 - p) ** gamma_pos as exp(gamma_pos * log(1 - p)): finite gradients when the sigmoid saturates
        positive = torch.exp(self.gamma_pos * F.logsigmoid(-logits)) * F.logsigmoid(logits)
        if self.clip > 0:
            p_m = (p - self.clip).clamp(min=0)
            log_not_p_m = torch.log1p(-p_m)  # 1 - p_m >= clip > 0
        else:
            p_m, log_not_p_m = p, F.logsigmoid(-logits)
        negative = p_m.clamp(min=_TINY) ** self.gamma_neg * log_not_p_m  # clamped like the focal loss
        return -(targets * positive + (1 - targets) * negative)


def positive_weights(label_frequency: np.ndarray) -> torch.Tensor:
    """pos_weight = negatives / positives per label from the share of positives, clamped to [1, 100]."""
    f = np.asarray(label_frequency, dtype=np.float64)
    with np.errstate(divide="ignore"):
        ratio = (1.0 - f) / f
    return torch.tensor(np.clip(ratio, *POS_WEIGHT_RANGE), dtype=torch.float32)


def make_loss(config: TrainConfig, *, label_frequency: np.ndarray) -> MultiLabelLoss:
    """The loss named by `config.loss` with its settings.

    Args:
        config: uses loss (None: bce), label_smoothing (None: 0), focal_gamma, asl_gamma_neg, asl_gamma_pos, asl_clip.
        label_frequency: (n_labels,) share of training items carrying each label (for weighted_bce).
    Returns:
        A module called as loss(logits, targets, known=None) -> scalar mean over known cells.
    Raises:
        ConfigError: unknown loss name, or a setting or frequency out of range.
    """
    frequency = np.asarray(label_frequency, dtype=np.float64)
    if frequency.ndim != 1 or not np.all((frequency >= 0) & (frequency <= 1)):
        raise ConfigError(f"label_frequency must be one share in [0, 1] per label, got {frequency!r}")
    validate_settings(config, source="config",
                      names=("label_smoothing", "focal_gamma", "asl_gamma_neg", "asl_gamma_pos", "asl_clip"))
    smoothing = config.label_smoothing or 0.0  # unset: none (a CV that chooses it sets it first)
    if config.loss == "auto":
        raise ConfigError("config: loss='auto' is chosen by a probe before training (tagnet.training.loss_choice); "
                          f"make_loss takes one of {list(LOSSES)}")
    if config.loss in ("bce", None):  # unset: settings not resolved for a modality, whose default is bce
        return BCELoss(label_smoothing=smoothing)
    if config.loss == "weighted_bce":
        return BCELoss(pos_weight=positive_weights(frequency), label_smoothing=smoothing)
    if config.loss == "focal":
        return FocalLoss(gamma=config.focal_gamma, label_smoothing=smoothing)
    if config.loss == "asl":
        return AsymmetricLoss(gamma_neg=config.asl_gamma_neg, gamma_pos=config.asl_gamma_pos,
                              clip=config.asl_clip, label_smoothing=smoothing)
    raise ConfigError(f"config: loss={config.loss!r} is not one of {list(LOSSES)}")
