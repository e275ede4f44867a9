"""Recipes: what a run trains after its inputs are ready, one small class each behind one interface (the training
stages it runs), and the rule that chooses one from the settings, the data's size and the time budget."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from tagnet.config.settings import TrainConfig, parse_duration
from tagnet.training.budget import Throughput, duration, plan_passes
from tagnet.training.loss_choice import probe_rows

if TYPE_CHECKING:
    from tagnet.modalities.base import LabeledInputs, Modality
    from tagnet.models import TagnetModel


@dataclass
class Recipe:
    """What a run trains: `stages` (names of tagnet.training.stages.RECIPE_STAGES, run in order); `budget` in seconds
    (None: no limit), the throughput it was chosen with (None: measured when a phase is sized) and the sentence that
    says why. Kept in RUN/checkpoints/recipe.json, so a resumed run follows the recipe it started with."""

    name: ClassVar[str]
    stages: ClassVar[tuple[str, ...]]
    budget: float | None = None
    throughput: Throughput | None = None
    reason: str = ""

    def to_dict(self) -> dict[str, Any]:
        """JSON-able: {"name", "budget", "throughput", "reason"}."""
        return {"name": self.name, **asdict(self)}

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> Recipe:
        """The recipe to_dict wrote."""
        throughput = values.get("throughput")
        return RECIPES[values["name"]](values.get("budget"), Throughput(**throughput) if throughput else None,
                                       values.get("reason", ""))


class HeadOnly(Recipe):
    """Heads on the frozen encoder's cached outputs."""

    name, stages = "head", ("frozen_outputs", "heads")


class HeadThenFinetune(Recipe):
    """Heads on the frozen encoder, then the whole network fine-tuned from them (as much as fits the budget), kept only
    if it validates at least as well."""

    name, stages = "head+finetune", ("frozen_outputs", "heads", "finetune")


class PrivateHead(Recipe):
    """One head on the frozen encoder's cached outputs, trained with differentially private SGD (--dp-epsilon)."""

    name, stages = "dp-head", ("frozen_outputs", "private_head")


class Finetune(Recipe):
    """The whole pretrained network fine-tuned from the start, no frozen pass. For text: the word-embedding table
    fixed, batches of similar length padded to their longest text (a multiple of 8 in half precision), fused AdamW
    (TextModality.network_loaders, engine.optim.adamw)."""

    name, stages = "finetune", ("finetune_all",)


class FromScratch(Recipe):
    """A network without a frozen encoder, trained whole."""

    name, stages = "train", ("train_all",)


RECIPES: dict[str, type[Recipe]] = {recipe.name: recipe for recipe in (HeadOnly, HeadThenFinetune, PrivateHead, Finetune,
                                                                        FromScratch)}


def phase_epochs(config: TrainConfig, phase: str) -> int:
    """The most epochs phase `phase` may train: config.epochs bounds every phase, fine-tuning's also finetune_epochs."""
    return min(config.epochs, config.finetune_epochs) if phase == "finetune" else config.epochs


def choose_recipe(kind: Modality, model: TagnetModel | None, data: LabeledInputs, split: tuple[np.ndarray, np.ndarray],
                  *, config: TrainConfig, elapsed: float) -> Recipe:
    """The recipe of a run, given its first split's (training, validation) rows and the seconds taken so far.

    A network without a frozen encoder trains whole. Otherwise heads on the frozen encoder, then fine-tuning when
    --finetune asks for it, or when a --time-budget is given to a modality that fine-tunes (as much as fits, decided
    after the heads). With neither --finetune nor --no-finetune nor an ensemble, a modality declaring a default
    budget (text) chooses by choose_by_budget. With --dp-epsilon one head trained privately."""
    given = config.budget_seconds()
    if not kind.frozen(config):
        return FromScratch(given)
    if config.dp_epsilon is not None:
        return PrivateHead(given, reason=f"differentially private head (ε = {config.dp_epsilon:g}): DP-SGD for "
                                         f"{config.dp_epochs} epochs, no early stopping")
    if head_only(kind, config):
        return HeadOnly(given, reason="as asked")
    if config.finetune is None and config.ensemble == 1 and kind.spec.default_time_budget is not None:
        return choose_by_budget(kind, model, data, split, config=config, elapsed=elapsed)
    return HeadThenFinetune(given, reason=(f"time budget {duration(given)}" if given else "as asked")
                            if config.finetune else "")


def head_only(kind: Modality, config: TrainConfig) -> bool:
    """Whether choose_recipe trains heads on the frozen encoder and nothing else, known from the settings alone: a
    frozen encoder, no --finetune, no --dp-epsilon (a private head is its own recipe), and neither the modality's
    default time budget (text: chosen by measuring) nor a --time-budget that a modality fine-tuning by default would
    spend on fine-tuning (without --no-finetune)."""
    if not kind.frozen(config) or config.finetune or config.dp_epsilon is not None:
        return False
    auto = config.finetune is None and config.ensemble == 1
    if auto and kind.spec.default_time_budget is not None:
        return False
    return not (auto and config.budget_seconds() is not None and "finetune" not in kind.spec.refuses)


def choose_by_budget(kind: Modality, model: TagnetModel | None, data: LabeledInputs,
                     split: tuple[np.ndarray, np.ndarray], *, config: TrainConfig, elapsed: float) -> Recipe:
    """Fine-tune within the time budget (default kind.spec.default_time_budget), from the throughput kind measures on a
    few training batches: up to kind.spec.head_first_up_to training inputs a head on the frozen encoder first, then
    fine-tuning kept only if it validates at least as well; more inputs fine-tune the whole network from the start
    (the frozen pass would cost minutes; --loss auto's probe embeds a sample); when not even MIN_PASSES of fine-tuning
    fit, the head alone."""
    given = config.budget_seconds()
    budget = given or parse_duration(kind.spec.default_time_budget)
    throughput = kind.throughput(model, data, split, config)
    n_train, n_val = len(split[0]), len(split[1])
    head_first = n_train <= kind.spec.head_first_up_to
    # the frozen pass over every input, or --loss auto's probe over a sample of them (training.loss_choice)
    embedded = n_train + n_val if head_first else probe_rows(n_train, n_val) if config.loss == "auto" else 0
    embed = embedded / throughput.eval_per_s
    plan = plan_passes(seconds_left=budget - elapsed - embed, n_train=n_train, n_val=n_val,
                       batch_size=config.batch_size, throughput=throughput, max_passes=phase_epochs(config, "finetune"))
    said = f"time budget {duration(budget)}{'' if given else ' (default)'}"
    on = f" on {throughput.threads} thread{'s' * (throughput.threads > 1)}" if throughput.threads else ""
    rate = f"{throughput.train_per_s:.0f} {kind.name}s/s measured{on}"
    if plan is None:
        return HeadOnly(budget, throughput, f"{said}: too short to fine-tune on {n_train} {kind.name}s ({rate}); "
                                            "training a head on the frozen encoder")
    if head_first:
        return HeadThenFinetune(budget, throughput,
                                f"{said}, {n_train} training {kind.name}s: a head on the frozen encoder, then fine-tuning "
                                f"(about {plan.passes:g} passes at {rate}), kept only if it validates better")
    what = f"the encoder above its lowest {config.finetune_frozen_layers} layers" if config.finetune_frozen_layers \
        else "the whole encoder"
    return Finetune(budget, throughput, f"{said}: fine-tuning {what} on {n_train} {kind.name}s for "
                                        f"{plan.passes:g} passes (about {plan.estimated_seconds / 60:.1f} min at {rate})")
