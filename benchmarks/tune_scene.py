"""Hyperparameter search on ../shared/data/miml-scene: N Optuna trials against the default recipe, same split.

Run: python benchmarks/tune_scene.py [--trials 20] [--out benchmarks/out/tune_scene]
The split is scene_default.py's: split_table(read_labels(labels.csv), val=0.2, seed=0). The search starts
from a cold cache (images decoded and backbone features computed inside the timed search).
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

from rich.console import Console

from tagnet.config.settings import TrainConfig, load_config
from tagnet.data.labels import read_labels, write_labels
from tagnet.data.split import split_table
from tagnet.training.trainer import train
from tagnet.tuning.search import tune

SCENE = Path(__file__).resolve().parents[2] / "shared" / "data" / "miml-scene"


def _scores(report) -> dict[str, float]:
    return {k: round(v, 4) for k, v in report.summary().items() if k in ("mAP", "micro_f1", "macro_f1")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", default="benchmarks/out/tune_scene")
    parser.add_argument("--trials", type=int, default=20)
    args = parser.parse_args()
    out = Path(args.out)
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    parts = split_table(read_labels(SCENE / "labels.csv"), val=0.2, seed=0)
    for name, part in parts.items():
        write_labels(part, out / f"{name}.csv")
    cache = str(out / "cache")

    started = time.perf_counter()
    result = tune(out / "train.csv", images_dir=SCENE / "images", val_labels=out / "val.csv", out_dir=out / "study",
                  trials=args.trials, base_config=TrainConfig(cache_dir=cache), console=Console(stderr=True))
    search_seconds = time.perf_counter() - started

    started = time.perf_counter()
    default = train(out / "train.csv", images_dir=SCENE / "images", val_labels=out / "val.csv", out_dir=out / "default",
                    config=TrainConfig(cache_dir=cache), progress=False, console=Console(quiet=True))
    default_seconds = time.perf_counter() - started
    best_config = load_config(result.best_config_path).updated(cache_dir=cache)
    retrained = train(out / "train.csv", images_dir=SCENE / "images", val_labels=out / "val.csv", out_dir=out / "best",
                      config=best_config, progress=False, console=Console(quiet=True))
    summary = {
        "trials": result.finished, "pruned": result.pruned, "search_seconds_cold_cache": round(search_seconds, 1),
        "default_recipe": {**_scores(default.report), "seconds_warm_cache": round(default_seconds, 1)},
        "best_trial_mAP": round(result.best_value, 4),
        "best_config_retrained": _scores(retrained.report),
        "best_params": {k: round(v, 6) if isinstance(v, float) else v for k, v in result.best_params.items()},
    }
    (out / "results.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
