"""The image head's label smoothing chosen by its inner CV (issue 25): nested 5-fold CV on miml-scene's 1,600 shared
photos of the default head before (label smoothing 0, as given) and after (the inner 5-fold CV that chooses the epochs
also chooses the label smoothing from training.selection.LABEL_SMOOTHINGS on the run's selection metric, thresholds
fitted out of fold), for several head seeds.

Each outer fold's training rows train the head exactly as the default command does (select_head on the run's own head,
then fit_final_heads on every row, which folds per-label temperatures into a smoothed head; thresholds fitted on the
inner out-of-fold probabilities it returns); the outer fold's held-out photos only score it, also for calibration
(ECE of their probabilities, mean over labels). Also scored: each held-out photo's probabilities averaged with its
mirror image's (thresholds as fitted). mAP: mean over outer folds; micro-F1 pooled over them, with a 95% bootstrap interval over the photos of one
arm and of the paired difference after - before.

Run: python benchmarks/smoothing.py --scene /work/shared/data/miml-scene [--cache /tmp/refit-cache/scene]
     [--seeds 0 7] [--out benchmarks/out/smoothing] [--backbone efficientnet_lite0+efficientnet_lite1+...]
     [--set head_hidden=512 ...]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

import numpy as np
import torch
from rich.console import Console
from sklearn.metrics import average_precision_score

from refit import SCENE, scene_features
from tagnet.config.settings import parse_overrides
from tagnet.data.split import train_val_splits
from tagnet.decisions.calibration import ece
from tagnet.decisions.thresholds import apply_thresholds
from tagnet.engine.headfit import head_probabilities
from tagnet.models.base import make_head as make_label_head
from tagnet.training.selection import fit_final_heads, select_head
from tagnet.training.validation import validation_thresholds

BOOTSTRAP = 2000
ARMS = {"before": 0.0, "after": None, "fixed-0.1": 0.1}  # the label smoothing given (None: chosen by the inner CV)


def arm(config, x, mirror, targets, known, outer):
    """Pooled held-out predictions (plain, mirror-averaged), each fold's mAP (plain, mirror-averaged), the smoothing
    and epochs chosen per fold, and the held-out probabilities' calibration error (ECE, mean over labels), of the
    default head trained under `config` on each outer fold."""
    y = targets > 0
    pred, pred_mirror = np.zeros(y.shape, bool), np.zeros(y.shape, bool)
    held_probs = np.zeros(y.shape, np.float32)
    maps, chosen, scores = [], [], []
    for rows, held in outer:
        def make_head():
            return make_label_head(x.shape[1], targets.shape[1], dropout=config.dropout,
                                   head_hidden=config.head_hidden or 0)
        torch.manual_seed(config.seed)  # as the run seeds everything before its CV
        selection = select_head(config, x[rows], targets[rows], known[rows], make_head=make_head,
                                thresholds_for=lambda val: validation_thresholds(val, config).thresholds,
                                console=Console(quiet=True), names=("head",), augmented=mirror[rows], refit=True)
        final = selection.applied(config)
        torch.manual_seed(config.seed)
        head = make_head()
        fitted = fit_final_heads([head], x[rows], targets[rows], known[rows], selection, config=final,
                                 augmented=mirror[rows])  # its validation: the out-of-fold probabilities, as the head's
        thresholds = validation_thresholds(fitted[0].validation, final).thresholds
        plain = head_probabilities(head, torch.from_numpy(x[held]))
        held_probs[held] = plain
        averaged = (plain + head_probabilities(head, torch.from_numpy(mirror[held]))) / 2
        pred[held], pred_mirror[held] = apply_thresholds(plain, thresholds), apply_thresholds(averaged, thresholds)
        maps.append([average_precision_score(y[held], p, average="macro") for p in (plain, averaged)])
        chosen.append((final.label_smoothing or 0.0, selection.epochs))
        scores.append(selection.candidates["head"].get("smoothing_scores"))
    return pred, pred_mirror, np.array(maps), chosen, scores, float(ece(targets, held_probs, known).mean())


def micro_f1(y: np.ndarray, pred: np.ndarray, rows: np.ndarray | None = None) -> float:
    """Pooled micro-F1 of predictions `pred` on rows `rows` (all by default)."""
    if rows is not None:
        y, pred = y[rows], pred[rows]
    tp = (y & pred).sum()
    return float(2 * tp / (y.sum() + pred.sum()))


def bootstrap(y: np.ndarray, first: np.ndarray, second: np.ndarray | None = None, *, seed: int = 0) -> tuple[float, float]:
    """95% interval of micro-F1 of `first` (or of `second` minus `first`) over photos drawn with replacement."""
    rng = np.random.default_rng(seed)
    draws = []
    for _ in range(BOOTSTRAP):
        rows = rng.integers(0, len(y), len(y))
        value = micro_f1(y, first, rows)
        draws.append(value if second is None else micro_f1(y, second, rows) - value)
    low, high = np.percentile(draws, [2.5, 97.5])
    return float(low), float(high)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--scene", type=Path, default=SCENE)
    parser.add_argument("--cache", type=Path, default=Path("/tmp/refit-cache/scene"))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 7])
    parser.add_argument("--out", type=Path, default=Path("benchmarks/out/smoothing"))
    parser.add_argument("--arms", nargs="+", choices=list(ARMS), default=["before", "after"])
    parser.add_argument("--backbone", help="another image model than the default's (e.g. a fusion of three)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="another value of a head setting, as tagnet train --set takes it (e.g. head_hidden=512)")
    args = parser.parse_args()
    config, _, x, mirror, table = scene_features(args.scene, args.cache, args.backbone)
    config = config.updated(**parse_overrides(args.overrides))
    targets, known = table.targets, table.known
    y = targets > 0
    outer = train_val_splits(targets, known, folds=5, seed=1)  # seed 1: not the inner folds' seed
    args.out.mkdir(parents=True, exist_ok=True)
    print("| seed | arm | mAP | micro-F1 (95% bootstrap) | mirror-averaged mAP / micro-F1 | held-out ECE | smoothing, "
          "epochs per fold | seconds |")
    print("|---|---|---|---|---|---|---|---|")
    for seed in args.seeds:
        preds = {}
        for name in args.arms:
            started = time.perf_counter()
            tried = dataclasses.replace(config, seed=seed, refit=None, label_smoothing=ARMS[name],
                                        label_smoothing_cv=ARMS[name] is None)
            pred, pred_mirror, maps, chosen, scores, error = arm(tried, x, mirror, targets, known, outer)
            preds[name] = pred
            np.savez(args.out / f"{name}-seed{seed}.npz", pred=pred, pred_mirror=pred_mirror, maps=maps)
            (args.out / f"{name}-seed{seed}.json").write_text(json.dumps({"chosen": chosen, "inner_scores": scores}))
            low, high = bootstrap(y, pred)
            print(f"| {seed} | {name} | {maps[:, 0].mean():.4f} | {micro_f1(y, pred):.4f} ({low:.3f}-{high:.3f}) | "
                  f"{maps[:, 1].mean():.4f} / {micro_f1(y, pred_mirror):.4f} | {error:.3f} | "
                  f"{'; '.join(f'{s:g}, {e}' for s, e in chosen)} | {time.perf_counter() - started:.0f} |", flush=True)
        earlier = args.out / f"before-seed{seed}.npz"  # an earlier run's "before" arm of this seed
        before = preds.pop("before", None) if "before" in preds or not earlier.is_file() else np.load(earlier)["pred"]
        for name in preds if before is not None else ():
            low, high = bootstrap(y, before, preds[name])
            difference = micro_f1(y, preds[name]) - micro_f1(y, before)
            print(f"| {seed} | {name} - before | | {difference:+.4f} ({low:+.3f}..{high:+.3f}) | | | | |", flush=True)


if __name__ == "__main__":
    main()
