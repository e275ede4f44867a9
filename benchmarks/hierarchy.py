"""A two-level hierarchy on miml-scene: consistent predictions and hierarchical F1 against a flat model.

The shared 1,600 photos (5 labels) under the tree land/{desert, mountains, trees}, water/{sea}, sky/{sunset}.
Two runs of the default training on frozen efficientnet_lite0 features with 5-fold CV (--cv 5: one head per fold,
out-of-fold validation probabilities and thresholds), features cached in CACHE and shared by the runs:
- flat: the label file with the parents written in as ordinary labels (8 independent labels);
- hierarchy: the original label file with --hierarchy (the parents added as implied labels).
A third row applies the hierarchy's rule to the flat run's out-of-fold probabilities (thresholds refitted on the
consistent probabilities), which isolates the decision rule from training differences.
Reported per row: inconsistent decisions (a label predicted without its parent; goal 0), hierarchical P/R/F1
(Kiritchenko et al. 2005; goal: hierarchy >= flat), micro-F1, mAP and per-depth micro-F1/mAP, on the out-of-fold
validation of all 1,600 photos, and each run's wall time.

Run: python benchmarks/hierarchy.py [--cache /tmp/hier-cache] [--data ../shared/data/miml-scene]
"""

from __future__ import annotations

import argparse
import csv
import json
import time
from pathlib import Path

import numpy as np

from tagnet.config.settings import TrainConfig
from tagnet.decisions.thresholds import apply_thresholds
from tagnet.evaluation.metrics import average_precision
from tagnet.hierarchy import Tree, hierarchical_prf, per_depth, read_hierarchy
from tagnet.training.trainer import train
from tagnet.training.validation import validation_thresholds

SCENE = Path(__file__).resolve().parents[2] / "shared" / "data" / "miml-scene"
TREE = "land/desert\nland/mountains\nland/trees\nwater/sea\nsky/sunset\n"
PARENT = {"desert": "land", "mountains": "land", "trees": "land", "sea": "water", "sunset": "sky"}


def write_inputs(cache: Path, scene: Path) -> tuple[Path, Path]:
    """The tree file and the flat label file (each photo's labels with their parents added)."""
    cache.mkdir(parents=True, exist_ok=True)
    tree = cache / "tree.txt"
    tree.write_text(TREE)
    flat = cache / "flat.csv"
    with open(scene / "labels.csv", newline="") as source, open(flat, "w", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(["image", "labels"])
        for row in csv.DictReader(source):
            tags = row["labels"].split()
            writer.writerow([row["image"], " ".join(sorted(set(tags) | {PARENT[t] for t in tags}))])
    return tree, flat


def run(labels: Path, scene: Path, out: Path, config: TrainConfig, **options) -> dict:
    """One training run; its out-of-fold validation, thresholds, label names and time."""
    seen: dict = {}

    def keep(stage: str, state) -> None:
        if stage == "decisions":
            seen.update(state.outcome, names=state.data.table.label_names)

    started = time.perf_counter()
    train(labels, images_dir=scene / "images", out_dir=out, config=config, force=True, progress=False,
          callbacks={"on_stage_end": [keep]}, **options)
    return {**seen, "seconds": time.perf_counter() - started}


def scores(name: str, targets, probs, known, chosen, tree: Tree, seconds) -> dict:
    """One row of the table: inconsistent decisions, hierarchical P/R/F1, micro-F1, mAP, per depth."""
    truth, known = np.asarray(targets).astype(bool), np.asarray(known, dtype=bool)
    ap = average_precision(truth, np.asarray(probs, dtype=np.float64), known)
    hier = hierarchical_prf(truth, chosen, tree, known)
    tp, fp, fn = (truth & chosen & known).sum(), (~truth & chosen & known).sum(), (truth & ~chosen & known).sum()
    depth = {row["depth"]: row for row in per_depth(truth, chosen, ap, tree, known)}
    return {"model": name, "inconsistent": tree.inconsistent(chosen), "hP": hier["precision"], "hR": hier["recall"],
            "hF1": hier["f1"], "micro_f1": float(2 * tp / (2 * tp + fp + fn)), "mAP": float(np.nanmean(ap)),
            "depth1_f1": depth[1]["micro_f1"], "depth2_f1": depth[2]["micro_f1"], "depth1_mAP": depth[1]["mAP"],
            "depth2_mAP": depth[2]["mAP"], "seconds": seconds}


def paired_bootstrap(targets, flat, ruled, tree: Tree, *, resamples: int = 2000) -> tuple[float, float]:
    """95% interval of hF1(ruled) - hF1(flat) over photos drawn with replacement (the same draw for both)."""
    truth = tree.with_ancestors(targets)
    parts = [np.stack([(truth & said).sum(1), said.sum(1), truth.sum(1)], 1)
             for said in (tree.with_ancestors(flat), tree.with_ancestors(ruled))]
    draws = np.random.default_rng(0).integers(0, len(truth), (resamples, len(truth)))
    f1 = [2 * p[draws, 0].sum(1) / (p[draws, 1].sum(1) + p[draws, 2].sum(1)) for p in parts]
    low, high = np.percentile(f1[1] - f1[0], [2.5, 97.5])
    return float(low), float(high)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache", type=Path, default=Path("/tmp/hier-cache"))
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--data", type=Path, default=SCENE, help="the miml-scene folder (labels.csv, images/)")
    args = parser.parse_args()
    tree_file, flat_file = write_inputs(args.cache, args.data)
    config = TrainConfig(backbone="efficientnet_lite0", cv=args.folds, cache_dir=str(args.cache / "features"))
    flat = run(flat_file, args.data, args.cache / "flat-run", config)
    hier = run(args.data / "labels.csv", args.data, args.cache / "hier-run", config, hierarchy=tree_file)
    rows, decisions = [], {}
    for name, result in (("flat", flat), ("hierarchy", hier)):
        val, names = result["validation"], result["names"]
        tree = read_hierarchy(tree_file).for_labels(names)
        chosen = apply_thresholds(val["probs"], result["thresholds"])
        decisions[name] = chosen = tree.gate(chosen) if name == "hierarchy" else chosen
        rows.append(scores(name, val["targets"], val["probs"], val["known"], chosen, tree, result["seconds"]))
    val, names = flat["validation"], flat["names"]
    assert names == hier["names"] and np.array_equal(val["targets"], hier["validation"]["targets"])
    tree = read_hierarchy(tree_file).for_labels(names)
    ruled = {**val, "probs": tree.consistent(val["probs"])}
    fit = validation_thresholds(ruled, config.for_modality("image"))
    chosen = tree.gate(apply_thresholds(ruled["probs"], fit.thresholds))
    rows.append(scores("flat + rule", val["targets"], ruled["probs"], val["known"], chosen, tree, None))
    low, high = paired_bootstrap(val["targets"], decisions["flat"], decisions["hierarchy"], tree)
    print(f"hF1(hierarchy) - hF1(flat): {rows[1]['hF1'] - rows[0]['hF1']:+.4f}, paired bootstrap over the photos "
          f"(2000 resamples) 95% interval [{low:+.4f}, {high:+.4f}]")
    print(json.dumps(rows, indent=1))
    keys = list(rows[0])
    print("| " + " | ".join(keys) + " |\n|" + "---|" * len(keys))
    for row in rows:
        print("| " + " | ".join(f"{v:.4f}" if isinstance(v, float) else str(v) for v in row.values()) + " |")


if __name__ == "__main__":
    main()
