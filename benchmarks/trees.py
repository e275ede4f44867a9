"""MULAN scene, yeast and emotions with every default, with and without the tree candidates (issue 25.4): `tagnet
train NAME-train.arff` (arm "after": the head chosen by 5-fold CV on the training file among linear / MLP / 5-head
ensemble / random forest / gradient-boosted trees), `--boosted-rounds 0` (arm "forest": the default before the boosted
trees), `--forest-trees 0 --boosted-rounds 0` (arm "before": no trees) and `--loss asl` (arm "asl"), each then
`tagnet evaluate RUN NAME-test.arff`.

Per set, seed and arm: test Hamming loss and micro-F1 of the default decision rule (objective hamming: p >= 0.5 or the
CV's global threshold), the CV's choice and every candidate's CV Hamming loss and seconds, and the wall time of
training (CV included). The test split is seen only by evaluate.

Run: python benchmarks/trees.py [--sets scene yeast emotions] [--seeds 0] [--arms before forest after asl]
     [--out benchmarks/out/trees] [--data ../shared/data/mulan]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from rich.console import Console

from tagnet.config.settings import TrainConfig
from tagnet.evaluation.evaluate import evaluate
from tagnet.training.trainer import train

MULAN = Path(__file__).resolve().parents[2] / "shared" / "data" / "mulan"
ARMS = {"before": {"forest_trees": 0, "boosted_rounds": 0}, "forest": {"boosted_rounds": 0}, "after": {},  # after: the default
        "asl": {"loss": "asl"}}  # the default with --loss asl (its network heads recalibrated out of fold)


def run(data: Path, name: str, *, arm: str, seed: int, out: Path) -> dict:
    """Train one arm on NAME-train.arff with every default, evaluate on NAME-test.arff; the numbers of the run."""
    started = time.perf_counter()
    result = train(data / name / f"{name}-train.arff", modality="tabular", out_dir=out / f"{name}-{arm}-seed{seed}",
                   config=TrainConfig(seed=seed, **ARMS[arm]), progress=False, console=Console(quiet=True))
    seconds = time.perf_counter() - started
    report, _ = evaluate(result.run_dir, data / name / f"{name}-test.arff")
    selection = json.loads((result.run_dir / "metrics.json").read_text())["selection"]
    return {"set": name, "arm": arm, "seed": seed, "hamming_loss": report.hamming_loss, "micro_f1": report.micro_f1,
            "choice": selection["choice"], "train_seconds": round(seconds, 1),
            "cv": {k: round(v["mean"], 4) for k, v in selection["candidates"].items()},
            "cv_seconds": {k: v["seconds"] for k, v in selection["candidates"].items()}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sets", nargs="+", default=["scene", "yeast", "emotions"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0])
    parser.add_argument("--out", default="benchmarks/out/trees")
    parser.add_argument("--data", default=str(MULAN), help="the folder of the MULAN sets (NAME/NAME-train.arff)")
    parser.add_argument("--arms", nargs="+", choices=sorted(ARMS), default=list(ARMS))
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    runs = []
    for name in args.sets:
        for seed in args.seeds:
            for arm in args.arms:
                runs.append(run(Path(args.data), name, arm=arm, seed=seed, out=out))
                print(json.dumps(runs[-1]), flush=True)
    (out / "results.json").write_text(json.dumps(runs, indent=2) + "\n")
    print("\n| set | seed | arm | choice | CV Hamming loss per candidate | test HL | test micro-F1 | train s |")
    print("|---|---|---|---|---|---|---|---|")
    for r in runs:
        cv = ", ".join(f"{k} {v:.4f}" for k, v in r["cv"].items())
        print(f"| {r['set']} | {r['seed']} | {r['arm']} | {r['choice']} | {cv} | {r['hamming_loss']:.4f} "
              f"| {r['micro_f1']:.3f} | {r['train_seconds']:.0f} |")


if __name__ == "__main__":
    main()
