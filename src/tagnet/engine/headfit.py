"""A plain PyTorch loop that trains one small head on in-memory features with the run's recipe, for the many short
fits of cross-validation (model selection); the run's own heads train through the Lightning engine."""

from __future__ import annotations

import copy
import math

import numpy as np
import torch
from torch import nn

from tagnet.config.settings import TrainConfig
from tagnet.engine.fit import one_torch_thread
from tagnet.engine.module import lr_scheduler
from tagnet.training.losses import make_loss


def average_precision(targets: np.ndarray, probs: np.ndarray, known: np.ndarray) -> float:
    """Mean over labels with a known positive of each label's average precision on its known rows (as scikit-learn's
    average_precision_score: precision at each distinct score, weighted by the recall it adds); NaN without any."""
    values = []
    for j in range(targets.shape[1]):
        rows = known[:, j]
        y, s = targets[rows, j] > 0.5, probs[rows, j]
        positives = int(y.sum())
        if positives == 0:
            continue
        order = np.argsort(-s, kind="stable")
        s, y = s[order], y[order]
        last = np.r_[s[1:] != s[:-1], True]  # the last row of each distinct score
        tp = np.cumsum(y)[last]
        predicted = np.flatnonzero(last) + 1
        recall_gain = np.diff(np.r_[0, tp]) / positives
        values.append(float(np.sum(recall_gain * tp / predicted)))
    return float(np.mean(values)) if values else float("nan")


def fit_head(head: nn.Module, x: torch.Tensor, targets: np.ndarray, known: np.ndarray, train_rows: np.ndarray,
             val_rows: np.ndarray, *, config: TrainConfig, seed: int) -> np.ndarray:
    """Train `head` on rows `train_rows` of features `x` as a head phase does (AdamW, config.schedule stepped per
    batch, config.loss, mixup, batches of config.batch_size shuffled each epoch, up to config.epochs with early
    stopping after config.patience epochs without a better validation mAP on `val_rows`); keep the best epoch's
    weights. Runs on one thread. Returns the best epoch's probabilities of `val_rows` (float32, (len(val_rows), L))."""
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)  # dropout masks
    t_train = torch.as_tensor(targets[train_rows], dtype=torch.float32)
    k_train = torch.as_tensor(known[train_rows], dtype=torch.bool)
    x_train, x_val = x[torch.as_tensor(train_rows)], x[torch.as_tensor(val_rows)]
    loss_fn = make_loss(config, label_frequency=(targets[train_rows] * known[train_rows]).mean(axis=0))
    optimizer = torch.optim.AdamW([p for p in head.parameters() if p.requires_grad], lr=config.lr,
                                  weight_decay=config.weight_decay)
    scheduler = lr_scheduler(optimizer, config.schedule,
                             total=math.ceil(len(train_rows) / config.batch_size) * config.epochs)
    rng = np.random.default_rng(seed)
    best_score, best_state, best_probs, waited = -1.0, None, None, 0
    with one_torch_thread():
        for _ in range(config.epochs):
            head.train()
            for batch in torch.randperm(len(train_rows), generator=generator).split(config.batch_size):
                inputs, batch_targets, batch_known = x_train[batch], t_train[batch], k_train[batch]
                if config.mixup > 0:
                    lam = float(rng.beta(config.mixup, config.mixup))
                    perm = torch.randperm(len(batch), generator=generator)
                    inputs = lam * inputs + (1 - lam) * inputs[perm]
                    batch_targets = lam * batch_targets + (1 - lam) * batch_targets[perm]
                    batch_known = batch_known & batch_known[perm]
                loss = loss_fn(head(inputs).float(), batch_targets, batch_known)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                if scheduler is not None:
                    scheduler.step()
            head.eval()
            with torch.no_grad():
                probs = torch.sigmoid(head(x_val).float()).numpy()
            finite = bool(np.isfinite(probs).all())
            score = average_precision(targets[val_rows], probs, known[val_rows]) if finite else -1.0
            score = 0.0 if finite and not np.isfinite(score) else score  # no validation positive: no mAP to compare
            if score > best_score:
                best_score, best_state, best_probs, waited = score, copy.deepcopy(head.state_dict()), probs, 0
            else:
                waited += 1
                if waited >= config.patience or not finite:
                    break
    if best_state is not None:
        head.load_state_dict(best_state)
    return (best_probs if best_probs is not None else probs).astype(np.float32)


def head_probabilities(head: nn.Module, x: torch.Tensor) -> np.ndarray:
    """sigmoid(head(x)) in eval mode, as float32 numpy."""
    head.eval()
    with torch.no_grad(), one_torch_thread():
        return torch.sigmoid(head(x).float()).numpy().astype(np.float32)
