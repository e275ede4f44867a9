"""The Lightning adapter: one LightningModule that trains any logits-producing network with a multi-label loss."""

from __future__ import annotations

import math
import random
from typing import Sequence

import lightning as L
import numpy as np
import torch
from torch import nn

from tagnet.data.images import normalize_batch
from tagnet.engine.steps import batch_loss


class MultiLabelModule(L.LightningModule):
    """Trains `network` (images or cached features -> logits) with `loss`; validates with mAP.

    Args:
        network: maps a batch of inputs to (B, n_labels) logits.
        loss: callable (logits, targets, known) -> scalar (see tagnet.training.losses).
        lr, weight_decay, schedule: AdamW and its schedule (onecycle, cosine, constant).
        head_lr: the peak learning rate of the network's `head` (a new head beside a pretrained encoder); default lr.
        normalize: (mean, std) to apply to uint8 image batches; None for feature inputs.
        mixup: mixup alpha (0 = off).
        score: callable (targets, probs, known) -> dict of validation metrics, logged as val_<name>.
    """

    def __init__(self, network: nn.Module, loss: nn.Module, *, lr: float, weight_decay: float,
                 schedule: str, normalize: tuple[Sequence[float], Sequence[float]] | None,
                 mixup: float = 0.0, score=None, head_lr: float | None = None) -> None:
        super().__init__()
        self.network, self.loss = network, loss
        if normalize is not None:  # image inputs: channels-last convolutions are faster on CPU and GPU
            self.network.to(memory_format=torch.channels_last)
        self.lr, self.weight_decay, self.schedule, self.head_lr = lr, weight_decay, schedule, head_lr
        self.normalize, self.mixup, self.score = normalize, mixup, score
        self._val_outputs: list[tuple[torch.Tensor, ...]] = []
        self.last_validation: dict[str, np.ndarray] = {}

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        if self.normalize is not None:
            inputs = normalize_batch(inputs, *self.normalize)
        return self.network(inputs)

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        inputs, targets, known, _ = batch
        loss = batch_loss(self.network, self.loss, self._as_float(inputs), targets, known, alpha=self.mixup,
                          rng=np.random)
        self.log("train_loss", loss, prog_bar=True, on_step=False, on_epoch=True, batch_size=inputs.shape[0], sync_dist=True)
        return loss

    def _as_float(self, inputs: torch.Tensor) -> torch.Tensor:
        return normalize_batch(inputs, *self.normalize) if self.normalize is not None else inputs

    def validation_step(self, batch, batch_idx: int) -> None:
        inputs, targets, known, index = batch
        logits = self(inputs).float()
        loss = self.loss(logits, targets, known)
        self.log("val_loss", loss, prog_bar=False, on_step=False, on_epoch=True, batch_size=inputs.shape[0], sync_dist=True)
        self._val_outputs.append((index, torch.sigmoid(logits), targets, known))

    def on_validation_epoch_end(self) -> None:
        if not self._val_outputs:
            return
        index, probs, targets, known = (torch.cat(parts) for parts in zip(*self._val_outputs))
        self._val_outputs.clear()
        if self.trainer.world_size > 1:  # gather every rank's rows, drop the sampler's padding duplicates
            index, probs, targets, known = (self.all_gather(t).flatten(0, 1) for t in (index, probs, targets, known))
        order = np.unique(index.cpu().numpy(), return_index=True)[1]
        self.last_validation = {"probs": probs.cpu().numpy()[order], "targets": targets.cpu().numpy()[order],
                                "known": known.cpu().numpy()[order].astype(bool)}
        if self.score is not None:
            for name, value in self.score(**self.last_validation).items():
                self.log(f"val_{name}", float(value), prog_bar=True, sync_dist=False, rank_zero_only=False)

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        """Random state travels with the checkpoint, so a resumed run continues the same sequence.

        Stored as tensors, ints and tuples only, so the checkpoint loads with torch.load(weights_only=True).
        """
        name, keys, pos, has_gauss, gauss = np.random.get_state()
        checkpoint["rng"] = {"torch": torch.get_rng_state(),
                             "numpy": (name, torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss), float(gauss)),
                             "python": random.getstate()}

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        rng = checkpoint.get("rng")
        if rng:
            torch.set_rng_state(rng["torch"])
            name, keys, pos, has_gauss, gauss = rng["numpy"]
            np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
            random.setstate(rng["python"])

    def configure_optimizers(self):
        params = [p for p in self.parameters() if p.requires_grad]
        groups = [{"params": params, "lr": self.lr}]
        head = getattr(self.network, "head", None)
        if self.head_lr is not None and head is not None:
            own = {id(p) for p in head.parameters()}
            groups = [{"params": [p for p in params if id(p) not in own], "lr": self.lr},
                      {"params": [p for p in params if id(p) in own], "lr": self.head_lr}]
        optimizer = adamw(groups, weight_decay=self.weight_decay)
        scheduler = lr_scheduler(optimizer, self.schedule, total=int(self.trainer.estimated_stepping_batches))
        if scheduler is None:
            return optimizer
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}


FUSED_DEVICES = ("cpu", "cuda")  # where torch's fused AdamW kernel runs


def adamw(groups: list[dict], *, weight_decay: float) -> torch.optim.Optimizer:
    """The optimiser of every training loop: AdamW over parameter `groups` ({"params", "lr"} each).

    Fused (one kernel over each parameter instead of about ten small ops) where every parameter is a float tensor on
    the CPU or a CUDA GPU: the same update, and on 2 CPU cores a third of the time of torch's default per-tensor loop
    on MiniLM's 11.4M trainable weights (benchmarks/RESULTS.md, "Faster text fine-tuning steps")."""
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
