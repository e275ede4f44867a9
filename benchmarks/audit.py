"""Finding label errors on MULAN scene: corrupt 60 known cells, see how many the audit ranks at the top.

scene-train.arff (1211 images, 294 colour/texture features, 6 labels) read as tagnet reads it; seeded:
one true tag removed from 30 items ("missing") and one wrong tag added to 30 other items ("wrong").
Out-of-fold probabilities from 5-fold one-vs-rest logistic regression (tagnet.curation.audit.out_of_fold_probabilities),
then tagnet.curation.audit.find_label_issues. Reported: the share of the 60 corrupted items (and of the exact
corrupted cells) among the 120 highest-ranked issues, the number of issues flagged, and the time.

Run: python benchmarks/audit.py [--seeds 0 1 2]
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np

from tagnet.curation.audit import find_label_issues, out_of_fold_probabilities
from tagnet.data.feature_table import read_feature_table

SCENE = Path(__file__).resolve().parents[2] / "shared" / "data" / "mulan" / "scene" / "scene-train.arff"


def corrupt(targets: np.ndarray, rng: np.random.Generator, n: int = 30) -> tuple[np.ndarray, set, set]:
    """A copy of targets with one true tag removed from n items and one absent tag added to n others."""
    noisy = targets.copy()
    with_tag = np.flatnonzero(targets.any(axis=1))
    removed = rng.choice(with_tag, n, replace=False)
    added = rng.choice(np.setdiff1d(np.arange(len(targets)), removed), n, replace=False)
    cells = set()
    for i in removed:
        j = rng.choice(np.flatnonzero(targets[i]))
        noisy[i, j] = 0
        cells.add((int(i), int(j)))
    for i in added:
        j = rng.choice(np.flatnonzero(targets[i] == 0))
        noisy[i, j] = 1
        cells.add((int(i), int(j)))
    return noisy, {i for i, _ in cells}, cells


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--top", type=int, default=120)
    args = parser.parse_args()
    table = read_feature_table(SCENE)
    names, y = table.labels.label_names, table.labels.targets
    items = [str(i) for i in range(len(y))]
    rows = []
    for seed in args.seeds:
        noisy, bad_items, bad_cells = corrupt(y, np.random.default_rng(seed))
        start = time.perf_counter()
        probs = out_of_fold_probabilities(table.features, noisy, folds=5, seed=seed)
        oof = time.perf_counter() - start
        issues = find_label_issues(noisy, probs, items=items, label_names=names)
        total = time.perf_counter() - start
        top = issues[:args.top]
        found_items = {int(issue.item) for issue in top} & bad_items
        found_cells = {(int(issue.item), names.index(issue.label)) for issue in top} & bad_cells
        missing = sum(y[i, j] == 1 for i, j in found_cells) / 30
        rows.append((len(found_items) / len(bad_items), len(found_cells) / len(bad_cells), len(issues), oof, total))
        below = np.mean([probs[i, j] < 0.5 for i, j in bad_cells if y[i, j] == 1])
        print(f"seed {seed}: items recalled {rows[-1][0]:.3f}, cells {rows[-1][1]:.3f} (removed tags {missing:.3f}, "
              f"added tags {2 * rows[-1][1] - missing:.3f}) in the top {args.top}; {len(issues)} issues flagged; "
              f"removed tags with p < 0.5: {below:.2f}; out-of-fold {oof:.2f} s, total {total:.2f} s")
    mean = [statistics.mean(r[k] for r in rows) for k in range(5)]
    print(f"mean over {len(rows)} seeds: items {mean[0]:.3f}, cells {mean[1]:.3f}, flagged {mean[2]:.0f}, "
          f"out-of-fold {mean[3]:.2f} s, total {mean[4]:.2f} s")


if __name__ == "__main__":
    main()
