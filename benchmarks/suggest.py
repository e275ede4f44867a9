"""Does labelling the suggested items beat labelling random ones? MULAN scene, logistic regression.

scene-train.arff (1211 images) is the pool: 100 random rows start labelled; each of 3 rounds fits
one-vs-rest logistic regressions (C = 0.1, standardised features) on the labelled rows, then adds 100
rows: tagnet.curation.suggest.suggest_items on the model's probabilities for the unlabelled rows (with each
--focus: 0 = feature-space diversity only, 1 = uncertainty x diversity), or 100 random rows. mAP on scene-test.arff (1196 images) after each round, mean of 3 seeds; time of suggest_items.

Run: python benchmarks/suggest.py [--seeds 0 1 2] [--rounds 3] [--batch 100] [--start 100] [--focus 0 0.5 1]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import average_precision_score

from tagnet.data.feature_table import fit_standardization, read_feature_table, standardize
from tagnet.curation.suggest import suggest_items

SCENE = Path(__file__).resolve().parents[2] / "shared" / "data" / "mulan" / "scene"


def fit_predict(x: np.ndarray, y: np.ndarray, rows: np.ndarray, others: list[np.ndarray]) -> list[np.ndarray]:
    """Probabilities for each array in `others` of models fitted on x[rows], y[rows]."""
    mean, std = fit_standardization(x[rows])
    train = standardize(x[rows], mean, std)
    outs = [np.zeros((len(o), y.shape[1])) for o in others]
    scaled = [standardize(o, mean, std) for o in others]
    for j in range(y.shape[1]):
        if y[rows, j].all() or not y[rows, j].any():
            for out in outs:
                out[:, j] = y[rows, j].mean()
            continue
        model = LogisticRegression(C=0.1, max_iter=2000).fit(train, y[rows, j])
        for out, o in zip(outs, scaled):
            out[:, j] = model.predict_proba(o)[:, 1]
    return outs


def mean_ap(y: np.ndarray, probs: np.ndarray) -> float:
    return float(np.mean([average_precision_score(y[:, j], probs[:, j]) for j in range(y.shape[1])]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--start", type=int, default=100)
    parser.add_argument("--focus", type=float, nargs="+", default=[0.0, 0.5, 1.0])
    args = parser.parse_args()
    pool, test = read_feature_table(SCENE / "scene-train.arff"), read_feature_table(SCENE / "scene-test.arff")
    x, y = pool.features, pool.labels.targets
    arms = [f"focus {f:g}" for f in args.focus] + ["random"]
    results = {arm: np.zeros((len(args.seeds), args.rounds + 1)) for arm in arms}
    seconds = []
    for s, seed in enumerate(args.seeds):
        start = np.random.default_rng(seed).choice(len(x), args.start, replace=False)
        for arm in results:
            labelled = start.copy()
            rng = np.random.default_rng(seed + 1000)
            for r in range(args.rounds + 1):
                unlabelled = np.setdiff1d(np.arange(len(x)), labelled)
                test_probs, pool_probs = fit_predict(x, y, labelled, [test.features, x[unlabelled]])
                results[arm][s, r] = mean_ap(test.labels.targets, test_probs)
                if r == args.rounds:
                    break
                if arm != "random":
                    began = time.perf_counter()
                    focus = args.focus[arms.index(arm)]
                    picked = unlabelled[suggest_items(pool_probs, x[unlabelled], n=args.batch, seed=seed, focus=focus)]
                    seconds.append(time.perf_counter() - began)
                else:
                    picked = rng.choice(unlabelled, args.batch, replace=False)
                labelled = np.r_[labelled, picked]
    sizes = [args.start + r * args.batch for r in range(args.rounds + 1)]
    print(f"scene-test mAP by labelled rows (mean of seeds {args.seeds})")
    print(f"{'labelled':<12}" + "".join(f"{n:>9}" for n in sizes))
    for arm, values in results.items():
        print(f"{arm:<12}" + "".join(f"{v:>9.4f}" for v in values.mean(axis=0)))
    print(f"suggest_items: {np.mean(seconds) * 1000:.0f} ms per round of {args.batch} from ~{len(x) - args.start} rows")


if __name__ == "__main__":
    main()
