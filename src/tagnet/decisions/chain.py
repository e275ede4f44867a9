"""From a model's probabilities to what users see, in one place for the Predictor, `tagnet calibrate` and the report:
the model's probabilities already follow the label hierarchy (the exported ONNX graph applies its rule, and so does
the PyTorch path), `tagnet calibrate`'s temperatures apply to them, and the hierarchy's rule applies again after them
(a label's own temperature may lift it above its parent's); then the thresholds decide and a label is kept only with
its parent."""

from __future__ import annotations

import numpy as np

from tagnet.decisions.calibration import TemperatureScaling
from tagnet.decisions.thresholds import Thresholds, apply_thresholds
from tagnet.hierarchy.tree import Tree


def model_probabilities(probs: np.ndarray, hierarchy: Tree | None) -> np.ndarray:
    """A network's sigmoid outputs made to follow `hierarchy` (tagnet.hierarchy.tree.RULE), as the exported graph's."""
    return probs if hierarchy is None else hierarchy.consistent(probs)


def calibrated_probabilities(probs: np.ndarray, calibration: TemperatureScaling | None,
                             hierarchy: Tree | None) -> np.ndarray:
    """The probabilities users see from a model's (model_probabilities): the temperatures applied, then the hierarchy's
    rule again; float32."""
    if calibration is None:
        return probs
    return model_probabilities(calibration.apply(probs).astype(np.float32), hierarchy)


def decided(probs: np.ndarray, thresholds: Thresholds, hierarchy: Tree | None) -> np.ndarray:
    """(items, labels) bool: the labels `thresholds` predict from probabilities, under `hierarchy` a label only when its
    parent (so every ancestor) is predicted too."""
    chosen = apply_thresholds(probs, thresholds) if len(probs) else np.zeros_like(probs, bool)
    return chosen if hierarchy is None else hierarchy.gate(chosen)
