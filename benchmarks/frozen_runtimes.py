"""The frozen-feature forward alone on each CPU runtime, interleaved in one process so that a shared machine's load
falls on all of them alike: N miml-scene photos decoded once, then per round, in turn (the order rotating), eager
PyTorch one view (the plain pass's forward), and each runtime the phase can run on (both views, as the phase does:
photos then mirror images, batches of FEATURE_BATCH), through tagnet.inference.runtime.fastest_forward.

Run: python benchmarks/frozen_runtimes.py [--images 400] [--backbone efficientnet_lite0] [--rounds 5]
     [--runtimes torch,onnxruntime,openvino] [--data ../shared/data/miml-scene]
Prints the best and median seconds of each, and their ratios to eager PyTorch's one view and to ONNX Runtime.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from tagnet.data.images import load_image, normalize_batch
from tagnet.inference.runtime import RUNTIME_ENV, fastest_forward
from tagnet.modalities.image import FEATURE_BATCH
from tagnet.models import create_model

SCENE = Path(__file__).resolve().parents[2] / "shared" / "data" / "miml-scene"


def batches(args) -> tuple[torch.nn.Module, list[torch.Tensor]]:
    """The frozen backbone and the photos' normalised batches of FEATURE_BATCH."""
    model = create_model(args.backbone, num_labels=5, pretrained=True)
    rows = (args.data / "labels.csv").read_text().splitlines()[1:args.images + 1]
    photos = np.stack([load_image(args.data / "images" / row.split(",")[0], model.preprocess.image_size) for row in rows])
    pre = model.preprocess
    return model.backbone.eval().to(memory_format=torch.channels_last), [
        normalize_batch(torch.from_numpy(photos[start:start + FEATURE_BATCH]).permute(0, 3, 1, 2), pre.mean, pre.std)
        for start in range(0, len(photos), FEATURE_BATCH)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=400)
    parser.add_argument("--backbone", default="efficientnet_lite0")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--runtimes", default="onnxruntime,openvino")
    parser.add_argument("--data", type=Path, default=SCENE)
    args = parser.parse_args()
    backbone, inputs = batches(args)
    forwards = {"eager PyTorch, one view": (backbone, False)}  # called in inference mode below
    for name in args.runtimes.split(","):
        os.environ[RUNTIME_ENV] = name
        chosen, forward = fastest_forward(backbone, inputs[0])
        forwards[f"{chosen}, two views"] = (forward, True)
    print(f"load average at start {os.getloadavg()}, torch threads {torch.get_num_threads()}", flush=True)
    times: dict[str, list[float]] = {name: [] for name in forwards}
    for turn in range(args.rounds):
        names = list(forwards)
        for name in names[turn % len(names):] + names[:turn % len(names)]:
            forward, both = forwards[name]
            started = time.perf_counter()
            with torch.inference_mode():
                for batch in inputs:
                    forward(batch)
                    if both:
                        forward(batch.flip(-1))
            times[name].append(time.perf_counter() - started)
    print(f"{args.images} photos, {args.backbone}, {args.rounds} interleaved rounds, {time.strftime('%Y-%m-%d %H:%M')}, "
          f"load average at end {os.getloadavg()}")
    eager, ort = min(times["eager PyTorch, one view"]), min(times.get("onnxruntime, two views", [float("nan")]))
    print(f"  {'':28s} {'best':>7s} {'median':>7s}  {'x eager 1 view':>14s}  {'x onnxruntime':>13s}")
    for name, values in times.items():
        best = min(values)
        print(f"  {name:28s} {best:6.1f}s {statistics.median(values):6.1f}s  {best / eager:13.2f}x  {best / ort:12.2f}x")


if __name__ == "__main__":
    main()
