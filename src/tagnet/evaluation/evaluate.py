"""Evaluate a saved model on a labelled file (images, texts or feature rows) with the artifact's own thresholds."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from tagnet.config.source import DataSource
from tagnet.inference.artifact import Artifact
from tagnet.errors import DataError
from tagnet.evaluation.metrics import MetricsReport, evaluate_rules
from tagnet.hierarchy.targets import with_implied_ancestors
from tagnet.inference.predictor import Predictor
from tagnet.decisions.thresholds import Thresholds, decision_thresholds


def evaluate(artifact: str | Path | Artifact | Predictor, labels: str | Path, *, images_dir: str | Path | None = None,
             read_options: dict | None = None, threshold: float | None = None) -> tuple[MetricsReport, dict[str, str]]:
    """Score a model on a labelled file read as its modality reads it (text files like its training file by default;
    feature tables by the model's column names).

    Labels are predicted with the artifact's thresholds, or with p >= `threshold` for every label when given.

    Returns:
        (report, skipped): the metrics report and {file: reason} for inputs that could not be read.
    Raises:
        DataError when the file's label names differ from the model's, or no input is readable.
    """
    [report], errors = _evaluate_rules(artifact, labels, images_dir=images_dir, read_options=read_options,
                                       rules=[threshold])
    return report, errors


def evaluate_side_by_side(artifact: str | Path | Artifact | Predictor, labels: str | Path, *,
                          images_dir: str | Path | None = None, read_options: dict | None = None
                          ) -> tuple[MetricsReport, dict[str, MetricsReport], dict[str, str]]:
    """As `evaluate`, and from the same pass the other decision rules: (report at the artifact's thresholds,
    {"p>=0.5": report at p >= 0.5 for every label, "f1": report at the per-label F1 thresholds fitted on the run's
    validation data (artifacts from tagnet 0.x before decision rules were saved lack it)}, skipped)."""
    predictor = artifact if isinstance(artifact, Predictor) else Predictor(artifact)
    saved = predictor.artifact.meta.get("extra", {}).get("decision_rules") or {}
    rules: list[float | Thresholds | None] = [None, 0.5]
    names = ["p>=0.5"]
    if "f1" in saved:
        rules.append(Thresholds.from_dict(saved["f1"], num_labels=len(predictor.label_names),
                                          source=f"{predictor.artifact.path} decision_rules.f1"))
        names.append("f1")
    reports, errors = _evaluate_rules(predictor, labels, images_dir=images_dir, read_options=read_options, rules=rules)
    return reports[0], dict(zip(names, reports[1:])), errors


def _evaluate_rules(artifact, labels, *, images_dir, read_options,
                    rules: list[float | Thresholds | None]) -> tuple[list[MetricsReport], dict[str, str]]:
    """One report per decision rule (None: the artifact's thresholds; T: p >= T; or given Thresholds) of one pass
    over the file."""
    predictor = artifact if isinstance(artifact, Predictor) else Predictor(artifact)
    targets, known, probs, errors = labelled_probabilities(predictor, labels, images_dir=images_dir,
                                                           read_options=read_options)
    return evaluate_rules(targets, probs, [rule if isinstance(rule, Thresholds)
                                           else decision_thresholds(predictor.artifact.thresholds, rule)
                                           for rule in rules],
                          label_names=predictor.label_names, known=known, hierarchy=predictor.hierarchy), errors


def labelled_probabilities(predictor: Predictor, labels: str | Path, *, images_dir: str | Path | None = None,
                           read_options: dict | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray, dict[str, str]]:
    """(targets, known, probabilities, skipped) of the readable inputs of a labelled file, read as `evaluate` reads it
    (under a hierarchy with the implied ancestors of its labels added, as training adds them).

    Raises:
        DataError when the file's label names differ from the model's, or no input is readable.
    """
    source = DataSource(labels, images_dir=images_dir, read_options=dict(read_options or {}))
    tree = predictor.hierarchy
    implied = set(tree.implied) if tree is not None else set()
    names = [name for name in predictor.label_names if name not in implied]
    data = predictor.modality.read(source, state=predictor.artifact.state, label_names=names)
    table = data.table.aligned_to(names, what=str(labels), missing_negative=True)
    table = with_implied_ancestors(table, tree) if tree is not None else table
    probs, kept, errors = predictor.modality.probabilities(predictor, list(data.inputs))
    if not kept:
        raise DataError(f"{labels}: none of its {len(table)} inputs could be read (images folder: {images_dir})")
    return table.targets[kept], table.known[kept], probs, errors
