"""`tagnet calibrate`: refit a trained model's thresholds (and per-label temperature scaling) on new labelled data,
without retraining; the artifact's previous tagnet.json is kept beside it as tagnet.json.previous."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from tagnet.inference.artifact import META_FILE, load_artifact
from tagnet.report.model_card import write_model_card
from tagnet.decisions.calibration import TemperatureScaling, ece, fit_temperature
from tagnet.decisions.chain import calibrated_probabilities
from tagnet.config.settings import DECISION_SETTINGS, TrainConfig
from tagnet.evaluation.evaluate import labelled_probabilities
from tagnet.files import atomic_write, write_json
from tagnet.training.validation import validation_thresholds
from tagnet.inference.predictor import ONNX_FILE, Predictor
from tagnet.decisions.thresholds import ThresholdFit, decision_mode, side_rules

PREVIOUS_SUFFIX = ".previous"


@dataclass
class CalibrationResult:
    """What `calibrate` fitted and wrote.

    Attributes:
        artifact_dir: the artifact whose tagnet.json was rewritten; previous: the file keeping the former one.
        fit: the new thresholds and the labels missing the objective's target.
        calibration: the per-label temperatures, or None (--no-temperature).
        ece_before, ece_after: per-label expected calibration error on the calibration data, before and after.
        items: how many labelled inputs were used; skipped: {source: reason} of those that could not be read.
        notes: labels missing the objective's target, and a stale ONNX model.
    """

    artifact_dir: Path
    label_names: list[str]
    previous: Path
    fit: ThresholdFit
    calibration: TemperatureScaling | None
    ece_before: np.ndarray
    ece_after: np.ndarray
    items: int
    skipped: dict[str, str]
    notes: list[str]


def decision_config(artifact_config: dict[str, Any], thresholds_mode: str, top_k: int, fixed: float,
                    **given: Any) -> TrainConfig:
    """The threshold settings to refit with: the model's (its config), the `given` non-None ones instead; a new
    objective drops the model's confidence unless one is given. Raises ConfigError for bad values."""
    kept = {name: artifact_config[name] for name in DECISION_SETTINGS if name in artifact_config}
    if given.get("objective") is not None:
        kept.pop("confidence", None)
    kept.update({name: value for name, value in given.items() if value is not None})
    config = TrainConfig(threshold_mode=thresholds_mode, top_k=top_k, fixed_threshold=fixed,
                         min_positives=int(artifact_config.get("min_positives", 5)), **kept)
    config.validate(source="calibrate")
    return config


def calibrate(run: str | Path, labels: str | Path, *, images_dir: str | Path | None = None,
              read_options: dict | None = None, objective: str | None = None, confidence: float | None = None,
              min_labels: int | None = None, max_labels: int | None = None, if_empty: str | None = None,
              temperature: bool = True) -> CalibrationResult:
    """Refit the thresholds of a trained model on labelled data it was not trained on, optionally after fitting
    per-label temperature scaling; rewrite its tagnet.json atomically (the former one kept as tagnet.json.previous;
    move it back to undo). Predictor, serve and evaluate then apply the temperatures before the new thresholds.

    Args:
        run: a run or artifact folder.
        labels: a labelled file read as `evaluate` reads it (images with `images_dir`, texts, feature tables).
        objective, confidence, min_labels, max_labels, if_empty: the decision settings (tagnet.config.settings); None keeps
            the model's. The threshold mode and top_k stay the model's, except that a mode the model's objective
            implied (fixed for hamming, per-label otherwise) follows a new objective.
        temperature: fit temperature scaling (else the probabilities stay the model's own).
    Raises:
        ConfigError for bad settings (before the data is read), DataError for unreadable or mismatched data.
    """
    artifact = load_artifact(run)
    th = artifact.thresholds
    mode = th.mode
    if objective is not None and mode == decision_mode(artifact.config.get("objective") or "f1"):
        mode = decision_mode(objective)  # the rule followed the model's objective: it follows the new one
    config = decision_config(artifact.config, mode, th.top_k, th.values[0] if th.mode == "fixed" else 0.5,
                             objective=objective, confidence=confidence, min_labels=min_labels, max_labels=max_labels,
                             if_empty=if_empty)
    predictor = Predictor(artifact, calibrated=False)
    targets, known, probs, skipped = labelled_probabilities(predictor, labels, images_dir=images_dir,
                                                            read_options=read_options)
    scaling = fit_temperature(targets, probs, known) if temperature else None
    scored = calibrated_probabilities(probs, scaling, predictor.hierarchy)  # as Predictor.run
    fit = validation_thresholds({"targets": targets, "probs": scored, "known": known}, config)

    meta_path = artifact.path / META_FILE
    former = meta_path.read_bytes()
    meta = json.loads(former)
    meta["thresholds"] = fit.thresholds.to_dict()
    meta.pop("calibration", None)
    if scaling:
        meta["calibration"] = scaling.to_dict()
    meta["config"] = {**meta["config"], **{name: getattr(config, name) for name in DECISION_SETTINGS}}
    meta.setdefault("extra", {})["decision_rules"] = {  # evaluate's side-by-side rules, refitted on the same data
        name: rule.to_dict() for name, rule in side_rules(
            targets, scored, known=known, min_positives=config.min_positives, min_labels=config.min_labels,
            max_labels=config.max_labels, if_empty=config.if_empty).items()}
    meta["extra"]["calibrated"] = {
        "labels": str(labels), "items": len(targets), "temperature": bool(scaling),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    previous = meta_path.with_name(META_FILE + PREVIOUS_SUFFIX)
    atomic_write(previous, lambda temp: temp.write_bytes(former))
    write_json(meta_path, meta)
    write_model_card(artifact.path, meta)
    notes = fit.notes(artifact.label_names)
    if (artifact.path / ONNX_FILE).is_file():
        notes.append(f"{artifact.path / ONNX_FILE} still carries the former thresholds in its metadata (tagnet itself "
                     f"uses tagnet.json); re-run `tagnet export {artifact.path}` to update it")
    return CalibrationResult(artifact.path, artifact.label_names, previous, fit, scaling, ece(targets, probs, known),
                             ece(targets, scored, known), len(targets), skipped, notes)
