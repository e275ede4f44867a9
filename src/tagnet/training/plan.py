"""The frozen plan of a training run: the data source, modality and settings, resolved once before any data is
decoded."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tagnet import modalities
from tagnet.config.settings import DECISION_SETTINGS, TrainConfig
from tagnet.config.source import DataSource
from tagnet.errors import ConfigError
from tagnet.modalities.base import Modality
from tagnet.training.budget import TimeBudget


@dataclass(frozen=True)
class RunPlan:
    """What a run does, decided from its settings alone: where the data comes from and how to read it (`source`, its
    read options checked for the modality), the modality, the settings with the modality's defaults filled in, the
    --val file, and the time budget (counted from the run's start; its choices are recorded as the run makes them).
    The recipe, the splits and the backbone under a budget need the data: stages put them in a new plan
    (with_config) where they change the settings."""

    source: DataSource
    kind: Modality
    config: TrainConfig
    val_labels: str | Path | None
    budget: TimeBudget

    @property
    def decisions(self) -> dict[str, Any]:
        """The settings that turn probabilities into label sets (objective, confidence, label counts, if_empty)."""
        return {name: getattr(self.config, name) for name in DECISION_SETTINGS}

    def with_config(self, config: TrainConfig) -> RunPlan:
        """This plan with other settings (a smaller backbone under a budget, the head chosen by CV)."""
        return dataclasses.replace(self, config=config)


def resolve_modality(source: DataSource) -> Modality:
    """The source's modality: the one it names, else detected from the label file."""
    if source.modality:
        return modalities.get(source.modality)
    return modalities.detect(source.labels, dict(source.read_options), text_column=source.text_column,
                             tabular=source.tabular)


def resolve_plan(source: DataSource, *, config: TrainConfig | None, val_labels: str | Path | None,
                 started: float) -> RunPlan:
    """Settings checked and filled in for the source's modality, before anything but the label file's first bytes is
    read. Raises ConfigError for settings that contradict each other or the modality."""
    kind = resolve_modality(source)
    config = (config or TrainConfig()).for_modality(kind.name)
    config.validate()
    if config.cv and val_labels is not None:
        raise ConfigError(f"cv={config.cv} with a --val file: cross-validation holds out folds of the training file; "
                          "give one of them")
    if config.ensemble > 1 and not kind.frozen(config):
        raise ConfigError(f"ensemble={config.ensemble}: an ensemble averages heads on a frozen pretrained encoder; "
                          f"{config.backbone} (pretrained={config.pretrained}) trains the whole network")
    if config.dp_public_val and val_labels is None:
        raise ConfigError("dp_public_val: it marks the --val file public, and no --val file is given; give --val FILE "
                          "or leave --dp-public-val out")
    source = source.with_options(kind.read_options(dict(source.read_options)))
    return RunPlan(source, kind, config, val_labels, TimeBudget(config.budget_seconds(), started))
