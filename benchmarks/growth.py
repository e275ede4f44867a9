"""Growing a label space on ../shared/data/miml-scene: a default run on 4 of the 5 labels, the 5th added with
`tagnet train NEW --from RUN`, against a full default training of all 5 (time, untouched labels, the new label's AP).

Run: python benchmarks/growth.py [--label trees] [--out /tmp/grow-bench] [--cache /tmp/grow-cache] [--score-only]
The 1,600 photos are split 80/20 (split_table, seed 0); every model is scored on the 20% it never saw. Times are each
run's own (metrics.json); "full" computes its features as a default run does, "full-warm" reads the parent's cache.
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import numpy as np
import torch
from sklearn.metrics import average_precision_score

from tagnet.config.settings import TrainConfig
from tagnet.data.label_table import LabelTable
from tagnet.inference.artifact import load_artifact
from tagnet.data.labels import read_labels, write_labels
from tagnet.data.split import split_table
from tagnet.inference.predictor import Predictor
from tagnet.training.trainer import train

SCENE = next(p / "shared" / "data" / "miml-scene" for p in Path(__file__).resolve().parents
             if (p / "shared" / "data" / "miml-scene").is_dir())


def seconds_of(run: Path) -> float:
    """The seconds a run took, from its metrics.json (counted by train from its first line to the last file)."""
    return float(json.loads((run / "metrics.json").read_text())["seconds"])


def test_probabilities(out: Path, items: list[str]) -> dict[str, np.ndarray]:
    """Every run's probabilities of the test photos: the backbone (frozen and shared by all four) runs once, through
    the parent's Predictor, and each run's head takes its features, as its Predictor would (float64 sigmoid)."""
    parent = Predictor(out / "parent")
    probs, features, _, _ = parent.modality.features(parent, [str(SCENE / "images" / item) for item in items])
    x = torch.from_numpy(features)
    heads = {name: load_artifact(out / name).model.head.eval() for name in ("parent", "grown", "full", "full-warm")}
    with torch.no_grad():
        result = {name: torch.sigmoid(head(x).double()).float().numpy() for name, head in heads.items()}
    assert np.allclose(result["parent"], probs, atol=1e-6)  # the Predictor's numbers (it runs batches of 32)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--label", default="trees", help="the label added by growth")
    parser.add_argument("--out", default="/tmp/grow-bench")
    parser.add_argument("--cache", default="/tmp/grow-cache", help="the parent's (and grown run's) feature cache")
    parser.add_argument("--score-only", action="store_true", help="score the runs already in --out")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    parts = split_table(read_labels(SCENE / "labels.csv"), val=0.2, seed=0)
    five, test = parts["train"], parts["val"]
    keep = [five.label_names.index(name) for name in five.label_names if name != args.label]
    four = LabelTable(five.items, [five.label_names[j] for j in keep], five.targets[:, keep], five.known[:, keep],
                      five.source_format, five.meta)
    if not args.score_only:
        write_labels(four, out / "train4.csv")
        write_labels(five, out / "train5.csv")
        shutil.rmtree(out / "full-cache", ignore_errors=True)
        images = SCENE / "images"
        for labels, name, kwargs in (("train4.csv", "parent", {"config": TrainConfig(cache_dir=args.cache)}),
                                     ("train5.csv", "grown", {"from_run": out / "parent"}),
                                     ("train5.csv", "full", {"config": TrainConfig(cache_dir=str(out / "full-cache"))}),
                                     ("train5.csv", "full-warm", {"config": TrainConfig(cache_dir=args.cache)})):
            train(out / labels, images_dir=images, out_dir=out / name, progress=False, force=True, **kwargs)
    seconds = {name: seconds_of(out / name) for name in ("parent", "grown", "full", "full-warm")}
    probs = test_probabilities(out, test.items)
    column = test.label_names.index(args.label)
    truth = test.targets[:, column]
    ap = {name: round(float(average_precision_score(truth, p[:, -1 if name == "grown" else column])), 4)
          for name, p in probs.items() if name != "parent"}
    print(json.dumps({
        "seconds (metrics.json)": seconds,
        "grown / full (features computed)": round(seconds["grown"] / seconds["full"], 4),
        "grown / full (features cached)": round(seconds["grown"] / seconds["full-warm"], 4),
        "untouched labels identical on the test photos": bool(np.array_equal(probs["parent"], probs["grown"][:, :4])),
        f"AP of {args.label} on {len(test)} test photos": ap,
        "grown - full AP": round(ap["grown"] - ap["full"], 4),
        "grown - full (cached) AP": round(ap["grown"] - ap["full-warm"], 4),
        "growth": json.loads((out / "grown" / "artifact" / "tagnet.json").read_text())["extra"]["growth"]}, indent=2))


if __name__ == "__main__":
    main()
