"""The Predictor's batch prediction on one exported artifact through each runtime it can take: OpenVINO, ONNX Runtime
and eager PyTorch, timed in interleaved rounds in one process, with per-round ratios.

Run: python benchmarks/predictor_runtimes.py [--model efficientnet_lite0+efficientnet_lite2] [--threads 2]
                                            [--batch-sizes 1,32] [--seconds 4] [--rounds 5] [--json FILE]
The model (default: the image default, ImageNet weights where tagnet has them) gets a 5-label head and is exported
with `tagnet export`'s code; Predictor(runtime=...).run is timed on the same normalised float batch (decoding and
resizing are the same for every runtime). Each round times every runtime for seconds/rounds in turn, so load from
other processes hits them alike; a ratio is taken within each round and the median over rounds reported.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time

import numpy as np
import torch

from tagnet.config.settings import MODALITY_DEFAULTS
from tagnet.decisions.thresholds import Thresholds
from tagnet.inference.artifact import save_artifact
from tagnet.inference.export import export_onnx
from tagnet.inference.predictor import Predictor
from tagnet.models import create_model
from tagnet.models.fused import member_names
from tagnet.models.pretrained import LITE_MODELS

LABELS = ["a", "b", "c", "d", "e"]
RUNTIMES = ("openvino", "onnx", "torch")  # Predictor runtime names
RATIOS = (("openvino", "onnx"), ("onnx", "torch"), ("openvino", "torch"))  # (a, b): a's time / b's time


def rate(predictor: Predictor, batch: torch.Tensor, seconds: float) -> float:
    """Inputs per second of predictor.run(batch), called for about `seconds` (at least twice)."""
    calls, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds or calls < 2:
        predictor.run(batch)
        calls += 1
    return calls * len(batch) / (time.perf_counter() - started)


def measure(predictors: dict[str, Predictor], batch: torch.Tensor, *, seconds: float, rounds: int) -> dict:
    """Per runtime the inputs/s of each round (interleaved), and per pair of RATIOS the median over rounds of the
    time ratio a/b (below 1: a is faster)."""
    for predictor in predictors.values():  # warm-up; OpenVINO's first batch also settles its agreement check
        predictor.run(batch)
    per_round = {name: [] for name in predictors}
    for _ in range(rounds):
        for name, predictor in predictors.items():
            per_round[name].append(rate(predictor, batch, seconds / rounds))
    ratios = {f"{a}/{b}": float(np.median(np.array(per_round[b]) / np.array(per_round[a]))) for a, b in RATIOS}
    return {"per_round": per_round, "median": {name: float(np.median(r)) for name, r in per_round.items()},
            "time_ratio_median": ratios}


def main() -> None:
    """Export the model, build one Predictor per runtime on it, time them, print a table and the load."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=MODALITY_DEFAULTS["image"]["backbone"])
    parser.add_argument("--threads", type=int, default=2, help="torch threads (OpenVINO takes the same count)")
    parser.add_argument("--batch-sizes", default="1,32")
    parser.add_argument("--seconds", type=float, default=4.0, help="timed seconds per runtime and batch size")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    pretrained = all(name in LITE_MODELS for name in member_names(args.model))
    model = create_model(args.model, num_labels=len(LABELS), pretrained=pretrained).eval()
    size = model.preprocess.image_size
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="tagnet-bench-") as folder:
        save_artifact(folder, model=model, modality="image", label_names=LABELS, state=model.preprocess.to_dict(),
                      thresholds=Thresholds("per-label", [0.5] * len(LABELS)), config={}, metrics={})
        export_onnx(folder)
        predictors = {name: Predictor(folder, runtime=name, device="cpu") for name in RUNTIMES}
        results = {}
        for batch_size in (int(b) for b in args.batch_sizes.split(",")):
            batch = torch.from_numpy(np.random.default_rng(0).normal(size=(batch_size, 3, size, size))
                                     .astype(np.float32)).contiguous(memory_format=torch.channels_last)
            results[batch_size] = measure(predictors, batch, seconds=args.seconds, rounds=args.rounds)
        ran = {name: predictor.runtime for name, predictor in predictors.items()}
    load_after = os.getloadavg()
    print(f"model {args.model} at {size} px, {args.threads} threads; runtimes that ran: {ran}")
    print(f"load average (1, 5, 15 min) before {load_before}, after {load_after}\n")
    print("| batch | " + " | ".join(f"{name} inputs/s" for name in RUNTIMES) + " | "
          + " | ".join(f"time {a}/{b}" for a, b in RATIOS) + " |")
    print("|---:|" + "---:|" * (len(RUNTIMES) + len(RATIOS)))
    for batch_size, row in results.items():
        print(f"| {batch_size} | " + " | ".join(f"{row['median'][name]:.1f}" for name in RUNTIMES) + " | "
              + " | ".join(f"{row['time_ratio_median'][f'{a}/{b}']:.2f}" for a, b in RATIOS) + " |")
    if args.json:
        with open(args.json, "w") as handle:
            json.dump({"model": args.model, "image_size": size, "threads": args.threads, "ran": ran,
                       "load_before": load_before, "load_after": load_after, "results": results}, handle, indent=2)


if __name__ == "__main__":
    main()
