"""Which frozen image features to default to, by 5-fold CV on miml-scene: Lite0, Lite2 and both concatenated.

One-vs-rest logistic regression (scikit-learn) on standardised features, trained on each image and its mirror image,
for a few L2 strengths, with and without averaging the mirror image's probabilities at test time; the folds are
tagnet's (data.split.kfold_rows, seed 0). mAP is the mean over folds; micro-F1 at per-label thresholds fitted on the
out-of-fold probabilities. Features come from tagnet's feature cache (computed on the first run, ~3 min on 2 cores).

Run: python benchmarks/fusion_probe.py [--cache benchmarks/out/fusecache]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import average_precision_score

from tagnet import modalities
from tagnet.config.settings import TrainConfig
from tagnet.data.split import kfold_rows
from tagnet.decisions.thresholds import apply_thresholds, fit_thresholds

SCENE = Path(__file__).resolve().parents[2] / "shared" / "data" / "miml-scene"
SIZE = 260


def features(name: str, cache: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(features, mirror-image features, targets) of every scene image, through tagnet's image modality."""
    kind = modalities.get("image")
    config = TrainConfig(backbone=name, image_size=SIZE).for_modality("image")
    data = kind.read(SCENE / "labels.csv", options={}, images_dir=SCENE / "images")
    model = kind.build_model(config, data)
    data, _ = kind.prepare(data, model, cache_dir=cache)
    inputs = kind.head_inputs(model, data, {}, cache_dir=cache, progress=False)
    return inputs.values.numpy(), inputs.augmented.numpy(), data.table


def cross_validate(x: np.ndarray, mirrored: np.ndarray, table, *, C: float, flip_average: bool) -> tuple[float, float, float]:
    """(mean fold mAP, its std, micro-F1 at out-of-fold per-label thresholds)."""
    y = table.targets.astype(int)
    folds = kfold_rows(table, folds=5, seed=0)
    oof = np.zeros(y.shape)
    for held in folds:
        train = np.setdiff1d(np.arange(len(y)), held)
        mean, std = x[train].mean(0), x[train].std(0) + 1e-6
        both = (np.r_[x[train], mirrored[train]] - mean) / std
        for j in range(y.shape[1]):
            model = LogisticRegression(C=C, max_iter=300).fit(both, np.r_[y[train, j], y[train, j]])
            p = model.predict_proba((x[held] - mean) / std)[:, 1]
            if flip_average:
                p = (p + model.predict_proba((mirrored[held] - mean) / std)[:, 1]) / 2
            oof[held, j] = p
    per_fold = [np.mean([average_precision_score(y[h, j], oof[h, j]) for j in range(y.shape[1])]) for h in folds]
    predicted = apply_thresholds(oof, fit_thresholds(y, oof))
    micro = 2 * (predicted * y).sum() / (predicted.sum() + y.sum())
    return float(np.mean(per_fold)), float(np.std(per_fold)), float(micro)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--cache", type=Path, default=Path("benchmarks/out/fusecache"))
    args = parser.parse_args()
    lite0, lite0_m, table = features("efficientnet_lite0", args.cache)
    lite2, lite2_m, _ = features("efficientnet_lite2", args.cache)
    for name, x, m in [("Lite0", lite0, lite0_m), ("Lite2", lite2, lite2_m),
                       ("Lite0+Lite2", np.c_[lite0, lite2], np.c_[lite0_m, lite2_m])]:
        for C in (0.003, 0.01, 0.03):
            for flip in (False, True):
                mean, std, micro = cross_validate(x, m, table, C=C, flip_average=flip)
                print(f"{name:12s} at {SIZE} px  C={C:<6} flip-average={flip!s:5}  mAP {mean:.4f} ± {std:.4f}  "
                      f"micro-F1 {micro:.4f}", flush=True)


if __name__ == "__main__":
    main()
