"""Default recipe on ../shared/data/miml-scene: stratified 80/20 split, train, validation metrics, wall time.

Run: python benchmarks/scene_default.py [--finetune] [--time-budget 10m] [--out benchmarks/out/scene]
     python benchmarks/scene_default.py --backbone seed_cnn --image-size 150 --epochs 10 --out benchmarks/out/seed
"""

from __future__ import annotations

import argparse
import csv
import json
import statistics
import time
from pathlib import Path

from tagnet.config.settings import TrainConfig
from tagnet.data.labels import read_labels, write_labels
from tagnet.data.split import split_table
from tagnet.training.trainer import train

SCENE = Path(__file__).resolve().parents[2] / "shared" / "data" / "miml-scene"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", default="benchmarks/out/scene")
    parser.add_argument("--finetune", action="store_true")
    parser.add_argument("--backbone", default=None, help="default: the image default (tagnet settings)")
    parser.add_argument("--time-budget", default=None, help="e.g. 10m: the recipe that fits (see tagnet train --help)")
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--image-size", type=int, default=None)
    parser.add_argument("--lr", type=float, default=None)
    parser.add_argument("--num-workers", type=int, default=None)
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    parts = split_table(read_labels(SCENE / "labels.csv"), val=0.2, seed=0)
    for name, part in parts.items():
        write_labels(part, out / f"{name}.csv")
    config = TrainConfig(backbone=args.backbone, finetune=args.finetune, pretrained=args.backbone != "seed_cnn")
    config = config.updated(time_budget=args.time_budget, epochs=args.epochs, image_size=args.image_size, lr=args.lr, num_workers=args.num_workers,
                            cache_dir=str(out / "cache"))
    started = time.perf_counter()
    result = train(out / "train.csv", images_dir=SCENE / "images", val_labels=out / "val.csv",
                   out_dir=out / "run", config=config, progress=False)
    seconds = time.perf_counter() - started
    epochs = list(csv.DictReader((out / "run" / "metrics.csv").open()))
    speed = {phase: {"epochs": len(rows), "median_epoch_seconds": statistics.median(float(r["seconds"]) for r in rows),
                     "median_train_images_per_s": statistics.median(float(r["images_per_s"]) for r in rows)}
             for phase in {r["phase"] for r in epochs} for rows in [[r for r in epochs if r["phase"] == phase]]}
    meta = json.loads((result.artifact_dir / "tagnet.json").read_text())
    print(json.dumps({"backbone": meta["model"]["name"], "finetune": args.finetune, "kept_finetuned": meta["extra"]["finetuned"],
                      "time_budget": meta["extra"].get("time_budget"), "image_size": config.image_size,
                      "lr": config.lr, "num_workers": config.num_workers,
                      "seconds": round(seconds, 1), "phases": speed,
                      **{k: round(v, 4) for k, v in result.report.summary().items()}}, indent=2))


if __name__ == "__main__":
    main()
