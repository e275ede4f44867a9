"""Finding injected label errors, tagnet audit side by side with cleanlab, on the same out-of-fold probabilities.

Data: the 1,600 shared miml-scene photos (frozen efficientnet_lite0 features through tagnet's image modality, cached
under --cache) and the MULAN scene, yeast and emotions training files (read as tagnet reads them). Per seed: one
true tag removed from 30 items ("missing") and one wrong tag added to 30 other items ("wrong"); out-of-fold
probabilities from tagnet.curation.audit.out_of_fold_probabilities (the 5-fold CV `tagnet audit` runs), then every
ranking on those same probabilities:

- tagnet audit (context): tagnet.curation.audit.find_label_issues on tagnet.curation.audit.context_probabilities
  of the out-of-fold probabilities (what `tagnet audit` reports), items in the order of their first issue;
- tagnet before (issue 17): the same on the out-of-fold probabilities themselves;
- cleanlab find: cleanlab.multilabel_classification.filter.find_label_issues(labels, pred_probs,
  return_indices_ranked_by="self_confidence") (flagged items only); "on context": fed the context probabilities;
- cleanlab scores: every item by cleanlab.multilabel_classification.rank.get_label_quality_scores, lowest first;
- self-confidence: every (item, label) cell by 1 - p(given label), items by their worst cell (no filter);
- per-label thresholds: cells by the confident-learning margin against per-label thresholds (threshold_margins),
  items by their worst cell.

Reported: the share of the 60 corrupted items among the 120 highest-ranked items ("top 2x"), and for the cell
rankings the share of the 60 corrupted cells among the 120 highest-ranked cells.

Run: python benchmarks/audit.py [--seeds 0 1 2] [--sets photos scene yeast emotions] [--cache /tmp/audit-cache]
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path
from typing import Callable

import numpy as np

from tagnet.config.settings import TrainConfig
from tagnet.curation.audit import context_probabilities, find_label_issues, out_of_fold_probabilities
from tagnet.curation.workflow import frozen_features
from tagnet.data.feature_table import read_feature_table

DATA = next(folder / "shared" / "data" for folder in Path(__file__).resolve().parents  # ../shared/data of the checkout
            if (folder / "shared" / "data").is_dir())
ERRORS = 30  # of each kind


def load(name: str, cache: Path) -> tuple[np.ndarray, np.ndarray]:
    """(features, 0/1 targets) of one data set."""
    if name == "photos":
        photos = DATA / "miml-scene"
        config = TrainConfig(backbone="efficientnet_lite0", cache_dir=str(cache))
        encoded = frozen_features(photos / "labels.csv", images_dir=photos / "images", config=config)
        return encoded.features, encoded.table.targets.astype(np.uint8)
    table = read_feature_table(DATA / "mulan" / name / f"{name}-train.arff")
    return table.features, table.labels.targets.astype(np.uint8)


def corrupt(targets: np.ndarray, rng: np.random.Generator, n: int = ERRORS) -> tuple[np.ndarray, np.ndarray]:
    """A copy of targets with one true tag removed from n items and one absent tag added to n others, and the
    (2n, 2) corrupted cells."""
    noisy = targets.copy()
    removed = rng.choice(np.flatnonzero(targets.any(axis=1)), n, replace=False)
    added = rng.choice(np.setdiff1d(np.flatnonzero(~targets.all(axis=1)), removed), n, replace=False)
    cells = []
    for i, value in [(i, 1) for i in removed] + [(i, 0) for i in added]:
        j = rng.choice(np.flatnonzero(targets[i] == value))
        noisy[i, j] = 1 - value
        cells.append((i, j))
    return noisy, np.array(cells)


def first_items(cells: np.ndarray) -> np.ndarray:
    """Items in the order of their first appearance in ranked (item, label) cells."""
    _, first = np.unique(cells[:, 0], return_index=True)
    return cells[np.sort(first), 0]


def by_worst_cell(scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(items ranked by their highest cell score, cells ranked by score), highest first."""
    order = np.argsort(-scores, axis=None, kind="stable")
    cells = np.column_stack(np.unravel_index(order, scores.shape))
    return first_items(cells), cells


def threshold_margins(noisy: np.ndarray, probs: np.ndarray) -> np.ndarray:
    """Confident learning one-vs-rest per label as a cell score: with t1 the mean p over cells given 1 and t0 the
    mean 1 - p over cells given 0, (p - t1) - (1 - p - t0) for a cell given 0 and its negative for one given 1."""
    given = noisy == 1
    t1 = (probs * given).sum(axis=0) / np.maximum(given.sum(axis=0), 1)
    t0 = ((1 - probs) * ~given).sum(axis=0) / np.maximum((~given).sum(axis=0), 1)
    towards_present = (probs - t1) - (1 - probs - t0)
    return np.where(given, -towards_present, towards_present)


