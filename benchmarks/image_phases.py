"""Image throughput per phase, side by side in one run: plain eager decode + one forward of N miml-scene photos against
the frozen-feature phase of a cold `tagnet train` (decode into the cache, then features of each photo and its mirror
image), with frozen features on eager PyTorch ("before") and on the fastest runtime ("after", tagnet.inference.runtime).

Run: python benchmarks/image_phases.py [--images 400] [--backbone efficientnet_lite0] [--rounds 1]
Each training runs in a child process with its own cold cache, so no run warms another.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SCENE = Path(__file__).resolve().parents[2] / "shared" / "data" / "miml-scene"

TRAIN = """
import json, sys, time
import tagnet.inference.runtime as runtime
if sys.argv[1] == "eager":
    runtime._onnx_session = lambda module, sample: None  # "before": frozen features on eager PyTorch
from tagnet.config.settings import TrainConfig
from tagnet.training.trainer import train
config = TrainConfig(backbone=sys.argv[2] or None, epochs=1)
started = time.perf_counter()
train(sys.argv[3], images_dir=sys.argv[4], out_dir=sys.argv[5], config=config, progress=False)
print(json.dumps({"wall": time.perf_counter() - started}))
"""

PLAIN = """
import json, sys, time
import numpy as np, torch
from PIL import Image
from tagnet.models import create_model
from tagnet.data.images import normalize_batch
files = json.loads(sys.argv[1])
model = create_model(sys.argv[2], num_labels=5, pretrained=True)
backbone, pre = model.backbone.eval().to(memory_format=torch.channels_last), model.preprocess
started = time.perf_counter()
with torch.inference_mode():
    for start in range(0, len(files), 8):
        arrays = [np.asarray(Image.open(f).convert("RGB").resize((pre.image_size, pre.image_size))) for f in files[start:start + 8]]
        batch = torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2)
        backbone(normalize_batch(batch, pre.mean, pre.std))
print(json.dumps({"wall": time.perf_counter() - started}))
"""


def run(code: str, *args: str) -> tuple[dict, str]:
    """A child process's last JSON line and its stderr."""
    done = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1]), done.stderr


def frozen_seconds(log: str) -> float:
    """Seconds of the `frozen ... outputs of N inputs ready in S s` line."""
    flat = " ".join(log.split())  # rich wraps long lines
    return float(re.search(r"frozen \S+ outputs of \d+ inputs ready in ([\d.]+) s", flat).group(1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=400)
    parser.add_argument("--backbone", default="efficientnet_lite0", help="'' for the image default")
    parser.add_argument("--rounds", type=int, default=1)
    args = parser.parse_args()
    lines = (SCENE / "labels.csv").read_text().splitlines()
    rows = lines[1:args.images + 1]
    results: dict[str, list[float]] = {"plain eager decode + one forward": [], "frozen phase, eager (before)": [],
                                       "frozen phase, fastest runtime (after)": []}
    for _ in range(args.rounds):
        with tempfile.TemporaryDirectory() as tmp:
            labels = Path(tmp) / "labels.csv"
            labels.write_text("\n".join([lines[0], *rows]) + "\n")
            files = [str(SCENE / "images" / row.split(",")[0]) for row in rows]
            results["plain eager decode + one forward"].append(run(PLAIN, json.dumps(files), args.backbone or
                                                                   "efficientnet_lite0")[0]["wall"])
            for mode, name in (("eager", "frozen phase, eager (before)"), ("fast", "frozen phase, fastest runtime (after)")):
                _, log = run(TRAIN, mode, args.backbone, str(labels), str(SCENE / "images"), str(Path(tmp) / mode))
                results[name].append(frozen_seconds(log))
    plain = min(results["plain eager decode + one forward"])
    started = time.strftime("%Y-%m-%d %H:%M")
    print(f"{args.images} photos, backbone {args.backbone or 'default'}, best of {args.rounds} round(s), {started}")
    for name, values in results.items():
        print(f"  {name:42s} {min(values):6.1f} s  ({min(values) / plain:.2f}x plain)")


if __name__ == "__main__":
    main()
