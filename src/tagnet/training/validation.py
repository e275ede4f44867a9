"""A run's validation outputs made one: the held-out rows parted into early-stopping and threshold rows, the heads'
held-out probabilities merged, thresholds fitted on them, and the folds' scores of a cross-validated run."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from tagnet.config.settings import TrainConfig
from tagnet.data.split import train_val_splits
from tagnet.decisions.thresholds import ThresholdFit, Thresholds, decision_mode, fit_decisions, side_rules
from tagnet.engine import PhaseResult
from tagnet.engine.steps import validation_score
from tagnet.errors import DataError
from tagnet.evaluation.metrics import MetricsReport, evaluate_probabilities
from tagnet.hierarchy.tree import Tree

Slices = tuple[np.ndarray, np.ndarray]  # (early-stopping rows, threshold rows): disjoint parts of the held-out rows
ScoreFn = Callable[..., dict[str, float]]


def threshold_slice(targets: np.ndarray, known: np.ndarray, splits: list[tuple[np.ndarray, np.ndarray]], *,
                    share: float | None, seed: int, what: str = "the held-out rows") -> Slices | None:
    """Every split's held-out rows parted, by iterative stratification, into early-stopping rows (which choose the
    epoch, the loss and whether fine-tuning is kept) and `share` of them kept for the thresholds alone; None when
    `share` is 0 or None (thresholds fitted on the rows that chose the epoch). Raises DataError when a part would be
    empty."""
    if not share:
        return None
    held = np.unique(np.concatenate([val for _, val in splits]))
    try:
        stop, kept = train_val_splits(targets, known, rows=held, val_fraction=share, seed=seed)[0]
    except DataError:
        stop = kept = held[:0]
    if len(kept) == 0 or any(not np.isin(val, stop).any() for _, val in splits):
        raise DataError(f"{what}: {len(held)} held-out rows are too few to keep threshold_share={share} of them apart "
                        "for the thresholds; give more validation rows or --set threshold_share=0")
    return np.sort(stop), np.sort(kept)


def stopping_score(val_rows: np.ndarray, slices: Slices | None) -> ScoreFn:
    """What a phase validating on `val_rows` logs and early-stops on (engine.steps.validation_score): computed on those
    of them that are early-stopping rows (all of them when there are no slices); the threshold rows are predicted
    alongside but never compared."""
    if slices is None:
        return validation_score
    mask = np.isin(val_rows, slices[0])

    def score(targets: np.ndarray, probs: np.ndarray, known: np.ndarray) -> dict[str, float]:
        return validation_score(targets[mask], probs[mask], known[mask])

    return score


def validation_thresholds(val: dict[str, np.ndarray], config: TrainConfig | Any) -> ThresholdFit:
    """The run's thresholds, fitted on validation targets, probabilities and known-mask as `config` says (a TrainConfig,
    or any settings with its threshold and decision fields, e.g. CalibrateSettings)."""
    objective = config.objective or "f1"  # settings not resolved for a modality (TrainConfig().for_modality fills them)
    return fit_decisions(val["targets"], val["probs"], objective=objective, confidence=config.confidence,
                         mode=config.threshold_mode or decision_mode(objective), min_positives=config.min_positives, top_k=config.top_k,
                         fixed=config.fixed_threshold, known=val["known"], min_labels=config.min_labels,
                         max_labels=config.max_labels, if_empty=config.if_empty,
                         shrinkage=config.threshold_shrinkage)


def side_rules_dict(val: dict[str, np.ndarray], config: TrainConfig) -> dict[str, Any]:
    """The per-label F1 and p >= 0.5 rules, fitted on the same validation probabilities, that evaluate reports beside
    the model's own (tagnet.decisions.thresholds.side_rules), JSON-able."""
    rules = side_rules(val["targets"], val["probs"], known=val["known"], min_positives=config.min_positives,
                       min_labels=config.min_labels, max_labels=config.max_labels, if_empty=config.if_empty)
    return {name: rule.to_dict() for name, rule in rules.items()}


