"""What per-label Platt maps fitted on a text run's threshold rows do to its probabilities (issue 25): for run folders
of `python benchmarks/goemotions.py --default holdout` made before the maps were folded into the model (or with a
loss the run does not recalibrate), the maps (tagnet.decisions.calibration.fit_platt) and, beside them, per-label
temperatures (fit_temperature) are fitted on the run's threshold rows (val_predictions.csv, parted as the run parted
them) and scored on the early-stopping rows and on dev.tsv, which no choice saw: mean per-label calibration error
(ECE, 15 bins), and dev macro/micro-F1 and mAP at per-label F1 thresholds refitted on the mapped threshold rows.

The dev probabilities of each run's model are computed once and kept in the run folder (devprobs.npz).

Run: python benchmarks/recalibration.py RUN_DIR [RUN_DIR ...] [--dev ../shared/data/goemotions/dev.tsv]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from goemotions import DATA, READ
from tagnet.decisions.calibration import ece, fit_platt, fit_temperature
from tagnet.decisions.thresholds import fit_decisions
from tagnet.evaluation.evaluate import labelled_probabilities
from tagnet.evaluation.metrics import evaluate_probabilities
from tagnet.inference.predictor import Predictor
from tagnet.training.run_folder import read_validation_predictions
from tagnet.training.validation import threshold_slice


def dev_probabilities(run_dir: Path, dev: Path) -> tuple[np.ndarray, np.ndarray]:
    """(targets, probabilities) of dev by the run's model, cached in RUN_DIR/devprobs.npz."""
    cache = run_dir / "devprobs.npz"
    if not cache.is_file():
        targets, known, probs, _ = labelled_probabilities(Predictor(run_dir), dev, read_options=READ)
        np.savez(cache, t=targets, k=known, p=probs)
    saved = np.load(cache)
    return saved["t"], saved["p"]


def scored(run_dir: Path, dev: Path) -> None:
    """One table row per map (none, temperatures, Platt) of one run."""
    dev_targets, dev_probs = dev_probabilities(run_dir, dev)
    names, _, truths, probs = read_validation_predictions(run_dir / "val_predictions.csv")
    y, known, rows = truths > 0, truths >= 0, np.arange(len(truths))
    stop, kept = threshold_slice(y.astype(np.float32), known, [(rows[:0], rows)], share=0.7, seed=0)
    maps = {"none": None, "temperatures": fit_temperature(y[kept], probs[kept], known[kept]),
            "Platt": fit_platt(y[kept], probs[kept], known[kept])}
    for name, scaling in maps.items():
        mapped, mapped_dev = (p if scaling is None else scaling.apply(p) for p in (probs, dev_probs))
        thresholds = fit_decisions(y[kept], mapped[kept], objective="f1", known=known[kept]).thresholds
        report = evaluate_probabilities(dev_targets, mapped_dev, thresholds, label_names=names)
        print(f"| {run_dir.parent.name} | {name} | {np.nanmean(ece(y[stop], mapped[stop], known[stop])):.4f} | "
              f"{np.nanmean(ece(dev_targets, mapped_dev)):.4f} | {report.macro_f1:.4f} | {report.micro_f1:.4f} | "
              f"{report.mAP:.4f} |", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("runs", type=Path, nargs="+", help="run folders of goemotions.py --default holdout")
    parser.add_argument("--dev", type=Path, default=DATA / "dev.tsv")
    args = parser.parse_args()
    print("| run | map | ECE, early-stopping rows | ECE, dev | dev macro-F1 | dev micro-F1 | dev mAP |")
    print("|---|---|---|---|---|---|---|")
    for run_dir in args.runs:
        scored(run_dir, args.dev)


if __name__ == "__main__":
    main()
