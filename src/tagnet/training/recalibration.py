"""Probabilities of a loss that trades calibration for ranking (ASL, focal, weighted BCE) mapped back to calibrated
ones: per-label Platt scaling fitted on the held-out threshold rows, folded into the model's last layer."""

from __future__ import annotations

from typing import Any

import numpy as np

from tagnet.decisions.calibration import ece, fit_platt
from tagnet.models.base import fold_logit_map

# Losses whose probabilities are not the labels' frequencies: ASL down-weights easy negatives (GoEmotions: per-label
# calibration error about 0.2), focal loss flattens confident outputs, weighted BCE shifts each label's odds.
RECALIBRATED_LOSSES = ("asl", "focal", "weighted_bce")


def recalibrate(run: Any) -> dict[str, Any] | None:
    """For a run (tagnet.training.stages.Run) of one head trained with a RECALIBRATED_LOSSES loss whose held-out rows
    are sliced: per-label Platt maps (decisions.calibration.fit_platt) fitted on the threshold rows' probabilities,
    folded into the model's last Linear (models.base.fold_logit_map) and applied to the held-out probabilities, so
    the thresholds, the reports, val_predictions.csv and every later prediction see calibrated probabilities. Each
    label's ranking is kept, so its best threshold's decisions are too. Said in one line; returns the record for
    metrics.json (the calibration error on the early-stopping rows, which the maps never saw, before and after), or
    None when it does not apply."""
    loss = run.plan.config.loss
    if run.slices is None or loss not in RECALIBRATED_LOSSES or len(run.results) != 1:
        return None
    val, rows = run.results[0].validation, run.splits[0][1]
    stop, kept = (np.isin(rows, part) for part in run.slices)
    scaling = fit_platt(val["targets"][kept], val["probs"][kept], val["known"][kept])
    if not fold_logit_map(run.model.head, scaling.slopes, scaling.intercepts):
        return None

    def error() -> float:
        return round(float(np.nanmean(ece(val["targets"][stop], val["probs"][stop], val["known"][stop]))), 4)

    before = error()
    val["probs"] = scaling.apply(val["probs"]).astype(np.float32)
    record = {"method": "platt", "loss": loss, "fitted_on_rows": int(kept.sum()), "scored_on_rows": int(stop.sum()),
              "ece_before": before, "ece_after": error()}
    run.console.print(f"probabilities recalibrated ({loss} trades calibration for ranking): per-label Platt scaling "
                      f"fitted on the {record['fitted_on_rows']} threshold rows, folded into the last layer; "
                      f"calibration error on the {record['scored_on_rows']} early-stopping rows {before:.3f} -> "
                      f"{record['ece_after']:.3f}", soft_wrap=True)
    return record
