"""Imbalanced miml-scene: keep 5% of the training images labelled "desert"; compare BCE, pos_weight BCE and ASL.

Run: python benchmarks/imbalance.py [--repeats 3] [--keep 0.05] [--out benchmarks/out/imbalance]
Split as scene_default.py (split_table(read_labels(labels.csv), val=0.2, seed=0)); the validation part is
left untouched. Each repeat draws another 5% of the desert images (and trains with that seed); the default
recipe (efficientnet_lite0 head on cached features) is used with only the loss changed. Macro-F1 and the
rare label's F1 are reported at the per-label thresholds fitted on validation and at a plain 0.5.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import numpy as np
import torch
from rich.console import Console

from tagnet.config.settings import TrainConfig
from tagnet.data.labels import read_labels, write_labels
from tagnet.data.split import split_table
from tagnet.evaluation.metrics import evaluate_probabilities
from tagnet.report.html import load_run
from tagnet.training.trainer import train

SCENE = Path(__file__).resolve().parents[2] / "shared" / "data" / "miml-scene"
RARE = "desert"
LOSSES = ("bce", "weighted_bce", "asl")


def _scores(run_dir: Path) -> dict[str, float]:
    """mAP, macro/micro F1 and the rare label's F1 and AP at the fitted thresholds and at 0.5."""
    data = load_run(run_dir)
    rare = data.label_names.index(RARE)
    targets, known = data.truths == 1, data.truths >= 0
    fitted = evaluate_probabilities(targets, data.probs, data.thresholds, label_names=data.label_names, known=known)
    half = evaluate_probabilities(targets, data.probs, [0.5] * len(data.label_names), label_names=data.label_names,
                                  known=known)
    return {"mAP": fitted.mAP, "macro_f1": fitted.macro_f1, "micro_f1": fitted.micro_f1,
            f"{RARE}_f1": fitted.per_label[rare]["f1"], f"{RARE}_ap": fitted.per_label[rare]["ap"],
            f"{RARE}_threshold": fitted.per_label[rare]["threshold"],
            "macro_f1@0.5": half.macro_f1, f"{RARE}_f1@0.5": half.per_label[rare]["f1"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", default="benchmarks/out/imbalance")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--keep", type=float, default=0.05)
    args = parser.parse_args()
    # quality, not speed, is measured here: one thread avoids a 50x slowdown of the tiny head's steps on a busy machine
    torch.set_num_threads(1)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    parts = split_table(read_labels(SCENE / "labels.csv"), val=0.2, seed=0)
    write_labels(parts["val"], out / "val.csv")
    full = parts["train"]
    rare = full.label_names.index(RARE)
    rare_rows = np.flatnonzero(full.targets[:, rare] == 1)
    results: dict[str, list[dict[str, float]]] = {loss: [] for loss in LOSSES}
    for seed in range(args.repeats):
        keep = np.random.default_rng(seed).choice(rare_rows, size=max(1, round(args.keep * len(rare_rows))), replace=False)
        rows = np.sort(np.concatenate([np.flatnonzero(full.targets[:, rare] == 0), keep]))
        train_file = write_labels(full.subset(rows), out / f"train-{seed}.csv")
        print(f"repeat {seed}: {len(rows)} training images, {len(keep)} of {len(rare_rows)} '{RARE}' kept")
        cache = out / f"cache-{seed}"
        for loss in LOSSES:
            run_dir = out / f"run-{seed}-{loss}"
            train(train_file, images_dir=SCENE / "images", val_labels=out / "val.csv", out_dir=run_dir,
                  config=TrainConfig(loss=loss, seed=seed, cache_dir=str(cache)), progress=False,
                  console=Console(quiet=True))
            results[loss].append(_scores(run_dir))
            print(f"  {loss:<12} " + "  ".join(f"{k} {v:.3f}" for k, v in results[loss][-1].items()))
        shutil.rmtree(cache)  # decoded images of this subset: about 170 MB
    summary = {loss: {key: {"mean": round(float(np.mean([r[key] for r in runs])), 4),
                            "std": round(float(np.std([r[key] for r in runs])), 4)} for key in runs[0]}
               for loss, runs in results.items()}
    (out / "results.json").write_text(json.dumps({"repeats": results, "summary": summary}, indent=2) + "\n")
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
