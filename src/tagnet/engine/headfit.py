"""A plain PyTorch loop that trains one small head on in-memory features for the many short fits of cross-validation
(model selection), with the Lightning module's optimiser, schedule, loss step, mixup and validation score."""

from __future__ import annotations

import copy
import math

import numpy as np
import torch
from torch import nn

from tagnet.config.settings import TrainConfig
from tagnet.engine.fit import one_torch_thread
from tagnet.engine.module import adamw, lr_scheduler
from tagnet.engine.steps import batch_loss, head_score
from tagnet.training.losses import make_loss


def fit_head(head: nn.Module, x: torch.Tensor, targets: np.ndarray, known: np.ndarray, train_rows: np.ndarray,
             val_rows: np.ndarray | None, *, config: TrainConfig, seed: int,
             augmented: torch.Tensor | None = None, stop_after: int | None = None) -> tuple[np.ndarray | None, int]:
    """Train `head` on rows `train_rows` of features `x` (and, given `augmented`, the same rows' augmented copy, as
    HeadInputs.loader adds it) as a head phase does (AdamW, config.schedule stepped per batch, config.loss, mixup,
    batches of config.batch_size shuffled each epoch, up to config.epochs with early stopping after config.patience
    epochs without a better validation mAP on `val_rows`); keep the best epoch's weights. With `val_rows` None: the
    first `stop_after` (default all) of config.epochs' epochs, on the same schedule, the last one's weights kept (a
    final fit whose epochs were chosen by cross-validation). Runs on one
    thread. Returns (the best epoch's probabilities of `val_rows`, float32 (len(val_rows), L), or None; the epochs the
    kept weights trained, from 1)."""
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)  # dropout masks
    rows = torch.as_tensor(train_rows)
    x_train, t_train, k_train = x[rows], targets[train_rows], known[train_rows]
    if augmented is not None:
        x_train = torch.cat([x_train, augmented[rows]])
        t_train, k_train = np.concatenate([t_train, t_train]), np.concatenate([k_train, k_train])
    loss_fn = make_loss(config, label_frequency=(t_train * k_train).mean(axis=0))
    t_train, k_train = torch.as_tensor(t_train, dtype=torch.float32), torch.as_tensor(k_train, dtype=torch.bool)
    optimizer = adamw([{"params": [p for p in head.parameters() if p.requires_grad], "lr": config.lr}],
                      weight_decay=config.weight_decay)
    scheduler = lr_scheduler(optimizer, config.schedule,
                             total=math.ceil(len(x_train) / config.batch_size) * config.epochs)
    rng = np.random.default_rng(seed)
    if val_rows is None:
        with one_torch_thread():
            for _ in range(min(stop_after or config.epochs, config.epochs)):
                _epoch(head, loss_fn, optimizer, scheduler, x_train, t_train, k_train, config=config, rng=rng,
                       generator=generator)
        head.eval()
        return None, min(stop_after or config.epochs, config.epochs)
    x_val = x[torch.as_tensor(val_rows)]
    best_score, best_state, best_probs, best_epoch, waited = -1.0, None, None, 0, 0
    with one_torch_thread():
        for epoch in range(config.epochs):
            _epoch(head, loss_fn, optimizer, scheduler, x_train, t_train, k_train, config=config, rng=rng,
                   generator=generator)
            head.eval()
            with torch.no_grad():
                probs = torch.sigmoid(head(x_val).float()).numpy()
            finite = bool(np.isfinite(probs).all())
            score = head_score(targets[val_rows], probs, known[val_rows])
            if score > best_score:
                best_score, best_state, best_probs, best_epoch, waited = (score, copy.deepcopy(head.state_dict()),
                                                                          probs, epoch + 1, 0)
            else:
                waited += 1
                if waited >= config.patience or not finite:
                    break
    if best_state is not None:
        head.load_state_dict(best_state)
    return (best_probs if best_probs is not None else probs).astype(np.float32), max(best_epoch, 1)


def _epoch(head: nn.Module, loss_fn: nn.Module, optimizer, scheduler, x: torch.Tensor, targets: torch.Tensor,
           known: torch.Tensor, *, config: TrainConfig, rng: np.random.Generator, generator: torch.Generator) -> None:
    """One epoch of `head` over rows `x` in shuffled batches of config.batch_size (the scheduler stepped per batch)."""
    head.train()
    for batch in torch.randperm(len(x), generator=generator).split(config.batch_size):
        loss = batch_loss(head, loss_fn, x[batch], targets[batch], known[batch], alpha=config.mixup, rng=rng,
                          generator=generator)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if scheduler is not None:
            scheduler.step()


def head_probabilities(head: nn.Module, x: torch.Tensor) -> np.ndarray:
    """sigmoid(head(x)) in eval mode, as float32 numpy."""
    head.eval()
    with torch.no_grad(), one_torch_thread():
        return torch.sigmoid(head(x).float()).numpy().astype(np.float32)
