"""`tagnet tune` on the MULAN sets: does the search find recipes as good as the hand search of benchmarks/mulan.py?

For each set: `tune` on NAME-train.arff (its own seeded 80/20 split) with epochs, patience and batch size
fixed as in benchmarks/mulan.py and validation `--metric` as the objective (mAP; or hamming_loss, then with
threshold_mode fixed, i.e. at p >= 0.5), then `train` with the best settings (single head, and
--ensemble 10) and `evaluate` on NAME-test.arff, which the search never saw. Prints Hamming loss at
p >= 0.5 and mAP on test, to compare with the hand-picked recipes of benchmarks/mulan.py.

Run: python benchmarks/tune_mulan.py [--sets scene yeast emotions] [--trials 40] [--metric mAP|hamming_loss]
     [--out benchmarks/out/tune_mulan-METRIC]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from rich.console import Console

from tagnet.config.settings import TrainConfig, load_config
from tagnet.evaluation.evaluate import evaluate
from tagnet.training.trainer import train
from tagnet.tuning.search import tune

MULAN = Path(__file__).resolve().parents[2] / "shared" / "data" / "mulan"
FIXED = TrainConfig(epochs=200, patience=20, batch_size=32)  # as benchmarks/mulan.py's COMMON


def run_set(name: str, *, trials: int, metric: str, out: Path) -> dict:
    """Search on NAME-train.arff, then train the best settings (1 and 10 heads) and score them on NAME-test.arff."""
    folder = MULAN / name
    started = time.perf_counter()
    fixed = FIXED.updated(threshold_mode="fixed") if metric == "hamming_loss" else FIXED
    found = tune(folder / f"{name}-train.arff", modality="tabular", trials=trials, out_dir=out / name / "study",
                 base_config=fixed, console=Console(quiet=True), metric=metric)
    row = {"set": name, "metric": metric, "trials": found.finished, "pruned": found.pruned,
           "search_s": round(time.perf_counter() - started), "best_val": round(found.best_value, 4),
           "best_params": found.best_params}
    best = load_config(found.best_config_path)
    for heads in (1, 10):
        result = train(folder / f"{name}-train.arff", modality="tabular", out_dir=out / name / f"heads{heads}",
                               config=best.updated(ensemble=heads), progress=False, console=Console(quiet=True))
        report, _ = evaluate(result.run_dir, folder / f"{name}-test.arff", threshold=0.5)
        row[f"heads{heads}"] = {"hamming_loss_p05": round(report.hamming_loss, 4), "micro_f1_p05": round(report.micro_f1, 4),
                                "mAP": round(report.mAP, 4), "train_s": round(result.seconds)}
    print(json.dumps(row), flush=True)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sets", nargs="+", default=["scene", "yeast", "emotions"])
    parser.add_argument("--trials", type=int, default=40)
    parser.add_argument("--metric", default="mAP", choices=["mAP", "hamming_loss"])
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    out = args.out or Path(f"benchmarks/out/tune_mulan-{args.metric}")
    rows = [run_set(name, trials=args.trials, metric=args.metric, out=out) for name in args.sets]
    (out / "results.json").write_text(json.dumps(rows, indent=2) + "\n")
    print(f"\n| set | trials (pruned) | search time | best val {args.metric} | test HL p>=0.5, 1 head | 10 heads | test mAP, 1 head | 10 heads |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['set']} | {r['trials']} ({r['pruned']}) | {r['search_s']} s | {r['best_val']} "
              f"| {r['heads1']['hamming_loss_p05']} | {r['heads10']['hamming_loss_p05']} "
              f"| {r['heads1']['mAP']} | {r['heads10']['mAP']} |")


if __name__ == "__main__":
    main()
