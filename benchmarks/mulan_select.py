"""MULAN scene, yeast and emotions with every default: `tagnet train NAME-train.arff` (the head chosen by 5-fold CV
on the training file, --select auto) then `tagnet evaluate RUN NAME-test.arff`, beside plain baselines.

Per set: Hamming loss at p >= 0.5 and micro-F1 at the artifact's (fitted) thresholds on the test split; the CV
choice and its time; binary-relevance logistic regression (scikit-learn LogisticRegression, default C=1, one per
label on the same standardised training rows) at p >= 0.5; ML-kNN and the best published Hamming loss.

Run: python benchmarks/mulan_select.py [--sets scene yeast emotions] [--out benchmarks/out/mulan-select] [--seeds 0]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
from rich.console import Console
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import hamming_loss

from tagnet.config import TrainConfig
from tagnet.data.tabular import fit_standardization, read_feature_table, standardize
from tagnet.evaluation import evaluate
from tagnet.pipeline import train

MULAN = Path(__file__).resolve().parents[2] / "shared" / "data" / "mulan"
# ML-kNN: Madjarov et al. (2012); best published: the figures issue 16 quotes.
REFERENCE = {"scene": {"ml_knn": 0.099, "best": 0.077}, "yeast": {"ml_knn": 0.198, "best": 0.193},
             "emotions": {"ml_knn": 0.294, "best": 0.170}}


def br_logistic(name: str) -> float:
    """Test Hamming loss at p >= 0.5 of one default LogisticRegression per label on standardised features."""
    train_table = read_feature_table(MULAN / name / f"{name}-train.arff")
    test_table = read_feature_table(MULAN / name / f"{name}-test.arff", feature_names=train_table.feature_names,
                                    encoding=train_table.encoding, label_columns=train_table.labels.label_names)
    mean, std = fit_standardization(train_table.features)
    x, x_test = (standardize(t.features, mean, std).astype(np.float64) for t in (train_table, test_table))
    y = train_table.labels.targets
    predicted = np.column_stack([LogisticRegression(max_iter=1000).fit(x, y[:, j]).predict(x_test)
                                 for j in range(y.shape[1])])
    return float(hamming_loss(test_table.labels.targets, predicted))


def run_set(name: str, *, out: Path, seed: int) -> dict:
    """The default train + evaluate of one set and seed."""
    folder = MULAN / name
    started = time.perf_counter()
    result = train(folder / f"{name}-train.arff", out_dir=out / f"{name}-seed{seed}", config=TrainConfig(seed=seed),
                   progress=False, console=Console(quiet=True))
    seconds = time.perf_counter() - started
    fitted, _ = evaluate(result.run_dir, folder / f"{name}-test.arff")
    at_half, _ = evaluate(result.run_dir, folder / f"{name}-test.arff", threshold=0.5)
    selection = json.loads((result.run_dir / "metrics.json").read_text())["selection"]
    return {"set": name, "seed": seed, "choice": selection["choice"], "C": selection["C"],
            "cv": {k: round(v["mean"], 4) for k, v in selection["candidates"].items()},
            "selection_s": round(sum(v["seconds"] for v in selection["candidates"].values()), 1),
            "train_s": round(seconds, 1), "hamming_loss_p05": round(at_half.hamming_loss, 4),
            "micro_f1_fitted": round(fitted.micro_f1, 4), "hamming_loss_fitted": round(fitted.hamming_loss, 4),
            "mAP": round(fitted.mAP, 4)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sets", nargs="+", default=["scene", "yeast", "emotions"], choices=sorted(REFERENCE))
    parser.add_argument("--out", default="benchmarks/out/mulan-select")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0])
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    runs = []
    for name in args.sets:
        baseline = round(br_logistic(name), 4)
        for seed in args.seeds:
            runs.append({**run_set(name, out=out, seed=seed), "br_logistic_p05": baseline, **REFERENCE[name]})
            print(json.dumps(runs[-1]), flush=True)
    (out / "results.json").write_text(json.dumps(runs, indent=2) + "\n")
    print("\n| set | seed | CV choice (mAP: linear / mlp) | test HL, p >= 0.5 | test micro-F1, fitted | BR-logistic HL "
          "| ML-kNN HL | best published HL | selection s | train s |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in runs:
        cv = " / ".join(f"{v:.3f}" for v in r["cv"].values())
        print(f"| {r['set']} | {r['seed']} | {r['choice']} ({cv}) | {r['hamming_loss_p05']:.4f} | {r['micro_f1_fitted']:.4f} "
              f"| {r['br_logistic_p05']:.4f} | {r['ml_knn']} | {r['best']} | {r['selection_s']} | {r['train_s']} |")


if __name__ == "__main__":
    main()
