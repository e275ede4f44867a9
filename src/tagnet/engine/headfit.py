"""A plain PyTorch loop that trains one small head on in-memory features for the many short fits of cross-validation
(model selection), with the Lightning module's optimiser, schedule, loss step, mixup and validation score."""

from __future__ import annotations

import copy
import math

import numpy as np
import scipy.sparse as sp
import torch
from torch import nn

from tagnet.config.settings import TrainConfig
from tagnet.engine.fit import one_torch_thread
from tagnet.engine.module import adamw, lr_scheduler
from tagnet.engine.steps import batch_loss, head_score
from tagnet.training.losses import make_loss


def rows_of(x: torch.Tensor | sp.csr_matrix, rows: np.ndarray | torch.Tensor, *, dense: bool = True
            ) -> torch.Tensor | sp.csr_matrix:
    """Rows `rows` of features `x`: a float32 tensor (a CSR matrix's rows made dense, unless not `dense`)."""
    if not sp.issparse(x):
        return x[torch.as_tensor(rows)]
    part = x[np.asarray(rows)]
    return torch.from_numpy(part.toarray().astype(np.float32, copy=False)) if dense else part


def fit_head(head: nn.Module, x: torch.Tensor | sp.csr_matrix, targets: np.ndarray, known: np.ndarray,
             train_rows: np.ndarray, val_rows: np.ndarray, *, config: TrainConfig, seed: int) -> np.ndarray:
    """Train `head` on rows `train_rows` of features `x` as a head phase does (AdamW, config.schedule stepped per
    batch, config.loss, mixup, batches of config.batch_size shuffled each epoch, up to config.epochs with early
    stopping after config.patience epochs without a better validation mAP on `val_rows`); keep the best epoch's
    weights. Runs on one thread. Sparse rows (a CSR matrix) are made dense one batch at a time. Returns the best
    epoch's probabilities of `val_rows` (float32, (len(val_rows), L))."""
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)  # dropout masks
    t_train = torch.as_tensor(targets[train_rows], dtype=torch.float32)
    k_train = torch.as_tensor(known[train_rows], dtype=torch.bool)
    x_train, x_val = rows_of(x, train_rows, dense=False), rows_of(x, val_rows)
    loss_fn = make_loss(config, label_frequency=(targets[train_rows] * known[train_rows]).mean(axis=0))
    optimizer = adamw([{"params": [p for p in head.parameters() if p.requires_grad], "lr": config.lr}],
                      weight_decay=config.weight_decay)
    scheduler = lr_scheduler(optimizer, config.schedule,
                             total=math.ceil(len(train_rows) / config.batch_size) * config.epochs)
    rng = np.random.default_rng(seed)
    best_score, best_state, best_probs, waited = -1.0, None, None, 0
    with one_torch_thread():
        for _ in range(config.epochs):
            head.train()
            for batch in torch.randperm(len(train_rows), generator=generator).split(config.batch_size):
                loss = batch_loss(head, loss_fn, rows_of(x_train, batch), t_train[batch], k_train[batch], alpha=config.mixup,
                                  rng=rng, generator=generator)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                if scheduler is not None:
                    scheduler.step()
            head.eval()
            with torch.no_grad():
                probs = torch.sigmoid(head(x_val).float()).numpy()
            finite = bool(np.isfinite(probs).all())
            score = head_score(targets[val_rows], probs, known[val_rows])
            if score > best_score:
                best_score, best_state, best_probs, waited = score, copy.deepcopy(head.state_dict()), probs, 0
            else:
                waited += 1
                if waited >= config.patience or not finite:
                    break
    if best_state is not None:
        head.load_state_dict(best_state)
    return (best_probs if best_probs is not None else probs).astype(np.float32)


def head_probabilities(head: nn.Module, x: torch.Tensor | sp.csr_matrix) -> np.ndarray:
    """sigmoid(head(x)) in eval mode, as float32 numpy (sparse rows made dense 4,096 at a time)."""
    head.eval()
    with torch.no_grad(), one_torch_thread():
        if not sp.issparse(x):
            return torch.sigmoid(head(x).float()).numpy().astype(np.float32)
        parts = [torch.sigmoid(head(rows_of(x, np.arange(start, min(start + 4096, x.shape[0])))).float()).numpy()
                 for start in range(0, x.shape[0], 4096)]
        return np.concatenate(parts).astype(np.float32) if parts else np.zeros((0, 0), np.float32)
