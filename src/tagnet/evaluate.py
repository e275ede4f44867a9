"""Evaluate a saved model on a labelled image set with the artifact's own thresholds."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from tagnet.artifact import Artifact
from tagnet.data.images import resolve_image_paths
from tagnet.data.labels import read_labels
from tagnet.errors import DataError
from tagnet.metrics import MetricsReport, evaluate_probabilities
from tagnet.predict import Predictor, load_predictor
from tagnet.thresholds import decision_thresholds

if TYPE_CHECKING:
    from tagnet.predict_vectors import VectorPredictor


def evaluate(artifact: str | Path | Artifact | Predictor | VectorPredictor, labels: str | Path, *, images_dir: str | Path | None = None,
             read_options: dict | None = None, threshold: float | None = None) -> tuple[MetricsReport, dict[str, str]]:
    """Score a model on labelled images (or texts / feature rows, for text and tabular models).

    Labels are predicted with the artifact's thresholds, or with p >= `threshold` for every label when given.

    Returns:
        (report, skipped): the metrics report and {file: reason} for images that could not be read.
    Raises:
        DataError when the label file's label names differ from the model's, or no image is readable.
    """
    predictor = load_predictor(artifact) if isinstance(artifact, (str, Path, Artifact)) else artifact
    if not isinstance(predictor, Predictor):  # text and tabular models
        from tagnet.predict_vectors import evaluate_vectors

        return evaluate_vectors(predictor, labels, read_options=read_options, threshold=threshold)
    table = read_labels(labels, **(read_options or {})).aligned_to(predictor.label_names, what=str(labels))
    paths = resolve_image_paths(table.items, images_dir)
    results = predictor.predict_paths(paths)
    if not results.predictions:
        raise DataError(f"{labels}: none of its {len(paths)} images could be read (images folder: {images_dir})")
    readable = {p.source for p in results.predictions}
    rows = [i for i, path in enumerate(paths) if str(path) in readable]
    probs = np.array([[p.probabilities[n] for n in predictor.label_names] for p in results.predictions])
    report = evaluate_probabilities(table.targets[rows], probs, decision_thresholds(predictor.artifact.thresholds, threshold),
                                    label_names=predictor.label_names, known=table.known[rows])
    return report, results.errors
