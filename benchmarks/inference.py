"""Inference speed of one model: PyTorch eager vs ONNX Runtime vs int8-quantised ONNX, images/s at batch 1 and 32.

Run: python benchmarks/inference.py [--model efficientnet_lite0+efficientnet_lite2] [--threads 2] [--seconds 10] [--rounds 5] [--json FILE]
The model (default: the image default) gets ImageNet weights (EfficientNet-Lite0/1/2 and their fusions; others random) and a 5-label head; only the forward pass on
already-normalised float images is timed (decoding and resizing are the same for every runtime).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time

import numpy as np
import onnxruntime
import torch

from tagnet.inference.artifact import save_artifact
from tagnet.inference.export import export_onnx
from tagnet.config.settings import MODALITY_DEFAULTS
from tagnet.models import create_model
from tagnet.models.fused import member_names
from tagnet.models.pretrained import LITE_MODELS
from tagnet.inference.predictor import Predictor
from tagnet.decisions.thresholds import Thresholds

LABELS = ["a", "b", "c", "d", "e"]


def time_calls(run, batch: np.ndarray, *, seconds: float) -> list[float]:
    """Seconds per call of run(batch), calling it for about `seconds` (at least once)."""
    times: list[float] = []
    started = time.perf_counter()
    while time.perf_counter() - started < seconds or not times:
        tick = time.perf_counter()
        run(batch)
        times.append(time.perf_counter() - tick)
    return times


def measure(runtimes: dict, batch: np.ndarray, *, seconds: float, rounds: int) -> dict[str, dict]:
    """Interleave the runtimes in `rounds` rounds (so that load from other processes hits them alike);
    per runtime: images/s of its best round and of its median round, median ms per call."""
    for run in runtimes.values():  # warm-up
        run(batch)
        run(batch)
    per_round: dict[str, list[list[float]]] = {name: [] for name in runtimes}
    for _ in range(rounds):
        for name, run in runtimes.items():
            per_round[name].append(time_calls(run, batch, seconds=seconds / rounds))
    out = {}
    for name, rounds_times in per_round.items():
        speeds = [len(batch) * len(t) / sum(t) for t in rounds_times]
        out[name] = {"images_per_s": max(speeds), "images_per_s_median_round": float(np.median(speeds)),
                     "ms_per_call": 1000 * float(np.median(np.concatenate(rounds_times))),
                     "calls": sum(len(t) for t in rounds_times)}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=MODALITY_DEFAULTS["image"]["backbone"])
    parser.add_argument("--image-size", type=int, default=None, help="default the model's own")
    parser.add_argument("--threads", type=int, default=2, help="torch.set_num_threads for eager PyTorch")
    parser.add_argument("--seconds", type=float, default=10.0, help="timed seconds per runtime and batch size")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds the seconds are split into")
    parser.add_argument("--batch-sizes", default="1,32")
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    pretrained = all(name in LITE_MODELS for name in member_names(args.model))
    model = create_model(args.model, num_labels=len(LABELS), pretrained=pretrained, image_size=args.image_size).eval()
    args.image_size = model.preprocess.image_size
    with tempfile.TemporaryDirectory(prefix="tagnet-bench-") as folder:
        save_artifact(folder, model=model, modality="image", label_names=LABELS, state=model.preprocess.to_dict(),
                      thresholds=Thresholds("per-label", [0.5] * len(LABELS)), config={}, metrics={})
        report = export_onnx(folder, quantize=True)
        # The sessions exactly as Predictor(runtime="onnx") opens them (ONNX Runtime's default thread count).
        sessions = {"onnx": Predictor(folder, runtime="onnx").session,
                    "onnx-int8": Predictor(folder, runtime="onnx", onnx_file=report.int8_path).session}

    def eager(memory_format):
        def run(batch: np.ndarray) -> np.ndarray:
            with torch.inference_mode():
                return torch.sigmoid(model(torch.from_numpy(batch).contiguous(memory_format=memory_format))).numpy()
        return run

    runtimes = {
        "torch-eager (channels_last, as Predictor)": eager(torch.channels_last),
        "torch-eager (NCHW)": eager(torch.contiguous_format),
        **{f"onnxruntime {name}": (lambda s: lambda batch: s.run(["probabilities"], {"images": batch})[0])(session)
           for name, session in sessions.items()},
    }
    rng = np.random.default_rng(0)
    results = []
    for batch_size in (int(b) for b in args.batch_sizes.split(",")):
        batch = rng.normal(size=(batch_size, 3, args.image_size, args.image_size)).astype(np.float32)
        for name, row in measure(runtimes, batch, seconds=args.seconds, rounds=args.rounds).items():
            results.append({"runtime": name, "batch": batch_size, **row})
            print(f"{name:45s} batch {batch_size:3d}: {row['images_per_s']:8.1f} images/s best round, "
                  f"{row['images_per_s_median_round']:8.1f} median round ({row['ms_per_call']:.1f} ms per call)",
                  flush=True)
    summary = {
        "model": args.model, "image_size": args.image_size, "torch_threads": args.threads,
        "onnxruntime_threads": "default (physical cores)", "OMP_WAIT_POLICY": os.environ.get("OMP_WAIT_POLICY", "unset"),
        "torch": torch.__version__, "onnxruntime": onnxruntime.__version__,
        "cpu": platform.processor() or platform.machine(),
        "onnx_mb": report.size_bytes / 1e6, "int8_mb": report.int8_size_bytes / 1e6,
        "int8_max_abs_diff": report.int8_max_abs_diff, "results": results,
    }
    baseline = {r["batch"]: r["images_per_s"] for r in results if r["runtime"].startswith("torch-eager (channels_last")}
    for r in results:
        r["speedup_vs_eager"] = r["images_per_s"] / baseline[r["batch"]]
    print("\n| runtime | batch | images/s (best round) | images/s (median round) | ms per call | x eager |\n"
          "|---|---:|---:|---:|---:|---:|")
    for r in results:
        print(f"| {r['runtime']} | {r['batch']} | {r['images_per_s']:.1f} | {r['images_per_s_median_round']:.1f} | "
              f"{r['ms_per_call']:.1f} | {r['speedup_vs_eager']:.2f} |")
    print(f"\nONNX {summary['onnx_mb']:.1f} MB, int8 {summary['int8_mb']:.1f} MB "
          f"(max |diff| of int8 probabilities from PyTorch {report.int8_max_abs_diff:.3f})")
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(summary, handle, indent=2)


if __name__ == "__main__":
    main()
