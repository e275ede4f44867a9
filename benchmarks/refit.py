"""Every row trains the final image head (issue 25.1): nested 5-fold CV on miml-scene's 1,600 shared photos of the
default head recipe before (one head trained on 80% of the training rows, early stopping and per-label F1 thresholds on
the other 20%) and after (epochs and thresholds chosen by an inner 5-fold CV out of fold, the head refitted on every
training row).

Both arms train the default linear head on the cached frozen features of the default backbone (Lite0 + Lite2 at
260 px, each image and its mirror image) with the same head loop (tagnet.engine.headfit.fit_head: AdamW, one-cycle,
15 epochs, patience 5), so only what trains the final head and fits its thresholds differs. Each outer fold's
held-out photos are seen only to score it. Features come from tagnet's cache (~3 min cold on 2 free cores).

Run: python benchmarks/refit.py [--cache /tmp/refit-cache/scene] [--folds 5] [--scene ../shared/data/miml-scene]
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from pathlib import Path

import numpy as np
import torch
from rich.console import Console

from tagnet import modalities
from tagnet.config.settings import TrainConfig
from tagnet.config.source import DataSource
from tagnet.data.split import train_val_splits
from tagnet.engine.headfit import fit_head, head_probabilities
from tagnet.decisions.thresholds import apply_thresholds
from tagnet.evaluation.metrics import evaluate_probabilities
from tagnet.models import head_members
from tagnet.training.selection import fit_final_heads, select_head
from tagnet.training.validation import validation_thresholds

SCENE = Path(__file__).resolve().parents[2] / "shared" / "data" / "miml-scene"


def scene_features(scene: Path, cache: Path, backbone: str | None = None):
    """(config, model builder, features, mirror features, label table) of the 1,600 photos, default settings
    (`backbone`: another model name than the default's)."""
    kind = modalities.get("image")
    config = TrainConfig(backbone=backbone).for_modality("image")
    data = kind.read(DataSource(scene / "labels.csv", images_dir=scene / "images"))
    model = kind.build_model(config, data)
    config = kind.resolved_config(config, model)
    data, _ = kind.prepare(data, model, cache_dir=cache)
    inputs = kind.head_inputs(model, data, {}, cache_dir=cache, progress=False)
    return config, (lambda: head_members(kind.build_model(config, data))[0]), inputs.values.numpy(), \
        inputs.augmented.numpy(), data.table


def before(config, make_head, x, mirror, targets, known, rows):
    """Today's split: a head on 80% of `rows`, early stopping and thresholds on the other 20%."""
    train_rows, val_rows = train_val_splits(targets, known, rows=rows, val_fraction=config.val_fraction,
                                            seed=config.seed)[0]
    torch.manual_seed(config.seed)
    head = make_head()
    probs, _ = fit_head(head, torch.from_numpy(x), targets, known, train_rows, val_rows, config=config,
                        seed=config.seed, augmented=torch.from_numpy(mirror))
    val = {"probs": probs, "targets": targets[val_rows], "known": known[val_rows]}
    return head, validation_thresholds(val, config).thresholds, 0


def after(config, make_head, x, mirror, targets, known, rows):
    """Refit: epochs and thresholds by an inner CV on `rows` (out of fold), the head trained on every one of them."""
    selection = select_head(config, x[rows], targets[rows], known[rows], make_head=make_head,
                            thresholds_for=lambda val: validation_thresholds(val, config).thresholds,
                            console=Console(quiet=True), names=("head",), augmented=mirror[rows], refit=True)
    torch.manual_seed(config.seed)
    head = make_head()
    fit_final_heads([head], x[rows], targets[rows], known[rows], selection, config=config, augmented=mirror[rows])
    val = {"probs": selection.oof, "targets": targets[rows], "known": known[rows]}
    return head, validation_thresholds(val, config).thresholds, selection.epochs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--cache", type=Path, default=Path("/tmp/refit-cache/scene"))
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--scene", type=Path, default=SCENE, help="the miml-scene folder (default ../shared/data/...)")
    args = parser.parse_args()
    config, make_head, x, mirror, table = scene_features(args.scene, args.cache)
    config = dataclasses.replace(config, refit=None)
    targets, known = table.targets, table.known
    outer = train_val_splits(targets, known, folds=args.folds, seed=1)  # seed 1: not the inner folds' seed
    for name, arm in (("before", before), ("after", after)):
        started = time.perf_counter()
        pooled = [np.zeros(targets.shape, bool), np.zeros(targets.shape, np.float32)]
        maps, epochs = [], []
        for rows, held in outer:
            head, thresholds, chosen = arm(config, make_head, x, mirror, targets, known, rows)
            probs = head_probabilities(head, torch.from_numpy(x[held]))
            report = evaluate_probabilities(targets[held], probs, thresholds, label_names=table.label_names,
                                            known=known[held])
            maps.append(report.mAP)
            pooled[0][held], pooled[1][held] = apply_thresholds(probs, thresholds).astype(bool), probs
            epochs.append(chosen)
        tp = (pooled[0] & (targets > 0)).sum()
        micro = 2 * tp / (pooled[0].sum() + (targets > 0).sum())
        print(f"{name:6s} mAP {np.mean(maps):.4f} ± {np.std(maps):.4f} (per fold {', '.join(f'{m:.3f}' for m in maps)})"
              f"  micro-F1 {micro:.4f}  epochs {epochs}  {time.perf_counter() - started:.0f} s", flush=True)


if __name__ == "__main__":
    main()
