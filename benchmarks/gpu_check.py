"""GPU check: the default image recipe end to end on a GPU (miml-scene and a synthetic folder), images/s per phase,
peak GPU memory, and GPU probabilities against CPU ones. Run through benchmarks/gpu_check.sh.

Run: python benchmarks/gpu_check.py [--synthetic 10000] [--out benchmarks/out/gpu] [--skip-scene]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

from tagnet.config.settings import TrainConfig
from tagnet.data.images import build_image_cache, find_images, normalize_batch
from tagnet.data.labels import read_labels, write_labels
from tagnet.data.split import split_table
from tagnet.data.synthetic import write_synthetic_dataset
from tagnet.evaluation.evaluate import evaluate
from tagnet.inference.predictor import Predictor
from tagnet.inference.runtime import DEVICE_ENV, fastest_forward
from tagnet.inference.streaming import stream_predictions
from tagnet.modalities.image import CachedImages, backbone_members, extract_features
from tagnet.training.trainer import train

SCENE = Path(__file__).resolve().parents[2] / "shared" / "data" / "miml-scene"
TOLERANCE = 1e-3  # max |GPU - CPU| probability on the checked images
CHECKED = 64


def timed(name: str, count: int, work) -> tuple[object, dict]:
    """Run work(), timing it with the GPU synchronised and its peak GPU memory measured from a reset."""
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    started = time.perf_counter()
    result = work()
    torch.cuda.synchronize()
    seconds = time.perf_counter() - started
    line = {"phase": name, "inputs": count, "seconds": round(seconds, 2),
            "images_per_s": round(count / seconds, 1) if seconds else None,
            "peak_gpu_mib": round(torch.cuda.max_memory_allocated() / 2**20, 1)}
    print(json.dumps(line), flush=True)
    return result, line


def on_device(device: str, work):
    """work() with TAGNET_DEVICE set to `device` (where extract_features and the Predictor run by default)."""
    before = os.environ.get(DEVICE_ENV)
    os.environ[DEVICE_ENV] = device
    try:
        return work()
    finally:
        os.environ.pop(DEVICE_ENV) if before is None else os.environ.__setitem__(DEVICE_ENV, before)


def check_parity(run: Path, paths: list[Path], cache_dir: Path) -> dict:
    """Probabilities of the first CHECKED images on the GPU against the CPU (PyTorch), and the frozen features likewise
    (GPU in the precision tagnet chose against ONNX Runtime or PyTorch on the CPU); exits 1 when either differs by more
    than TOLERANCE."""
    sample = [str(p) for p in paths[:CHECKED]]
    on_gpu = Predictor(run, runtime="torch", device="cuda").predict_proba(sample)
    on_cpu = Predictor(run, runtime="torch", device="cpu").predict_proba(sample)
    model = Predictor(run, runtime="torch", device="cpu").model
    pre = model.preprocess
    cache = build_image_cache(paths[:CHECKED], size=pre.image_size, cache_dir=cache_dir)
    images = CachedImages(cache, np.arange(len(cache.paths)))
    batch = normalize_batch(torch.from_numpy(np.array(cache.array[:8])).permute(0, 3, 1, 2), pre.mean, pre.std)
    features = {}
    for name, backbone in backbone_members(model):
        cpu = on_device("cpu", lambda: extract_features(backbone, pre, images))  # noqa: B023
        gpu = on_device("cuda", lambda: extract_features(backbone, pre, images))  # noqa: B023
        features[name] = {"gap": float((gpu - cpu).abs().max()) / max(1.0, float(cpu.abs().max())),
                          "gpu_runtime": fastest_forward(backbone, batch, "cuda")[0],
                          "cpu_runtime": fastest_forward(backbone, batch, "cpu")[0]}
    gap = float(np.abs(on_gpu - on_cpu).max())
    result = {"check": "gpu_vs_cpu", "images": len(sample), "max_probability_gap": gap, "features": features,
              "ok": gap <= TOLERANCE and all(f["gap"] <= TOLERANCE for f in features.values())}
    print(json.dumps(result), flush=True)
    if not result["ok"]:
        print(f"gpu_check: FAILED: GPU outputs differ from CPU ones by more than {TOLERANCE:g}", file=sys.stderr)
        sys.exit(1)
    return result


def check_set(name: str, labels: Path, images_dir: Path, out: Path) -> list[dict]:
    """The default recipe on one labelled image folder: decode, frozen features, train (end to end, fresh caches),
    evaluate and predict on the GPU, each timed; then the GPU/CPU parity check. Returns the phase lines."""
    print(f"== {name}: {labels}", flush=True)
    parts = split_table(read_labels(labels), val=0.2, seed=0)
    for part, table in parts.items():
        write_labels(table, out / f"{part}.csv")
    paths = find_images([images_dir])
    config = TrainConfig(cache_dir=str(out / "cache"))
    run, line = timed("train (default recipe, end to end)", len(parts["train"]),
                      lambda: train(out / "train.csv", images_dir=images_dir, val_labels=out / "val.csv",
                                    out_dir=out / "run", config=config, progress=True).run_dir)
    lines = [line]
    model = Predictor(run, runtime="torch", device="cpu").model
    cache, line = timed("decode (image cache)", len(paths),
                        lambda: build_image_cache(paths, size=model.preprocess.image_size, cache_dir=out / "decode"))
    lines.append(line)
    images = CachedImages(cache, np.arange(len(cache.paths)))
    for member, backbone in backbone_members(model):
        lines.append(timed(f"frozen features ({member})", len(paths),
                           lambda: extract_features(backbone, model.preprocess, images))[1])  # noqa: B023
    lines.append(timed("evaluate", len(parts["val"]), lambda: evaluate(run, out / "val.csv", images_dir=images_dir))[1])
    predictor = Predictor(run)  # the default device: the GPU
    lines.append(timed("predict (streamed CSV)", len(paths),
                       lambda: stream_predictions(predictor, [images_dir], out / "predictions.csv"))[1])
    check_parity(run, paths, out / "parity_cache")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", default="benchmarks/out/gpu")
    parser.add_argument("--synthetic", type=int, default=10_000, help="images of the synthetic folder (0: none)")
    parser.add_argument("--skip-scene", action="store_true")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        sys.exit("gpu_check: no CUDA device (torch.cuda.is_available() is False): run it on a machine with a GPU")
    print(json.dumps({"gpu": torch.cuda.get_device_name(0), "torch": torch.__version__,
                      "bf16": torch.cuda.is_bf16_supported()}), flush=True)
    out = Path(args.out)
    sets = [] if args.skip_scene else [("miml-scene", SCENE / "labels.csv", SCENE / "images", out / "scene")]
    if args.synthetic:
        started = time.perf_counter()
        data = write_synthetic_dataset(out / "synthetic" / "data", n=args.synthetic, size=64, seed=0)
        print(f"synthetic folder of {args.synthetic} images written in {time.perf_counter() - started:.1f} s")
        sets.append(("synthetic", data.labels_csv, data.images_dir, out / "synthetic"))
    summary = {}
    for name, labels, images_dir, folder in sets:
        folder.mkdir(parents=True, exist_ok=True)
        summary[name] = check_set(name, labels, images_dir, folder)
    (out / "gpu_check.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(f"gpu_check: OK ({', '.join(summary)}); phase lines in {out / 'gpu_check.json'}")


if __name__ == "__main__":
    main()
