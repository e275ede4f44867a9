"""Differentially private training of a head on frozen features: DP-SGD through Opacus (Poisson sampling, per-sample
clipping, Gaussian noise) and its RDP accountant; the only module that imports Opacus."""

from __future__ import annotations

import warnings
from dataclasses import asdict, dataclass

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from tagnet.config.settings import TrainConfig
from tagnet.engine.process import one_torch_thread
from tagnet.engine.optim import adamw, lr_scheduler
from tagnet.training.losses import make_loss

ACCOUNTANT = "rdp"


@dataclass(frozen=True)
class PrivacySpent:
    """What one DP-SGD fit spent and how: ε from the accountant at `delta`, the ε asked for, the noise multiplier
    Opacus chose for it, the Poisson sample rate, the optimiser steps taken, the epochs, the per-sample clipping
    norm, the rows it trained on, and whether the noise came from a cryptographically secure generator."""

    epsilon: float
    delta: float
    target_epsilon: float
    noise_multiplier: float
    sample_rate: float
    steps: int
    epochs: int
    max_grad_norm: float
    training_rows: int
    accountant: str = ACCOUNTANT
    secure_rng: bool = False  # the noise comes from torch's generator (Opacus' secure_mode needs torchcsprng)

    def to_dict(self) -> dict:
        """JSON-able: every field."""
        return asdict(self)


def unsupported_layers(module: nn.Module) -> list[str]:
    """Opacus' objections to training every parameter of `module` privately, one line each ([] when every layer is
    supported): its ModuleValidator (by exact layer type) and GradSampleModule.validate's rule (no trainable layer with
    buffers, e.g. timm's BatchNormAct2d, whose running statistics mix the rows). Both look at trainable layers only:
    each parameter is made trainable for the check, then restored."""
    from opacus.utils.module_utils import trainable_modules
    from opacus.validators import ModuleValidator

    parameters = list(module.parameters())
    trainable = [parameter.requires_grad for parameter in parameters]
    try:
        for parameter in parameters:
            parameter.requires_grad_(True)
        errors = [" ".join(str(error).split()) for error in ModuleValidator.validate(module, strict=False)]
        errors += [f"{name} ({type(layer).__name__}): a trainable layer with buffers, e.g. BatchNorm's running "
                   "statistics, which Opacus does not support" for name, layer in trainable_modules(module)
                   if next(layer.buffers(recurse=False), None) is not None]  # GradSampleModule.validate's rule
    finally:
        for parameter, flag in zip(parameters, trainable):
            parameter.requires_grad_(flag)
    return errors


def fit_private_head(head: nn.Module, x: torch.Tensor, targets: np.ndarray, known: np.ndarray, *, config: TrainConfig,
                     epsilon: float, delta: float, seed: int) -> PrivacySpent:
    """Train `head` in place on every row of features `x` with DP-SGD (Opacus' make_private_with_epsilon): Poisson
    batches of expected size config.dp_batch_size, each row's gradient clipped to config.dp_max_grad_norm, Gaussian
    noise scaled for (epsilon, delta) over config.dp_epochs epochs, AdamW at config.dp_lr on config.schedule. A fixed
    number of epochs and the last weights: nothing else looks at the rows. Each row's loss is the mean of its own
    known cells (config.loss), so no row's gradient depends on another's. Returns the privacy spent."""
    from opacus import PrivacyEngine

    for layer in head.modules():  # Opacus' hooks hand views to the next layer: an in-place ReLU would break them
        if isinstance(layer, nn.ReLU):
            layer.inplace = False
    torch.manual_seed(seed)  # initial noise, dropout and the Poisson batches (Opacus draws from torch's generator)
    # weighted_bce is refused with DP (its weights would read the private rows): no frequency is needed
    loss_fn = make_loss(config, label_frequency=np.zeros(targets.shape[1]))
    dataset = TensorDataset(x.float(), torch.as_tensor(targets, dtype=torch.float32),
                            torch.as_tensor(known, dtype=torch.bool))
    loader = DataLoader(dataset, batch_size=min(config.dp_batch_size, len(dataset)), shuffle=True)
    optimizer = adamw([{"params": [p for p in head.parameters() if p.requires_grad], "lr": config.dp_lr}],
                      weight_decay=config.weight_decay)
    with warnings.catch_warnings():  # Opacus' note that its noise is not from a secure RNG (secure_mode needs
        warnings.simplefilter("ignore")  # torchcsprng), said in the artifact's privacy record instead
        engine = PrivacyEngine(accountant=ACCOUNTANT)
        private, optimizer, loader = engine.make_private_with_epsilon(
            module=head, optimizer=optimizer, data_loader=loader, target_epsilon=epsilon, target_delta=delta,
            epochs=config.dp_epochs, max_grad_norm=config.dp_max_grad_norm, poisson_sampling=True)
    scheduler = lr_scheduler(optimizer, config.schedule, total=len(loader) * config.dp_epochs)
    private.train()
    with one_torch_thread(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Opacus' full-backward-hook note on every call
        for _ in range(config.dp_epochs):
            for inputs, batch_targets, batch_known in loader:
                losses = loss_fn.item_losses(private(inputs).float(), batch_targets, batch_known)
                optimizer.zero_grad(set_to_none=True)
                (losses.sum() / max(len(losses), 1)).backward()  # the mean Opacus' loss_reduction="mean" expects
                optimizer.step()
                if scheduler is not None:
                    scheduler.step()
    private.to_standard_module()  # hooks and per-sample gradients gone; `head` holds the trained weights
    head.eval()
    sample_rate = 1 / len(loader)
    steps = sum(count for _, _, count in engine.accountant.history)
    # the accountant's conversion can dip a hair below 0 for tiny budgets; ε spent is never negative
    return PrivacySpent(epsilon=max(0.0, float(engine.get_epsilon(delta))), delta=delta, target_epsilon=epsilon,
                        noise_multiplier=float(optimizer.noise_multiplier), sample_rate=sample_rate, steps=steps,
                        epochs=config.dp_epochs, max_grad_norm=config.dp_max_grad_norm, training_rows=len(dataset))


def default_delta(rows: int) -> float:
    """δ when none is given: 1/n for n training rows."""
    return 1.0 / max(rows, 1)

