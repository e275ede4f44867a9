"""Private heads (--dp-epsilon) on miml-scene: 5-fold CV mAP of the head on frozen efficientnet_lite0 features at
ε = 1, 2, 4, 8 (δ = 1/n, DP-SGD with tagnet's dp_ defaults) and ∞ (the non-private head as `tagnet train --cv 5`
trains it: AdamW, mirror-image copies, early stopping on the held-out fold). Folds are tagnet's (kfold_rows, seed 0);
features come from tagnet's cache (first run ~3 min on 2 cores).

Run: python benchmarks/privacy.py [--cache /tmp/dp-cache] [--epsilons 1,2,4,8] [--scene ../shared/data/miml-scene]
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np
import torch

from tagnet import modalities
from tagnet.config.settings import TrainConfig
from tagnet.config.source import DataSource
from tagnet.data.split import kfold_rows
from tagnet.engine.headfit import fit_head, head_probabilities
from tagnet.engine.private import fit_private_head
from tagnet.evaluation.metrics import mean_average_precision
from tagnet.models import head_members

SCENE = Path(__file__).resolve().parents[2] / "shared" / "data" / "miml-scene"


def scene_features(scene: Path, cache: Path):
    """(model builder, data, features, mirror-image features) of the 1,600 scene photos through the image modality."""
    kind = modalities.get("image")
    config = TrainConfig(backbone="efficientnet_lite0").for_modality("image")
    data = kind.read(DataSource(scene / "labels.csv", images_dir=scene / "images"))
    model = kind.build_model(config, data)
    data, _ = kind.prepare(data, model, cache_dir=cache)
    inputs = kind.head_inputs(model, data, {}, cache_dir=cache, progress=False)
    return lambda: head_members(kind.build_model(config, data))[0], config, data.table, inputs


def cross_validate(fit, table, x: torch.Tensor) -> list[float]:
    """Each fold's mAP of the head `fit(head, train_rows, held_rows, fold)` trains on the other folds."""
    scores = []
    for fold, held in enumerate(kfold_rows(table, folds=5, seed=0)):
        train = np.setdiff1d(np.arange(len(table)), held)
        head = fit(train, held, fold)
        scores.append(mean_average_precision(table.targets[held], head_probabilities(head, x[held]), table.known[held]))
    return scores


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--cache", default="/tmp/dp-cache")
    parser.add_argument("--scene", default=str(SCENE), help="the miml-scene folder (labels.csv, images/)")
    parser.add_argument("--epsilons", default="1,2,4,8")
    args = parser.parse_args()
    new_head, config, table, inputs = scene_features(Path(args.scene), Path(args.cache))
    x, mirrored, y, known = inputs.values, inputs.augmented, table.targets, table.known
    rows = {}
    for epsilon in [float(e) for e in args.epsilons.split(",")]:
        spent, started = [], time.perf_counter()

        def private(train, held, fold):
            head = new_head()
            spent.append(fit_private_head(head, x[train], y[train], known[train], config=config, epsilon=epsilon,
                                          delta=1 / len(train), seed=fold))
            return head

        scores = cross_validate(private, table, x)
        rows[f"{epsilon:g}"] = {"mAP": float(np.mean(scores)), "std": float(np.std(scores, ddof=1)),
                                "epsilon_spent": max(s.epsilon for s in spent), "delta": spent[0].delta,
                                "noise_multiplier": spent[0].noise_multiplier, "steps": spent[0].steps,
                                "seconds": round(time.perf_counter() - started, 1)}
        print(json.dumps({f"{epsilon:g}": rows[f"{epsilon:g}"]}), flush=True)
    both = torch.cat([x, mirrored])

    def public(train, held, fold):
        head = new_head()
        fit_head(head, both, np.r_[y, y], np.r_[known, known], np.r_[train, train + len(x)], held, config=config,
                 seed=fold)
        return head

    started = time.perf_counter()
    scores = cross_validate(public, table, x)
    rows["inf"] = {"mAP": float(np.mean(scores)), "std": float(np.std(scores, ddof=1)),
                   "seconds": round(time.perf_counter() - started, 1)}
    print(json.dumps({"inf": rows["inf"]}), flush=True)
    print(f"ε = 8 vs ∞: {rows['inf']['mAP'] - rows.get('8', {'mAP': float('nan')})['mAP']:+.4f} mAP "
          f"(goal: at most 0.03); load average {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
