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
from tagnet.engine.process import one_torch_thread
from tagnet.engine.optim import adamw, lr_scheduler
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
             train_rows: np.ndarray, val_rows: np.ndarray | None, *, config: TrainConfig, seed: int,
             augmented: torch.Tensor | None = None, stop_after: int | None = None) -> tuple[np.ndarray | None, int]:
    """Train `head` on rows `train_rows` of features `x` (and, given `augmented`, the same rows' augmented copy, as
    HeadInputs.loader adds it) as a head phase does (AdamW, config.schedule stepped per batch, config.loss, mixup,
    batches of config.batch_size shuffled each epoch, up to config.epochs with early stopping after config.patience
    epochs without a better validation mAP on `val_rows`); keep the best epoch's weights. With `val_rows` None: the
    first `stop_after` (default all) of config.epochs' epochs, on the same schedule, the last one's weights kept (a
    final fit whose epochs were chosen by cross-validation). Runs on one thread; sparse rows (a CSR matrix) are made
    dense one batch at a time. Returns (the best epoch's probabilities of `val_rows`, float32 (len(val_rows), L), or
    None; the epochs the kept weights trained, from 1)."""
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)  # dropout masks
    x_train, t_train, k_train = rows_of(x, train_rows, dense=False), targets[train_rows], known[train_rows]
    if augmented is not None:
        x_train = torch.cat([x_train, augmented[torch.as_tensor(train_rows)]])
        t_train, k_train = np.concatenate([t_train, t_train]), np.concatenate([k_train, k_train])
    loss_fn = make_loss(config, label_frequency=(t_train * k_train).mean(axis=0))
    t_train, k_train = torch.as_tensor(t_train, dtype=torch.float32), torch.as_tensor(k_train, dtype=torch.bool)
    optimizer = adamw([{"params": [p for p in head.parameters() if p.requires_grad], "lr": config.lr}],
                      weight_decay=config.weight_decay)
    scheduler = lr_scheduler(optimizer, config.schedule,
                             total=math.ceil(x_train.shape[0] / config.batch_size) * config.epochs)
    rng = np.random.default_rng(seed)
    if val_rows is None:
        with one_torch_thread():
            for _ in range(min(stop_after or config.epochs, config.epochs)):
                _epoch(head, loss_fn, optimizer, scheduler, x_train, t_train, k_train, config=config, rng=rng,
                       generator=generator)
        head.eval()
        return None, min(stop_after or config.epochs, config.epochs)
    x_val = rows_of(x, val_rows)
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


def _epoch(head: nn.Module, loss_fn: nn.Module, optimizer, scheduler, x: torch.Tensor | sp.csr_matrix,
           targets: torch.Tensor, known: torch.Tensor, *, config: TrainConfig, rng: np.random.Generator,
           generator: torch.Generator) -> None:
    """One epoch of `head` over rows `x` in shuffled batches of config.batch_size (the scheduler stepped per batch;
    sparse rows made dense per batch)."""
    head.train()
    for batch in torch.randperm(x.shape[0], generator=generator).split(config.batch_size):
        loss = batch_loss(head, loss_fn, rows_of(x, batch), targets[batch], known[batch], alpha=config.mixup, rng=rng,
                          generator=generator)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if scheduler is not None:
            scheduler.step()


def head_probabilities(head: nn.Module, x: torch.Tensor | sp.csr_matrix) -> np.ndarray:
    """sigmoid(head(x)) in eval mode, as float32 numpy (sparse rows made dense 4,096 at a time)."""
    head.eval()
    with torch.no_grad(), one_torch_thread():
        if not sp.issparse(x):
            return torch.sigmoid(head(x).float()).numpy().astype(np.float32)
        parts = [torch.sigmoid(head(rows_of(x, np.arange(start, min(start + 4096, x.shape[0])))).float()).numpy()
                 for start in range(0, x.shape[0], 4096)]
        return np.concatenate(parts).astype(np.float32) if parts else np.zeros((0, 0), np.float32)


def linear_only(head: nn.Module) -> bool:
    """Whether `head`'s only weights are one nn.Linear (e.g. Dropout + Linear): the mean of several such heads' weights
    is then one head whose logits are the mean of theirs."""
    holders = [module for module in head.modules() if any(True for _ in module.parameters(recurse=False))]
    return len(holders) == 1 and isinstance(holders[0], nn.Linear)


def fit_seed_mean(head: nn.Module, x: torch.Tensor | sp.csr_matrix, targets: np.ndarray, known: np.ndarray,
                  rows: np.ndarray, *, config: TrainConfig, seeds: range, augmented: torch.Tensor | None = None,
                  stop_after: int | None = None) -> None:
    """`head` fitted on every one of `rows` by fit_head (no validation rows, `stop_after` epochs) once per seed of
    `seeds`, the first from `head`'s own initial weights, each other from weights initialised under its seed, then
    set to the mean of their weights: for a linear_only head one linear head whose logits are the fits' mean, with
    less of one seed's noise (SGD order, dropout masks, start). One seed: a plain fit_head.

    Raises:
        ValueError: several seeds for a head that is not linear_only (the mean of hidden layers' weights means
            nothing).
    """
    if len(seeds) > 1 and not linear_only(head):
        raise ValueError("only a head of one Linear layer can be the mean of several fits' weights")
    start, states = copy.deepcopy(head) if len(seeds) > 1 else None, []
    for k, seed in enumerate(seeds):
        member = head if k == 0 else copy.deepcopy(start)
        if k:  # weights initialised under its own seed
            torch.manual_seed(seed)
            for module in member.modules():
                if isinstance(module, nn.Linear):
                    module.reset_parameters()
        fit_head(member, x, targets, known, rows, None, config=config, seed=seed, augmented=augmented,
                 stop_after=stop_after)
        states.append(member.state_dict())
    if len(states) > 1:
        head.load_state_dict({name: torch.stack([state[name] for state in states]).mean(dim=0) for name in states[0]})
