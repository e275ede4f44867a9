"""Peak memory and speed as the data set grows: 2k, 20k, 100k synthetic images through `train`.

Each size runs in its own process: synthetic PNGs are generated once (not timed), then one epoch of
seed_cnn at 64 px through tagnet.train (decoded-image memmap cache, augmentation, validation).
Peak anonymous memory (RssAnon: what the process itself holds) and peak RSS (also counting the
memory-mapped cache pages, which the kernel can drop at any time) are sampled every 20 ms.

Run: python benchmarks/memory_scale.py [--sizes 2000 20000 100000] [--out benchmarks/out/memory]
"""

from __future__ import annotations

import argparse
import csv
import json
import subprocess
import sys
import threading
import time
from pathlib import Path


def _status_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    return 0


def one_size(n: int, out: Path) -> dict:
    """Generate (once) and train one epoch on n images; return timings and peak memory."""
    from tagnet.config.settings import TrainConfig
    from tagnet.data.synthetic import write_synthetic_dataset
    from tagnet.training.trainer import train

    data_dir = out / f"data-{n}"
    if not (data_dir / "labels.csv").exists():
        write_synthetic_dataset(data_dir, n=n, size=64, seed=0)
    peaks = {"RssAnon": 0, "VmRSS": 0}
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            for field in peaks:
                peaks[field] = max(peaks[field], _status_kb(field))
            time.sleep(0.02)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    run = out / f"run-{n}"
    config = TrainConfig(backbone="seed_cnn", pretrained=False, image_size=64, epochs=1, batch_size=64)
    started = time.perf_counter()
    train(data_dir / "labels.csv", images_dir=data_dir / "images", out_dir=run, config=config, progress=False)
    seconds = time.perf_counter() - started
    done.set()
    sampler.join()
    epoch = list(csv.DictReader((run / "metrics.csv").open()))[-1]
    return {"images": n, "total_seconds": round(seconds, 1), "train_images_per_s": float(epoch["images_per_s"]),
            "epoch_seconds": float(epoch["seconds"]), "peak_rss_anon_mb": round(peaks["RssAnon"] / 1024),
            "peak_rss_mb": round(peaks["VmRSS"] / 1024)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sizes", type=int, nargs="+", default=[2000, 20000, 100000])
    parser.add_argument("--out", type=Path, default=Path("benchmarks/out/memory"))
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    if args.one:
        print(json.dumps(one_size(args.one, args.out)))
        return
    print("| images | total s (decode + 1 epoch + validation) | train images/s | peak RssAnon MB | peak RSS MB (incl. memmap pages) |")
    print("|---|---|---|---|---|")
    for n in args.sizes:
        proc = subprocess.run([sys.executable, __file__, "--one", str(n), "--out", str(args.out)],
                              capture_output=True, text=True, check=True)
        r = json.loads(proc.stdout.strip().splitlines()[-1])
        print(f"| {r['images']} | {r['total_seconds']} | {r['train_images_per_s']} | {r['peak_rss_anon_mb']} | {r['peak_rss_mb']} |",
              flush=True)


if __name__ == "__main__":
    main()
