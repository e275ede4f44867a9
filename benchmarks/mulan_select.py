"""MULAN scene, yeast and emotions with every default: `tagnet train NAME-train.arff` (objective hamming for tables:
the head chosen by 5-fold CV on the training file among linear / MLP / 5-head ensemble, thresholds p >= 0.5), then
`tagnet evaluate RUN NAME-test.arff` (its report, and beside it the per-label F1 thresholds), beside baselines.

Per set and seed: test Hamming loss of the default model (its own thresholds, p >= 0.5) and micro-F1 at the per-label
F1 thresholds fitted on validation; the CV choice, each candidate's CV score and the selection and training times;
binary-relevance logistic regression (scikit-learn LogisticRegression, default C=1, one per label on the same
standardised training rows) at p >= 0.5; ML-kNN (Zhang & Zhou 2007, k=10, smoothing 1, Euclidean on standardised
features, implemented below) and the published ML-kNN and best Hamming losses.

Run: python benchmarks/mulan_select.py [--sets scene yeast emotions] [--out benchmarks/out/mulan-select] [--seeds 0 1 2]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
from rich.console import Console
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import f1_score, hamming_loss
from sklearn.neighbors import NearestNeighbors

from tagnet.config.settings import TrainConfig
from tagnet.data.feature_table import fit_standardization, read_feature_table, standardize
from tagnet.evaluation.evaluate import evaluate_side_by_side
from tagnet.training.trainer import train

MULAN = Path(__file__).resolve().parents[2] / "shared" / "data" / "mulan"
# ML-kNN: Madjarov et al. (2012); best published: the figures issue 16 quotes.
REFERENCE = {"scene": {"ml_knn": 0.099, "best": 0.077}, "yeast": {"ml_knn": 0.198, "best": 0.193},
             "emotions": {"ml_knn": 0.294, "best": 0.170}}


def _standardised(name: str):
    train_table = read_feature_table(MULAN / name / f"{name}-train.arff")
    test_table = read_feature_table(MULAN / name / f"{name}-test.arff", feature_names=train_table.feature_names,
                                    encoding=train_table.encoding, label_columns=train_table.labels.label_names)
    mean, std = fit_standardization(train_table.features)
    x, x_test = (standardize(t.features, mean, std).astype(np.float64) for t in (train_table, test_table))
    return x, train_table.labels.targets, x_test, test_table.labels.targets


def br_logistic(name: str) -> dict:
    """Test Hamming loss and micro-F1 at p >= 0.5 of one default LogisticRegression per label."""
    x, y, x_test, y_test = _standardised(name)
    predicted = np.column_stack([LogisticRegression(max_iter=1000).fit(x, y[:, j]).predict(x_test)
                                 for j in range(y.shape[1])])
    return {"hamming_loss": float(hamming_loss(y_test, predicted)),
            "micro_f1": float(f1_score(y_test, predicted, average="micro"))}


def ml_knn(name: str, *, k: int = 10, s: float = 1.0) -> dict:
    """ML-kNN (Zhang & Zhou 2007): per label, the posterior of the label given how many of an item's k nearest
    training neighbours carry it (priors and likelihoods with Laplace smoothing s, neighbours of training items
    found without the item itself); test Hamming loss and micro-F1 of the MAP decision."""
    x, y, x_test, y_test = _standardised(name)
    y = y.astype(int)
    neighbours = NearestNeighbors(n_neighbors=k + 1).fit(x)
    own = neighbours.kneighbors(x, return_distance=False)[:, 1:]  # the first neighbour is the item itself
    counts = y[own].sum(axis=1)  # (n, L): neighbours carrying each label
    prior = (s + y.sum(axis=0)) / (2 * s + len(y))
    with_label = np.stack([((counts == c) & (y == 1)).sum(axis=0) for c in range(k + 1)])  # (k+1, L)
    without = np.stack([((counts == c) & (y == 0)).sum(axis=0) for c in range(k + 1)])
    like_with = (s + with_label) / (s * (k + 1) + with_label.sum(axis=0))
    like_without = (s + without) / (s * (k + 1) + without.sum(axis=0))
    test_counts = y[neighbours.kneighbors(x_test, n_neighbors=k, return_distance=False)].sum(axis=1)
    labels = np.arange(y.shape[1])
    yes = prior * like_with[test_counts, labels]
    no = (1 - prior) * like_without[test_counts, labels]
    predicted = (yes > no).astype(int)
    return {"hamming_loss": float(hamming_loss(y_test, predicted)),
            "micro_f1": float(f1_score(y_test, predicted, average="micro"))}


def run_set(name: str, *, out: Path, seed: int) -> dict:
    """The default train + evaluate of one set and seed."""
    folder = MULAN / name
    started = time.perf_counter()
    result = train(folder / f"{name}-train.arff", out_dir=out / f"{name}-seed{seed}", config=TrainConfig(seed=seed),
                   progress=False, console=Console(quiet=True), force=True)
    seconds = time.perf_counter() - started
    report, others, _ = evaluate_side_by_side(result.run_dir, folder / f"{name}-test.arff")
    selection = json.loads((result.run_dir / "metrics.json").read_text())["selection"]
    return {"set": name, "seed": seed, "choice": selection["choice"], "heads": selection["heads"], "C": selection["C"],
            "cv": {k: round(v["mean"], 4) for k, v in selection["candidates"].items()},
            "cv_s": {k: v["seconds"] for k, v in selection["candidates"].items()},
            "train_s": round(seconds, 1), "threshold_mode": report.threshold_mode,
            "threshold": (selection.get("threshold") or {}).get("value", 0.5),
            "hamming_loss": round(report.hamming_loss, 4), "micro_f1": round(report.micro_f1, 4),
            "micro_f1_f1_thresholds": round(others["f1"].micro_f1, 4),
            "hamming_loss_f1_thresholds": round(others["f1"].hamming_loss, 4), "mAP": round(report.mAP, 4)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sets", nargs="+", default=["scene", "yeast", "emotions"], choices=sorted(REFERENCE))
    parser.add_argument("--out", default="benchmarks/out/mulan-select")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0])
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    runs, baselines = [], {}
    for name in args.sets:
        baselines[name] = {"br_logistic": br_logistic(name), "ml_knn_ours": ml_knn(name), **REFERENCE[name]}
        print(json.dumps({"set": name, **baselines[name]}), flush=True)
        for seed in args.seeds:
            runs.append(run_set(name, out=out, seed=seed))
            print(json.dumps(runs[-1]), flush=True)
    (out / "results.json").write_text(json.dumps({"runs": runs, "baselines": baselines}, indent=2) + "\n")
    print("\n| set | seed | CV choice (CV Hamming loss: linear / mlp / ensemble) | test HL (default, p >= 0.5) "
          "| test micro-F1, per-label F1 thresholds | BR-logistic HL | ML-kNN HL (ours / published) | best published HL "
          "| CV s (linear / mlp / ensemble) | train s |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in runs:
        b = baselines[r["set"]]
        cv = " / ".join(f"{v:.4f}" for v in r["cv"].values())
        cv_s = " / ".join(f"{v:.1f}" for v in r["cv_s"].values())
        print(f"| {r['set']} | {r['seed']} | {r['choice']} ({cv}) | {r['hamming_loss']:.4f} "
              f"| {r['micro_f1_f1_thresholds']:.4f} | {b['br_logistic']['hamming_loss']:.4f} "
              f"| {b['ml_knn_ours']['hamming_loss']:.4f} / {b['ml_knn']} | {b['best']} | {cv_s} | {r['train_s']} |")
    for name in args.sets:
        mine = [r for r in runs if r["set"] == name]
        hl = np.array([r["hamming_loss"] for r in mine])
        f1 = np.array([r["micro_f1_f1_thresholds"] for r in mine])
        print(f"{name}: test HL {hl.mean():.4f} ± {hl.std():.4f}, micro-F1 (F1 thresholds) {f1.mean():.4f} ± "
              f"{f1.std():.4f} over seeds {args.seeds}; mean train {np.mean([r['train_s'] for r in mine]):.1f} s")


if __name__ == "__main__":
    main()
