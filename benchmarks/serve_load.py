"""Load test of `tagnet serve` on loopback: N concurrent clients posting one image each for S seconds.

Run: python benchmarks/serve_load.py [--artifact DIR] [--clients 32] [--seconds 30] [--runtime auto] [--json FILE]
Without --artifact: efficientnet_lite0 (ImageNet weights, 5-label head) saved and exported to ONNX in a temp folder.
Reports requests/s, latency p50/p90/p99, errors, and the server's resident memory sampled every second.
The clients run in this process, on the same machine as the server (loopback only).
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import numpy as np
from PIL import Image

SCENE_IMAGE = Path(__file__).resolve().parents[2] / "shared" / "data" / "miml-scene" / "images" / "10.jpg"


def make_artifact(folder: Path) -> Path:
    """efficientnet_lite0 with a 5-label head, saved and exported (model.onnx) into `folder`."""
    from tagnet.inference.artifact import save_artifact
    from tagnet.inference.export import export_onnx
    from tagnet.models import create_model
    from tagnet.decisions.thresholds import Thresholds

    labels = ["a", "b", "c", "d", "e"]
    save_artifact(folder, model=create_model("efficientnet_lite0", num_labels=5).eval(), label_names=labels,
                  thresholds=Thresholds("per-label", [0.5] * 5), config={}, metrics={})
    export_onnx(folder)
    return folder


def test_image() -> tuple[str, bytes]:
    """A real scene photo when ../shared/data is there, else a 384x256 noise JPEG."""
    if SCENE_IMAGE.is_file():
        return SCENE_IMAGE.name, SCENE_IMAGE.read_bytes()
    buffer = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (256, 384, 3), dtype=np.uint8)).save(buffer, "JPEG")
    return "noise.jpg", buffer.getvalue()


def rss_mb(pid: int) -> float:
    """Resident memory of process `pid` in MB (Linux /proc)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for process {pid}")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


async def client(http: httpx.AsyncClient, url: str, image: tuple[str, bytes], deadline: float,
                 latencies: list[float], errors: list[str]) -> None:
    while time.perf_counter() < deadline:
        started = time.perf_counter()
        try:
            response = await http.post(url, files={"files": (image[0], image[1], "image/jpeg")})
            if response.status_code != 200:
                errors.append(f"{response.status_code}: {response.text[:200]}")
        except httpx.HTTPError as exc:
            errors.append(f"{type(exc).__name__}: {exc}")
        latencies.append(time.perf_counter() - started)


async def load(base: str, *, clients: int, seconds: float, image: tuple[str, bytes]) -> tuple[list[float], list[str], float]:
    latencies: list[float] = []
    errors: list[str] = []
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(limits=limits, timeout=60) as http:
        started = time.perf_counter()
        await asyncio.gather(*(client(http, base + "/predict", image, started + seconds, latencies, errors)
                               for _ in range(clients)))
        return latencies, errors, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--artifact", type=Path)
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--runtime", default="auto")
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="tagnet-serve-bench-") as folder:
        result = run(args.artifact or make_artifact(Path(folder)), args)
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(result, handle, indent=2)


def run(artifact: Path, args: argparse.Namespace) -> dict:
    """Start the server on `artifact`, load it, stop it; print and return the measurements."""
    port = free_port()
    server = subprocess.Popen([sys.executable, "-c", "from tagnet.cli import main; main()", "serve", str(artifact),
                               "--port", str(port), "--runtime", args.runtime],
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(600):
            try:
                health = httpx.get(base + "/health", timeout=1).json()
                break
            except httpx.HTTPError:
                if server.poll() is not None:
                    raise SystemExit(f"server exited: {server.stderr.read()}") from None
                time.sleep(0.1)
        image = test_image()
        asyncio.run(load(base, clients=args.clients, seconds=3, image=image))  # warm-up
        memory: list[tuple[float, float]] = []
        stop = threading.Event()

        def sample() -> None:
            started = time.perf_counter()
            while not stop.wait(1.0):
                memory.append((round(time.perf_counter() - started, 1), rss_mb(server.pid)))

        sampler = threading.Thread(target=sample, daemon=True)
        rss_before = rss_mb(server.pid)
        sampler.start()
        latencies, errors, elapsed = asyncio.run(load(base, clients=args.clients, seconds=args.seconds, image=image))
        stop.set()
        sampler.join()
        metrics = httpx.get(base + "/metrics").json()
    finally:
        server.terminate()
        server.wait(timeout=30)
    ms = np.array(latencies) * 1000
    p50, p90, p99 = np.percentile(ms, [50, 90, 99])
    rss = [mb for _, mb in memory]
    result = {
        "model": health["model"], "runtime": health["runtime"], "clients": args.clients, "seconds": round(elapsed, 1),
        "requests": len(latencies), "requests_per_s": len(latencies) / elapsed, "errors": len(errors),
        "latency_ms": {"p50": p50, "p90": p90, "p99": p99, "max": float(ms.max())},
        "server_batches": metrics["batches"], "image": f"{image[0]} ({len(image[1])} bytes)",
        "rss_mb": {"after_warmup": rss_before, "first_5s_max": max(rss[:5]), "last_5s_max": max(rss[-5:]),
                   "max": max(rss), "samples": memory},
        "cpu_count": os.cpu_count(),
    }
    print(f"{result['model']} on {result['runtime']}, {args.clients} clients, {elapsed:.1f} s: "
          f"{result['requests']} requests, {result['requests_per_s']:.1f} requests/s, {len(errors)} errors; "
          f"latency p50 {p50:.0f} ms, p90 {p90:.0f} ms, p99 {p99:.0f} ms; "
          f"mean batch {metrics['batches']['mean_size']:.1f} images")
    print(f"server RSS: {rss_before:.0f} MB after warm-up, max {max(rss[:5]):.0f} MB in the first 5 s, "
          f"max {max(rss[-5:]):.0f} MB in the last 5 s, max {max(rss):.0f} MB overall")
    for message in sorted(set(errors))[:5]:
        print("error:", message)
    return result


if __name__ == "__main__":
    main()
