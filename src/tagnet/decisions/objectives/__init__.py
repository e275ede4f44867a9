"""Threshold objectives: one module per objective, in one registry that parsing, the help and the settings read."""

from __future__ import annotations

from tagnet.decisions.objectives.base import Objective, Target
from tagnet.decisions.objectives.f1 import F1
from tagnet.decisions.objectives.fbeta import FBeta
from tagnet.decisions.objectives.hamming import Hamming
from tagnet.decisions.objectives.precision import Precision
from tagnet.decisions.objectives.recall import Recall
from tagnet.errors import ConfigError

# A new objective: its module (a subclass of Objective or Target) and one entry here.
REGISTRY: dict[str, type[Objective]] = {"f1": F1, "fbeta": FBeta, "hamming": Hamming, "precision": Precision,
                                        "recall": Recall}


def targets_help() -> str:
    """The target objectives, e.g. "precision>=P or recall>=R"."""
    return " or ".join(f"{cls.name}>={cls.letter}" for cls in REGISTRY.values() if issubclass(cls, Target))


def confidence_problem(goal: Objective, mode: str, confidence: float | None) -> str | None:
    """Why `confidence` does not apply (it guarantees a target objective's per-label thresholds), or None."""
    if confidence is not None and not (0 < confidence < 1 and isinstance(goal, Target) and mode == "per-label"):
        return (f"confidence={confidence!r}: expected a number in (0, 1) with a {targets_help()} objective "
                f"and per-label thresholds (got objective {goal}, mode {mode!r})")
    return None


def objectives_help() -> str:
    """Every registered objective's syntax: "f1, fbeta:B (B > 0), hamming, precision>=P or recall>=R (P, R in
    (0, 1])" for the built-in ones."""
    letters = [cls.letter for cls in REGISTRY.values() if issubclass(cls, Target)]
    plain = [cls.syntax for cls in REGISTRY.values() if not issubclass(cls, Target)]
    return ", ".join(plain + ([f"{targets_help()} ({', '.join(letters)} in (0, 1])"] if letters else []))


def modes_help(mode: str) -> str:
    """The objectives that apply to a threshold mode, e.g. "f1 or hamming"."""
    return " or ".join(name for name, cls in REGISTRY.items() if mode in cls.modes)


def parse_objective(text: str) -> Objective:
    """The registered Objective of a string (f1 | fbeta:B | hamming | precision>=P | recall>=R | ...).

    Raises:
        ConfigError: no registered objective reads the string (e.g. B <= 0, or P, R outside (0, 1]).
    """
    spec = str(text).strip().lower().replace(" ", "")
    for cls in REGISTRY.values():
        objective = cls.parse(spec)
        if objective is not None:
            return objective
    raise ConfigError(f"objective {text!r} is not one of {objectives_help()}")


__all__ = ["REGISTRY", "Objective", "Target", "modes_help", "objectives_help", "parse_objective", "targets_help"]