def merged_validation(splits: list[tuple[np.ndarray, np.ndarray]], results: list[PhaseResult],
                      count: int) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """The heads' validation outputs as one: each validation row's probability averaged over the heads that held it
    out (out of fold). Returns (validation dict, the rows it covers); only the validation rows' arrays are allocated
    (a large table's run validates on a few of its rows)."""
    rows = np.unique(np.concatenate([val_rows for _, val_rows in splits[:len(results)]]))
    assert len(rows) == 0 or rows[-1] < count
    shape = (len(rows), results[0].validation["probs"].shape[1])
    total, votes = np.zeros(shape), np.zeros(len(rows), dtype=np.int64)
    targets, known = np.zeros(shape, dtype=np.float32), np.zeros(shape, dtype=bool)
    for (_, val_rows), result in zip(splits, results):
        at = np.searchsorted(rows, val_rows)
        total[at] += result.validation["probs"]
        votes[at] += 1
        targets[at] = result.validation["targets"]
        known[at] = result.validation["known"]
    return {"probs": (total / votes[:, None]).astype(np.float32), "targets": targets, "known": known}, rows


def fold_scores(splits: list[tuple[np.ndarray, np.ndarray]], results: list[PhaseResult], thresholds: Thresholds,
                label_names: list[str], *, hierarchy: Tree | None = None) -> dict[str, Any]:
    """Each fold's validation mAP, micro- and macro-F1 and Hamming loss (at the out-of-fold thresholds; under a label
    `hierarchy` with its rule applied, as the final report), with their mean and standard deviation over the folds."""
    per_fold = []
    for result in results:
        val = result.validation
        report = evaluate_probabilities(val["targets"], val["probs"], thresholds, label_names=label_names,
                                        known=val["known"], hierarchy=hierarchy)
        per_fold.append({"mAP": report.mAP, "micro_f1": report.micro_f1, "macro_f1": report.macro_f1,
                         "hamming_loss": report.hamming_loss})
    summary: dict[str, Any] = {"folds": len(splits), "per_fold": per_fold}
    for name in per_fold[0]:
        values = np.array([np.nan if fold[name] is None else fold[name] for fold in per_fold], dtype=float)
        values = values[np.isfinite(values)]  # a fold without a positive of any label has no mAP
        summary[name] = {"mean": float(values.mean()) if len(values) else None,
                         "std": float(values.std(ddof=1)) if len(values) > 1 else 0.0}
    return summary


def held_out_decisions(val: dict[str, np.ndarray], val_rows: np.ndarray, slices: Slices | None, config: TrainConfig,
                       label_names: list[str], *, hierarchy: Tree | None = None
                       ) -> tuple[ThresholdFit, MetricsReport, dict[str, np.ndarray], dict[str, Any] | None]:
    """The thresholds and the validation report from the merged held-out outputs `val` of rows `val_rows`.

    Without slices: thresholds fitted and scored on every held-out row. With them: fitted on the threshold rows only
    and scored on the early-stopping rows (the honest estimate, reported), beside the optimistic one the run would have
    reported before: thresholds fitted and scored on the early-stopping rows, the rows that chose the epoch.
    Reports take the label `hierarchy`'s rule into account. Returns (fit, report, the outputs the thresholds were fitted
    on, the two estimates or None)."""
    if slices is None:
        fit = validation_thresholds(val, config)
        return fit, evaluate_probabilities(val["targets"], val["probs"], fit.thresholds, label_names=label_names,
                                           known=val["known"], hierarchy=hierarchy), val, None
    stop, kept = ({key: value[np.isin(val_rows, rows)] for key, value in val.items()} for rows in slices)
    fit = validation_thresholds(kept, config)
    report = evaluate_probabilities(stop["targets"], stop["probs"], fit.thresholds, label_names=label_names,
                                    known=stop["known"], hierarchy=hierarchy)
    own = validation_thresholds(stop, config).thresholds
    optimistic = evaluate_probabilities(stop["targets"], stop["probs"], own, label_names=label_names,
                                        known=stop["known"], hierarchy=hierarchy)
    n_stop, n_kept = len(stop["probs"]), len(kept["probs"])
    estimates = {
        "honest": {**report.summary(), "rows": n_stop,
                   "how": f"thresholds fitted on {n_kept} held-out rows that chose nothing, scored on the {n_stop} "
                          "rows that chose the epoch"},
        "optimistic": {**optimistic.summary(), "rows": n_stop,
                       "how": f"thresholds fitted and scored on the {n_stop} rows that chose the epoch"}}
    return fit, report, kept, estimates