def tagnet_ranking(noisy: np.ndarray, probs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(items in the order of their first issue, issue cells) of tagnet.curation.audit.find_label_issues."""
    names = [str(j) for j in range(noisy.shape[1])]
    issues = find_label_issues(noisy, probs, items=[str(i) for i in range(len(noisy))], label_names=names)
    cells = np.array([(int(issue.item), int(issue.label)) for issue in issues], dtype=int).reshape(-1, 2)
    return first_items(cells), cells


def rankings(noisy: np.ndarray, probs: np.ndarray, context: np.ndarray) -> dict[str, tuple[np.ndarray, np.ndarray | None]]:
    """Every method's (ranked items, ranked cells or None): out-of-fold probabilities `probs`, and `context` =
    context_probabilities of them."""
    from cleanlab.multilabel_classification.filter import find_label_issues as cleanlab_find
    from cleanlab.multilabel_classification.rank import get_label_quality_scores

    labels = [np.flatnonzero(row).tolist() for row in noisy]
    methods: dict[str, Callable[[], tuple[np.ndarray, np.ndarray | None]]] = {
        "tagnet audit (context)": lambda: tagnet_ranking(noisy, context),
        "tagnet before (issue 17)": lambda: tagnet_ranking(noisy, probs),
        "cleanlab find": lambda: (np.asarray(cleanlab_find(labels, probs, return_indices_ranked_by="self_confidence")), None),
        "cleanlab scores": lambda: (np.argsort(get_label_quality_scores(labels, probs), kind="stable"), None),
        "cleanlab find on context": lambda: (np.asarray(cleanlab_find(labels, context,
                                                                      return_indices_ranked_by="self_confidence")), None),
        "self-confidence": lambda: by_worst_cell(np.where(noisy == 1, 1 - probs, probs)),
        "per-label thresholds": lambda: by_worst_cell(threshold_margins(noisy, probs)),
    }
    return {name: method() for name, method in methods.items()}


def recall(ranked: np.ndarray | None, truth: set, top: int) -> float:
    """Share of truth among the first `top` of ranked (items, or (item, label) rows); nan for None."""
    if ranked is None:
        return float("nan")
    head = ranked[:top]
    found = {tuple(map(int, row)) if np.ndim(row) else int(row) for row in head}
    return len(found & truth) / len(truth)


def run_set(name: str, seeds: list[int], cache: Path) -> dict[str, list[tuple[float, float]]]:
    """Per method, (item recall, cell recall) in the top 2x for each seed; prints one line per seed."""
    start = time.perf_counter()
    x, y = load(name, cache)
    print(f"{name}: {x.shape[0]} items, {x.shape[1]} features, {y.shape[1]} labels (read in "
          f"{time.perf_counter() - start:.1f} s); random top-2x item recall {min(1, 4 * ERRORS / len(y)):.3f}")
    results: dict[str, list[tuple[float, float]]] = {}
    for seed in seeds:
        noisy, cells = corrupt(y, np.random.default_rng(seed))
        start = time.perf_counter()
        probs = out_of_fold_probabilities(x, noisy, folds=5, seed=seed)
        oof = time.perf_counter() - start
        context = context_probabilities(noisy, probs, folds=5, seed=seed)
        with_context = time.perf_counter() - start - oof
        items, cell_set = {int(i) for i in cells[:, 0]}, {tuple(map(int, c)) for c in cells}
        line = []
        for method, (ranked_items, ranked_cells) in rankings(noisy, probs, context).items():
            pair = (recall(ranked_items, items, 4 * ERRORS), recall(ranked_cells, cell_set, 4 * ERRORS))
            results.setdefault(method, []).append(pair)
            line.append(f"{method} {pair[0]:.3f}" + (f"/{pair[1]:.3f}" if pair[1] == pair[1] else ""))
        print(f"  seed {seed} (out-of-fold {oof:.1f} s, context {with_context:.1f} s): " + ", ".join(line), flush=True)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--sets", nargs="+", default=["photos", "scene", "yeast", "emotions"])
    parser.add_argument("--cache", type=Path, default=Path("/tmp/audit-cache"))
    args = parser.parse_args()
    table = {name: run_set(name, args.seeds, args.cache) for name in args.sets}
    print(f"\nmean over seeds {args.seeds}: items / cells recalled in the top 2x ({4 * ERRORS} of {2 * ERRORS} errors)")
    methods = list(next(iter(table.values())))
    print("| method | " + " | ".join(args.sets) + " |")
    print("|---|" + "---|" * len(args.sets))
    for method in methods:
        means = [[statistics.mean(r[k] for r in table[name][method]) for k in (0, 1)] for name in args.sets]
        print(f"| {method} | " + " | ".join(f"{m[0]:.3f}" + (f" / {m[1]:.3f}" if m[1] == m[1] else "")
                                           for m in means) + " |")


if __name__ == "__main__":
    main()
