"""Growing a label space on ../shared/data/miml-scene: a default run on 4 of the 5 labels, the 5th added with
`tagnet train NEW --from RUN`, against a full default training of all 5 (time, untouched labels, the new label's AP).

Run: python benchmarks/growth.py [--label trees] [--out /tmp/grow-bench] [--cache /tmp/grow-cache]
The 1,600 photos are split 80/20 (split_table, seed 0); every model is scored on the 20% it never saw.
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

import numpy as np
from sklearn.metrics import average_precision_score

from tagnet.config.settings import TrainConfig
from tagnet.data.labels import read_labels, write_labels
from tagnet.data.split import split_table
from tagnet.inference.predictor import Predictor
from tagnet.training.trainer import train

SCENE = next(p / "shared" / "data" / "miml-scene" for p in Path(__file__).resolve().parents
             if (p / "shared" / "data" / "miml-scene").is_dir())


def timed(labels: Path, out: Path, **kwargs) -> float:
    """Seconds of one `train` call (the run folder replaced)."""
    started = time.perf_counter()
    train(labels, images_dir=SCENE / "images", out_dir=out, progress=False, force=True, **kwargs)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--label", default="trees", help="the label added by growth")
    parser.add_argument("--out", default="/tmp/grow-bench")
    parser.add_argument("--cache", default="/tmp/grow-cache", help="the parent's (and grown run's) feature cache")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    parts = split_table(read_labels(SCENE / "labels.csv"), val=0.2, seed=0)
    five, test = parts["train"], parts["val"]
    keep = [name for name in five.label_names if name != args.label]
    four = five.subset(np.arange(len(five)))
    four = type(four)(four.items, keep, four.targets[:, [five.label_names.index(n) for n in keep]],
                      four.known[:, [five.label_names.index(n) for n in keep]], four.source_format, four.meta)
    write_labels(four, out / "train4.csv")
    write_labels(five, out / "train5.csv")
    cold = out / "full-cache"
    shutil.rmtree(cold, ignore_errors=True)
    seconds = {
        "parent (4 labels, features computed)": timed(out / "train4.csv", out / "parent",
                                                      config=TrainConfig(cache_dir=args.cache)),
        "grown (--from parent, 5th label)": timed(out / "train5.csv", out / "grown", from_run=out / "parent"),
        "full (5 labels, features computed)": timed(out / "train5.csv", out / "full",
                                                    config=TrainConfig(cache_dir=str(cold))),
        "full (5 labels, features cached)": timed(out / "train5.csv", out / "full-warm",
                                                  config=TrainConfig(cache_dir=args.cache)),
    }
    paths = [str(SCENE / "images" / item) for item in test.items]
    probs = {name: Predictor(out / name).predict_proba(paths) for name in ("parent", "grown", "full", "full-warm")}
    column = test.label_names.index(args.label)
    ap = {name: float(average_precision_score(test.targets[:, column], p[:, -1 if name == "grown" else column]))
          for name, p in probs.items() if name != "parent"}
    grown_meta = json.loads((out / "grown" / "artifact" / "tagnet.json").read_text())
    print(json.dumps({
        "seconds": {k: round(v, 1) for k, v in seconds.items()},
        "grown / full (features computed)": round(seconds["grown (--from parent, 5th label)"]
                                                  / seconds["full (5 labels, features computed)"], 3),
        "grown / full (features cached)": round(seconds["grown (--from parent, 5th label)"]
                                                / seconds["full (5 labels, features cached)"], 3),
        "untouched labels identical on the test photos": bool(np.array_equal(probs["parent"], probs["grown"][:, :4])),
        f"AP of {args.label} on {len(test)} test photos": {k: round(v, 4) for k, v in ap.items()},
        "grown - full AP": round(ap["grown"] - ap["full"], 4),
        "grown - full (cached) AP": round(ap["grown"] - ap["full-warm"], 4),
        "growth": grown_meta["extra"]["growth"]}, indent=2))


if __name__ == "__main__":
    main()
