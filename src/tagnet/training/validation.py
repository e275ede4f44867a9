"""A run's validation outputs made one: the heads' held-out probabilities merged, thresholds fitted on them, and the
folds' scores of a cross-validated run."""

from __future__ import annotations

from typing import Any

import numpy as np

from tagnet.config.settings import TrainConfig
from tagnet.decisions.thresholds import ThresholdFit, Thresholds, decision_mode, fit_decisions, side_rules
from tagnet.engine import PhaseResult
from tagnet.evaluation.metrics import evaluate_probabilities


def validation_thresholds(val: dict[str, np.ndarray], config: TrainConfig | Any) -> ThresholdFit:
    """The run's thresholds, fitted on validation targets, probabilities and known-mask as `config` says (a TrainConfig,
    or any settings with its threshold and decision fields, e.g. CalibrateSettings)."""
    objective = config.objective or "f1"  # settings not resolved for a modality (TrainConfig().for_modality fills them)
    return fit_decisions(val["targets"], val["probs"], objective=objective, confidence=config.confidence,
                         mode=config.threshold_mode or decision_mode(objective), min_positives=config.min_positives, top_k=config.top_k,
                         fixed=config.fixed_threshold, known=val["known"], min_labels=config.min_labels,
                         max_labels=config.max_labels, if_empty=config.if_empty)


def side_rules_dict(val: dict[str, np.ndarray], config: TrainConfig) -> dict[str, Any]:
    """The per-label F1 and p >= 0.5 rules, fitted on the same validation probabilities, that evaluate reports beside
    the model's own (tagnet.decisions.thresholds.side_rules), JSON-able."""
    rules = side_rules(val["targets"], val["probs"], known=val["known"], min_positives=config.min_positives,
                       min_labels=config.min_labels, max_labels=config.max_labels, if_empty=config.if_empty)
    return {name: rule.to_dict() for name, rule in rules.items()}


def merged_validation(splits: list[tuple[np.ndarray, np.ndarray]], results: list[PhaseResult],
                      count: int) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """The heads' validation outputs as one: each validation row's probability averaged over the heads that held it
    out (out of fold). Returns (validation dict, the rows it covers)."""
    first = results[0].validation
    total = np.zeros((count, first["probs"].shape[1]))
    votes = np.zeros(count, dtype=np.int64)
    targets, known = np.zeros_like(total, dtype=np.float32), np.zeros_like(total, dtype=bool)
    for (_, val_rows), result in zip(splits, results):
        total[val_rows] += result.validation["probs"]
        votes[val_rows] += 1
        targets[val_rows] = result.validation["targets"]
        known[val_rows] = result.validation["known"]
    rows = np.flatnonzero(votes)
    return {"probs": (total[rows] / votes[rows, None]).astype(np.float32), "targets": targets[rows],
            "known": known[rows]}, rows


def fold_scores(splits: list[tuple[np.ndarray, np.ndarray]], results: list[PhaseResult], thresholds: Thresholds,
                label_names: list[str]) -> dict[str, Any]:
    """Each fold's validation mAP, micro- and macro-F1 and Hamming loss (at the out-of-fold thresholds), with their
    mean and standard deviation over the folds."""
    per_fold = []
    for result in results:
        val = result.validation
        report = evaluate_probabilities(val["targets"], val["probs"], thresholds, label_names=label_names,
                                        known=val["known"])
        per_fold.append({"mAP": report.mAP, "micro_f1": report.micro_f1, "macro_f1": report.macro_f1,
                         "hamming_loss": report.hamming_loss})
    summary: dict[str, Any] = {"folds": len(splits), "per_fold": per_fold}
    for name in per_fold[0]:
        values = np.array([np.nan if fold[name] is None else fold[name] for fold in per_fold], dtype=float)
        values = values[np.isfinite(values)]  # a fold without a positive of any label has no mAP
        summary[name] = {"mean": float(values.mean()) if len(values) else None,
                         "std": float(values.std(ddof=1)) if len(values) > 1 else 0.0}
    return summary
