"""Which decision rule raises micro-F1 without tuning to one set (issue 25): nested 5-fold CV on miml-scene's 1,600
shared photos, then the MULAN train/test splits.

Photos: each outer fold's training rows train the default image head as the default command does (an inner 5-fold CV
chooses the epochs and gives out-of-fold probabilities, then the head trains on every one of those rows:
benchmarks/refit.py's "after" arm); every rule is fitted on the inner out-of-fold probabilities only and scored on the
outer fold's held-out photos, which choose nothing. Also scored: each held-out photo's probabilities averaged with its
mirror image's (test-time mirror averaging, thresholds as fitted). MULAN (emotions, scene, yeast): one L2 logistic
regression per label (scikit-learn, C=0.1, standardised features), out-of-fold probabilities of 5 folds of the train
split fit each rule, the test split scores it.

Rules (tagnet.decisions.thresholds.fit_decisions, objective f1): per-label (today's default), global (one threshold,
the micro-F1 optimum), shrinkage auto (per-label thresholds shrunk toward the global one, the strength chosen by
cross-fitting on the same out-of-fold rows), p >= 0.5; each also with if_empty=top1.

Run: python benchmarks/threshold_rules.py [--scene ../shared/data/miml-scene] [--cache /tmp/refit-cache/scene]
     [--mulan ../shared/data/mulan] [--sets emotions scene yeast]
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import numpy as np
import torch
from rich.console import Console
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import average_precision_score, f1_score

from refit import SCENE, scene_features
from tagnet.data.feature_table import fit_standardization, read_feature_table, standardize
from tagnet.data.split import train_val_splits
from tagnet.decisions.thresholds import apply_thresholds, fit_decisions
from tagnet.engine.headfit import head_probabilities
from tagnet.models.base import make_head as make_label_head
from tagnet.training.selection import fit_final_heads, select_head
from tagnet.training.validation import validation_thresholds

MULAN = SCENE.parents[1] / "mulan"
RULES = {"per-label (today)": {}, "global": {"mode": "global"}, "shrinkage auto": {"shrinkage": "auto"},
         "p >= 0.5": {"mode": "fixed"}}


def rule_predictions(targets, oof, known, probs, rule, if_empty):
    """Labels predicted on `probs` by `rule` fitted (objective f1) on the out-of-fold `oof`."""
    fit = fit_decisions(targets, oof, known=known, objective="f1", if_empty=if_empty, **RULES[rule])
    return apply_thresholds(probs, fit.thresholds), fit.shrinkage


def photo_folds(scene: Path, cache: Path):
    """Per outer fold: (training rows, held-out rows, inner out-of-fold probabilities, held-out probabilities of the
    photos and of their mirror images), the targets and the known mask."""
    config, _, x, mirror, table = scene_features(scene, cache)
    config = dataclasses.replace(config, refit=None)

    def make_head():  # the default image head (Dropout, Linear), without building the backbones for each head
        return make_label_head(x.shape[1], table.targets.shape[1], dropout=config.dropout,
                               head_hidden=config.head_hidden or 0)

    targets, known = table.targets, table.known
    folds = []
    for rows, held in train_val_splits(targets, known, folds=5, seed=1):  # seed 1: not the inner folds' seed
        selection = select_head(config, x[rows], targets[rows], known[rows], make_head=make_head,
                                thresholds_for=lambda val: validation_thresholds(val, config).thresholds,
                                console=Console(quiet=True), names=("head",), augmented=mirror[rows], refit=True)
        torch.manual_seed(config.seed)
        head = make_head()
        fit_final_heads([head], x[rows], targets[rows], known[rows], selection, config=config,
                        augmented=mirror[rows])
        folds.append((rows, held, selection.oof, head_probabilities(head, torch.from_numpy(x[held])),
                      head_probabilities(head, torch.from_numpy(mirror[held]))))
    return folds, targets, known


def photos(scene: Path, cache: Path) -> None:
    """The photo table: every rule, plain and mirror-averaged, pooled over the outer folds."""
    folds, targets, known = photo_folds(scene, cache)
    y = targets > 0
    print("| rule | mAP | micro-F1 | macro-F1 | mirror-averaged: mAP / micro-F1 / macro-F1 | strengths chosen |")
    print("|---|---|---|---|---|---|")
    for rule in RULES:
        for if_empty in ("none", "top1"):
            cells, chosen = [], []
            for mirrored in (False, True):
                pred, maps = np.zeros(y.shape, bool), []
                for rows, held, oof, plain, flipped in folds:
                    probs = (plain + flipped) / 2 if mirrored else plain
                    pred[held], strength = rule_predictions(targets[rows], oof, known[rows], probs, rule, if_empty)
                    maps.append(average_precision_score(y[held], probs, average="macro"))
                    chosen.append(strength)
                cells.append((np.mean(maps), f1_score(y, pred, average="micro"), f1_score(y, pred, average="macro")))
            strengths = ", ".join(f"{s:g}" for s in chosen[:5]) if chosen[0] is not None else ""
            name = rule + (", if_empty top1" if if_empty == "top1" else "")
            print(f"| {name} | {cells[0][0]:.4f} | {cells[0][1]:.4f} | {cells[0][2]:.4f} | "
                  f"{' / '.join(f'{v:.4f}' for v in cells[1])} | {strengths} |", flush=True)


def logistic_probabilities(x, y, rows):
    """One L2 logistic regression per label (C=0.1) fitted on (x, y), its probabilities on `rows`."""
    return np.column_stack([LogisticRegression(C=0.1, max_iter=2000).fit(x, y[:, j]).predict_proba(rows)[:, 1]
                            for j in range(y.shape[1])])


def mulan(root: Path, names: list[str]) -> None:
    """The MULAN table: every rule's test micro- and macro-F1 per set."""
    print("| set | rule | test micro-F1 | test macro-F1 | strength chosen |")
    print("|---|---|---|---|---|")
    for name in names:
        train = read_feature_table(root / name / f"{name}-train.arff")
        test = read_feature_table(root / name / f"{name}-test.arff", feature_names=train.feature_names,
                                  encoding=train.encoding, label_columns=train.labels.label_names)
        mean, std = fit_standardization(train.features)
        x, x_test = (standardize(t.features, mean, std) for t in (train, test))
        y, y_test = train.labels.targets > 0, test.labels.targets > 0

        oof, known = np.zeros(y.shape), np.ones(y.shape, bool)
        for fold_train, fold_held in train_val_splits(y.astype(np.float32), known, folds=5, seed=0):
            oof[fold_held] = logistic_probabilities(x[fold_train], y[fold_train], x[fold_held])
        probs = logistic_probabilities(x, y, x_test)
        for rule in RULES:
            pred, strength = rule_predictions(y, oof, known, probs, rule, "none")
            print(f"| {name} | {rule} | {f1_score(y_test, pred, average='micro'):.4f} | "
                  f"{f1_score(y_test, pred, average='macro'):.4f} | {'' if strength is None else f'{strength:g}'} |",
                  flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--scene", type=Path, default=SCENE)
    parser.add_argument("--cache", type=Path, default=Path("/tmp/refit-cache/scene"))
    parser.add_argument("--mulan", type=Path, default=MULAN)
    parser.add_argument("--sets", nargs="*", default=["emotions", "scene", "yeast"])
    parser.add_argument("--skip-photos", action="store_true")
    args = parser.parse_args()
    if not args.skip_photos:
        photos(args.scene, args.cache)
    if args.sets:
        mulan(args.mulan, args.sets)


if __name__ == "__main__":
    main()
