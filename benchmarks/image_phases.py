"""Image throughput per phase, side by side in one run: plain eager decode + one forward of N miml-scene photos against
the frozen-feature phase of a cold `tagnet train` (decode into the cache, then features of each photo and its mirror
image): with frozen features on eager PyTorch (--eager), with an older tagnet (--before-src, e.g. main's src exported
by `git archive main src | tar -x -C /tmp/before`), and with this tree, once with an empty user cache folder (the
ONNX graph exported, as on a machine's first run with these weights, on the runtime auto chooses) and then with the
graph it kept on each runtime of --runtimes, forced through TAGNET_RUNTIME.

Run: python benchmarks/image_phases.py [--images 400] [--backbone efficientnet_lite0] [--rounds 1] [--eager]
     [--runtimes onnxruntime,openvino] [--before-src /tmp/before/src]
Each training runs in a child process with its own cold feature and image caches, so no run warms another's features;
the decode into the image cache is timed apart (it runs before the phase). The table gives each phase's best time over
the rounds, its ratio to the plain pass of the same run, and the runtime its phase line names.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SCENE = Path(__file__).resolve().parents[2] / "shared" / "data" / "miml-scene"

TRAIN = """
import json, sys, time
import tagnet.modalities.image as image
decode, build = [0.0], image.build_image_cache
def timed_build(*args, **kwargs):
    started = time.perf_counter()
    try:
        return build(*args, **kwargs)
    finally:
        decode[0] += time.perf_counter() - started
image.build_image_cache = timed_build
from tagnet.config.settings import TrainConfig
from tagnet.training.trainer import train
config = TrainConfig(backbone=sys.argv[1] or None, epochs=1)
started = time.perf_counter()
train(sys.argv[2], images_dir=sys.argv[3], out_dir=sys.argv[4], config=config, progress=False)
print(json.dumps({"wall": time.perf_counter() - started, "decode": decode[0]}))
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


def run(code: str, *args: str, env: dict[str, str] | None = None) -> tuple[dict, str]:
    """A child process's last JSON line and its stderr (and stdout), with `env` added to the environment."""
    done = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, check=True,
                          env={**os.environ, **(env or {})})
    return json.loads(done.stdout.strip().splitlines()[-1]), done.stderr + done.stdout


def frozen_phase(log: str) -> tuple[float, str]:
    """Seconds of the `frozen ... outputs of N inputs ready in S s` line, and the runtime it names ("?" if none)."""
    flat = " ".join(log.split())  # rich wraps long lines
    found = re.search(r"frozen \S+ outputs of \d+ inputs ready in ([\d.]+) s( \(on ([\w+-]+))?", flat)
    return float(found.group(1)), found.group(3) or "?"


def trainings(args) -> list[tuple[str, str, dict[str, str]]]:
    """(name, src folder, environment) of each training a round runs, in order."""
    here = str(Path(__file__).resolve().parents[1] / "src")
    forced = [name.strip() for name in args.runtimes.split(",") if name.strip()]
    return ([("phase, eager PyTorch", here, {"TAGNET_RUNTIME": "torch"})] if args.eager else []) + \
        ([("phase, before", args.before_src, {})] if args.before_src else []) + \
        [("phase, auto, graph exported", here, {"TAGNET_RUNTIME": "auto"})] + \
        [(f"phase, {name}, graph kept", here, {"TAGNET_RUNTIME": name}) for name in forced]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=400)
    parser.add_argument("--backbone", default="efficientnet_lite0", help="'' for the image default")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--eager", action="store_true", help="also the phase with frozen features on eager PyTorch")
    parser.add_argument("--runtimes", default="onnxruntime,openvino",
                        help="the runtimes the phase runs on with the kept graph (TAGNET_RUNTIME), comma-separated")
    parser.add_argument("--data", type=Path, default=SCENE, help="the miml-scene folder (labels.csv, images/)")
    parser.add_argument("--before-src", help="the src folder of an older tagnet, to run the phase with it too")
    args = parser.parse_args()
    scene = args.data
    lines = (scene / "labels.csv").read_text().splitlines()
    rows = lines[1:args.images + 1]
    plain_name = "plain eager decode + one forward"
    results: dict[str, list[float]] = {plain_name: []}
    decodes: dict[str, list[float]] = {}
    named: dict[str, set[str]] = {}
    print(f"load average at start {os.getloadavg()}", flush=True)
    for _ in range(args.rounds):
        with tempfile.TemporaryDirectory() as tmp:
            labels = Path(tmp) / "labels.csv"
            labels.write_text("\n".join([lines[0], *rows]) + "\n")
            files = [str(scene / "images" / row.split(",")[0]) for row in rows]
            results[plain_name].append(run(PLAIN, json.dumps(files), args.backbone or "efficientnet_lite0")[0]["wall"])
            user_cache = Path(tmp) / "user-cache"  # the ONNX graphs: empty for the first run of this tree in a round
            for number, (name, src, env) in enumerate(trainings(args)):
                out = run(TRAIN, args.backbone, str(labels), str(scene / "images"), str(Path(tmp) / str(number)),
                          env={"PYTHONPATH": src, "TAGNET_CACHE_DIR": str(user_cache), **env})
                seconds, runtime = frozen_phase(out[1])
                results.setdefault(name, []).append(seconds)
                decodes.setdefault(name, []).append(out[0]["decode"])
                named.setdefault(name, set()).add(runtime)
    plain = min(results[plain_name])
    started = time.strftime("%Y-%m-%d %H:%M")
    print(f"{args.images} photos, backbone {args.backbone or 'default'}, best of {args.rounds} round(s), {started}, "
          f"load average at end {os.getloadavg()}")
    print(f"  {'':36s} {'best':>8s}  {'x plain':>7s}  {'ran on':12s} all rounds")
    for name, values in results.items():
        decode = f"  decode into the cache before it {min(decodes[name]):.1f} s" if name in decodes else ""
        print(f"  {name:36s} {min(values):6.1f} s  {min(values) / plain:6.2f}x  {'/'.join(sorted(named.get(name, {'-'}))):12s}"
              f" {', '.join(f'{v:.1f}' for v in values)}{decode}")


if __name__ == "__main__":
    main()
