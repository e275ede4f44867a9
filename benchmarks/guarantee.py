"""Do precision guarantees hold on new data? MULAN scene, 20 random calibration/test splits.

A one-vs-rest logistic regression (C = 0.01, standardised features) is trained on scene-train.arff; its
probabilities on scene-test.arff (1196 images, 6 labels) are split at random, 20 times, into a
calibration half and a test half. On the calibration half, tagnet.decisions.thresholds.fit_decisions fits
objective "precision>=P" with confidence C (Learn-then-Test) and, for comparison, without confidence
(the lowest threshold whose calibration precision reaches P). Reported per label: in how many splits
the label was guaranteed, the share of those where test precision >= P (goal >= 90%), mean test recall;
and the same share for the plain fit. The same for "recall>=R".

The test half's precision scatters around the threshold's true precision (about +-0.04 with 100 predicted
items), and, the halves being complementary, against the calibration half's. So a second check
(--bootstrap) takes scene-test itself as the population: the calibration set is drawn from it with
replacement (the same size as a half), and "held" means the threshold's precision over all of scene-test,
the population value, is >= P: what the guarantee promises, with no test-sampling noise.
Last, the expected calibration error of the test half before and after per-label temperature scaling
(tagnet.decisions.calibration) fitted on the calibration half.

Run: python benchmarks/guarantee.py [--precision 0.9] [--recall 0.9] [--confidence 0.95] [--splits 20]
     [--calibration 0.5] [--bootstrap]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from sklearn.linear_model import LogisticRegression

from tagnet.decisions.calibration import ece, fit_temperature
from tagnet.data.feature_table import fit_standardization, read_feature_table, standardize
from tagnet.decisions.thresholds import apply_thresholds, fit_decisions

SCENE = Path(__file__).resolve().parents[2] / "shared" / "data" / "mulan" / "scene"


def scene_test_probabilities() -> tuple[list[str], np.ndarray, np.ndarray]:
    """Label names, targets and probabilities of scene-test from logistic regressions fitted on scene-train."""
    train, test = read_feature_table(SCENE / "scene-train.arff"), read_feature_table(SCENE / "scene-test.arff")
    mean, std = fit_standardization(train.features)
    x_train, x_test = standardize(train.features, mean, std), standardize(test.features, mean, std)
    y = train.labels.targets
    probs = np.column_stack([LogisticRegression(C=0.01, max_iter=2000).fit(x_train, y[:, j]).predict_proba(x_test)[:, 1]
                             for j in range(y.shape[1])])
    return train.labels.label_names, test.labels.targets.astype(bool), probs


def rate(y: np.ndarray, pred: np.ndarray, kind: str) -> float | None:
    """Precision or recall of one label's predictions (None when nothing is predicted / no positive)."""
    base = pred.sum() if kind == "precision" else y.sum()
    return float((y & pred).sum() / base) if base else None


def run(names: list[str], y: np.ndarray, probs: np.ndarray, *, kind: str, target: float, confidence: float,
        splits: int, calibration: float, bootstrap: bool) -> None:
    stats = {name: {"guaranteed": 0, "held": 0, "plain_held": 0, "recall": [], "undefined": 0} for name in names}
    for seed in range(splits):
        rng = np.random.default_rng(seed)
        if bootstrap:
            cal, test = rng.integers(0, len(y), round(calibration * len(y))), np.arange(len(y))
        else:
            order = rng.permutation(len(y))
            cal, test = order[:round(calibration * len(y))], order[round(calibration * len(y)):]
        sure = fit_decisions(y[cal], probs[cal], objective=f"{kind}>={target}", confidence=confidence)
        plain = fit_decisions(y[cal], probs[cal], objective=f"{kind}>={target}", min_positives=1)
        pred_sure, pred_plain = apply_thresholds(probs[test], sure.thresholds), apply_thresholds(probs[test], plain.thresholds)
        for j, name in enumerate(names):
            value = rate(y[test, j], pred_plain[:, j], kind)
            stats[name]["plain_held"] += value is None or value >= target
            if j in sure.unreachable:
                continue
            stats[name]["guaranteed"] += 1
            value = rate(y[test, j], pred_sure[:, j], kind)
            stats[name]["undefined"] += value is None
            stats[name]["held"] += value is None or value >= target
            stats[name]["recall"].append(rate(y[test, j], pred_sure[:, j], "recall") or 0.0)
    print(f"\n{kind} >= {target} with {confidence:.0%} confidence, {splits} splits of scene-test "
          f"({len(cal)} calibration items{' drawn with replacement' if bootstrap else ''} / {len(test)} test items)")
    print(f"{'label':<12}{'guaranteed':>11}{'held':>8}{'plain held':>12}{'mean recall':>13}{'nothing predicted':>19}")
    for name, s in stats.items():
        held = f"{s['held'] / s['guaranteed']:.0%}" if s["guaranteed"] else "-"
        recall = f"{np.mean(s['recall']):.3f}" if s["recall"] else "-"
        print(f"{name:<12}{s['guaranteed']:>11}{held:>8}{s['plain_held'] / splits:>12.0%}{recall:>13}{s['undefined']:>19}")


def calibration_report(names: list[str], y: np.ndarray, probs: np.ndarray, *, splits: int) -> None:
    """Mean test-half ECE per label before and after temperatures fitted on the calibration half."""
    before, after, temps = [], [], []
    for seed in range(splits):
        order = np.random.default_rng(seed).permutation(len(y))
        cal, test = order[:len(y) // 2], order[len(y) // 2:]
        scaling = fit_temperature(y[cal], probs[cal])
        before.append(ece(y[test], probs[test]))
        after.append(ece(y[test], scaling.apply(probs[test])))
        temps.append(scaling.temperatures)
    print(f"\nECE (15 bins) on the test half, mean of {splits} splits: before / after temperature scaling (T)")
    for j, name in enumerate(names):
        print(f"{name:<12}{np.mean(before, axis=0)[j]:>8.3f}{np.mean(after, axis=0)[j]:>8.3f}   T = {np.mean(temps, axis=0)[j]:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--precision", type=float, default=0.9)
    parser.add_argument("--recall", type=float, default=0.9)
    parser.add_argument("--confidence", type=float, default=0.95)
    parser.add_argument("--splits", type=int, default=20)
    parser.add_argument("--calibration", type=float, default=0.5, help="the share of scene-test to calibrate on")
    parser.add_argument("--bootstrap", action="store_true", help="calibrate on draws with replacement, test on all of scene-test")
    args = parser.parse_args()
    names, y, probs = scene_test_probabilities()
    run(names, y, probs, kind="precision", target=args.precision, confidence=args.confidence, splits=args.splits,
        calibration=args.calibration, bootstrap=args.bootstrap)
    run(names, y, probs, kind="recall", target=args.recall, confidence=args.confidence, splits=args.splits,
        calibration=args.calibration, bootstrap=args.bootstrap)
    calibration_report(names, y, probs, splits=args.splits)


if __name__ == "__main__":
    main()
