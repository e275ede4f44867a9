"""Private training (--dp-epsilon): what DP needs of the model, and which steps of a run the privacy budget covers."""

from __future__ import annotations

from typing import Any

from torch import nn

from tagnet.config.settings import TrainConfig
from tagnet.engine.private import PrivacySpent, unsupported_layers
from tagnet.errors import ConfigError

FITTED_MODES = ("per-label", "global")  # threshold modes fitted on validation data (fixed and top-k read none)


def refuse_unsupported(config: TrainConfig, model: nn.Module, *, frozen: bool) -> None:
    """Raise ConfigError (one line) when --dp-epsilon cannot train this model privately: a network trained whole
    (DP-SGD here trains heads on a frozen pretrained encoder), or fine-tuning an encoder whose layers Opacus does not
    support (opacus.validators.ModuleValidator; e.g. EfficientNet's BatchNorm), or any fine-tuning (DP fine-tuning is
    not implemented: the head alone trains privately)."""
    if config.dp_epsilon is None:
        return
    name = f"dp_epsilon={config.dp_epsilon:g}"
    if not frozen:
        raise ConfigError(f"{name}: DP-SGD trains a head on a frozen pretrained encoder; {config.backbone} "
                          f"(pretrained={config.pretrained}) trains the whole network; use a pretrained backbone")
    if not config.finetune:
        return
    problems = unsupported_layers(model.backbone)
    if problems:
        raise ConfigError(f"finetune with {name}: Opacus cannot train {config.backbone} privately ({problems[0]}"
                          f"{f'; {len(problems) - 1} more' if len(problems) > 1 else ''}); leave --finetune out to "
                          "train the head privately on the frozen encoder")
    raise ConfigError(f"finetune with {name}: Opacus supports {config.backbone}'s layers, but tagnet trains only the "
                      "head privately; leave --finetune out")


def coverage(config: TrainConfig, *, modality: str, validation_rows: int, public_val: bool) -> dict[str, list[str]]:
    """What the privacy budget covers ("covered"), what reads no private data ("no_private_data") and what reads the
    private rows outside the budget ("not_covered") in a run trained with --dp-epsilon."""
    covered = ["the head's weights: DP-SGD (Poisson sampling, per-row clipping, Gaussian noise) for a fixed number of "
               "epochs, the last epoch kept (no early stopping)"]
    free = ["no encoder: the head takes the table's features" if modality == "tabular"
            else "the frozen pretrained encoder (public weights, not trained)"]
    outside = []
    where = ("the public --val file" if public_val else f"{validation_rows} private validation rows")
    if config.threshold_mode in FITTED_MODES:
        (covered if public_val else outside).append(f"the {config.threshold_mode} thresholds: fitted on {where}")
    else:
        free.append(f"the thresholds: {config.threshold_mode} (fitted on no data)")
    (free if public_val else outside).append(f"the validation metrics and val_predictions.csv: computed on {where}")
    if modality == "tabular":
        outside.append("the feature scaling (each feature's mean and std): counted on the private training rows")
    return {"covered": covered, "no_private_data": free, "not_covered": outside}


def privacy_record(spent: PrivacySpent, config: TrainConfig, *, modality: str, validation_rows: int) -> dict[str, Any]:
    """The artifact's and run folder's "privacy": what DP-SGD spent (ε from the accountant, δ, noise multiplier,
    sample rate, steps, clipping norm, rows) and what the budget covers (coverage)."""
    return {**spent.to_dict(), **coverage(config, modality=modality, validation_rows=validation_rows,
                                          public_val=config.dp_public_val)}


def privacy_lines(record: dict[str, Any]) -> list[str]:
    """How a run says what it spent and what the budget leaves out, one line each."""
    lines = [f"differential privacy: ε = {record['epsilon']:.3g} spent (asked {record['target_epsilon']:g}), "
             f"δ = {record['delta']:.2g}, {record['accountant'].upper()} accountant; noise multiplier "
             f"{record['noise_multiplier']:.3g}, {record['steps']} steps at sample rate {record['sample_rate']:.3g}, "
             f"clipping norm {record['max_grad_norm']:g}, {record['training_rows']} training rows"]
    lines += [f"not covered by ε: {line}" for line in record["not_covered"]]
    return lines
