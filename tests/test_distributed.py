"""Distributed data-parallel training (2 CPU processes, gloo) and resuming after SIGKILL, through the CLI."""

import csv
import io
import json
import os
import runpy
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from tagnet.inference.artifact import load_artifact
from tagnet.config.settings import TrainConfig
from tagnet.inference.predictor import Predictor
from tagnet.inference.streaming import stream_predictions
from tagnet.training.trainer import train

TAGNET = [sys.executable, "-m", "tagnet.cli"]


def _metrics(run: Path) -> dict:
    return json.loads((run / "metrics.json").read_text())["validation"]


def test_two_process_ddp_matches_single_process(synthetic_data, tmp_path):
    common = ["train", str(synthetic_data.labels_csv), "--images", str(synthetic_data.images_dir),
              "--image-size", "48", "--epochs", "4", "--set", "accelerator=cpu", "--seed", "3"]
    ddp_run = tmp_path / "ddp"
    # 2 ranks x 8 per batch = the single process's 16 per batch
    proc = subprocess.run(TAGNET + common + ["--devices", "2", "--strategy", "ddp", "--batch-size", "8",
                                             "--out", str(ddp_run)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.count("run written to") == 1  # only rank 0 reports
    assert len(list(ddp_run.rglob("tagnet.json"))) == 1
    single = train(synthetic_data.labels_csv, images_dir=synthetic_data.images_dir, out_dir=tmp_path / "single",
                   config=TrainConfig(image_size=48, epochs=4, batch_size=16, seed=3, accelerator="cpu"), progress=False)
    ddp = _metrics(ddp_run)
    # validation is gathered from both ranks: every validation item counted exactly once
    assert ddp["n_items"] == single.report.n_items
    assert ddp["mAP"] == pytest.approx(single.report.mAP, abs=0.05)
    assert load_artifact(ddp_run).label_names == synthetic_data.table.label_names


def test_sigkill_mid_training_then_resume(synthetic_data, tmp_path):
    args = ["train", str(synthetic_data.labels_csv), "--images", str(synthetic_data.images_dir), "--backbone",
            "seed_cnn", "--no-pretrained", "--image-size", "32", "--epochs", "6", "--batch-size", "8",
            "--set", "patience=100", "--seed", "1"]
    run = tmp_path / "killed"
    proc = subprocess.Popen(TAGNET + args + ["--out", str(run)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    checkpoint = run / "checkpoints" / "train" / "last.ckpt"
    deadline = time.time() + 120
    while not checkpoint.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    time.sleep(0.3)  # into the next epoch
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert checkpoint.exists() and not (run / "artifact").exists()
    assert not list(run.rglob("*.tmp")) or all(p.name.startswith(".") for p in run.rglob("*.tmp"))

    resumed = subprocess.run(TAGNET + ["train", "--resume", str(run)], capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    epochs = [line.split(",")[1] for line in (run / "metrics.csv").read_text().splitlines()[1:]]
    assert epochs[-1] == "6"
    Predictor(run).predict_paths(sorted(synthetic_data.images_dir.iterdir())[:3])  # the artifact loads and predicts

    whole = tmp_path / "whole"
    subprocess.run(TAGNET + args + ["--out", str(whole)], capture_output=True, text=True, timeout=300, check=True)
    assert _metrics(run)["mAP"] == pytest.approx(_metrics(whole)["mAP"], abs=0.05)


# A script, as Lightning's DDP launcher starts it once per process: frozen features of cached images spread over
# --devices CPU processes; rank 0 saves what every rank got.
FEATURES_SCRIPT = """
import sys
from pathlib import Path

import numpy as np
import torch

from tagnet.data.images import build_image_cache
from tagnet.inference.runtime import Spread
from tagnet.modalities.image import CachedImages, extract_features
from tagnet.models import create_model

images, cache, out, devices = Path(sys.argv[1]), sys.argv[2], Path(sys.argv[3]), sys.argv[4]
torch.manual_seed(0)
model = create_model("seed_cnn", num_labels=5, pretrained=False, image_size=32)
built = build_image_cache(sorted(images.iterdir())[:45], size=32, cache_dir=cache)
kept = CachedImages(built, np.arange(45)[::-1].copy())  # rows in another order than the cache's
spread = Spread(devices=devices, strategy="ddp", accelerator="cpu") if devices != "0" else None
features = extract_features(model.backbone, model.preprocess, kept, batch_size=4, flip=True, spread=spread)
rank = int(__import__("os").environ.get("LOCAL_RANK", 0))
np.save(out / f"rank{rank}.npy", features.numpy())
"""


def test_frozen_features_over_two_processes_equal_one_process(synthetic_data, tmp_path, monkeypatch):
    script = tmp_path / "features.py"
    script.write_text(FEATURES_SCRIPT)
    args = [str(script), str(synthetic_data.images_dir), str(tmp_path / "cache")]
    (tmp_path / "one").mkdir(), (tmp_path / "two").mkdir()
    monkeypatch.setattr(sys, "argv", args + [str(tmp_path / "one"), "0"])
    runpy.run_path(str(script))  # one process: this one
    proc = subprocess.run([sys.executable] + args + [str(tmp_path / "two"), "2"], capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    one = np.load(tmp_path / "one" / "rank0.npy")
    assert one.shape[0] == 45
    # 45 inputs over 2 ranks in batches of 4: the sampler pads one input; every rank got all 45, in input order
    for rank in (0, 1):
        np.testing.assert_allclose(np.load(tmp_path / "two" / f"rank{rank}.npy"), one, rtol=1e-5, atol=1e-6)


def test_predict_over_two_processes_resumes_into_the_same_file(tiny_run, synthetic_data, tmp_path):
    images = str(synthetic_data.images_dir)
    single = stream_predictions(Predictor(tiny_run.run_dir), [images], tmp_path / "single.csv")  # as predict does
    expected = single.path.read_bytes()
    ddp = tmp_path / "ddp.csv"
    ddp.write_bytes(expected[:expected.index(b"\n", 3000) - 7])  # killed mid-row
    kept = ddp.read_bytes().count(b"\n") - 1
    proc = subprocess.run(TAGNET + ["predict", str(tiny_run.run_dir), images, "--output", str(ddp), "--resume",
                                    "--devices", "2", "--strategy", "ddp", "--batch-size", "7"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    said = " ".join(proc.stdout.split())
    assert said.count("predictions written to") == 1  # only rank 0 writes and reports
    assert f"(kept {kept} already there)" in said
    written = ddp.read_bytes()
    assert written.startswith(expected[:expected.index(b"\n", 3000) - 7].rsplit(b"\n", 1)[0])  # kept rows untouched
    # the rest in input order, each input once, as one process writes it; CPU convolutions round differently at
    # another batch shape, so a probability may differ in its last printed digit
    got, want = (list(csv.reader(io.StringIO(text.decode()))) for text in (written, expected))
    assert [row[:2] for row in got] == [row[:2] for row in want] and len(got) == 121
    np.testing.assert_allclose(np.array([row[2:] for row in got[1:]], float),
                               np.array([row[2:] for row in want[1:]], float), atol=2e-6)


def test_a_distributed_prediction_needs_a_streamed_output(tiny_run, synthetic_data, tmp_path):
    proc = subprocess.run(TAGNET + ["predict", str(tiny_run.run_dir), str(synthetic_data.images_dir), "--output",
                                    str(tmp_path / "all.json"), "--strategy", "ddp"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    assert "--strategy ddp shares the inputs among processes" in proc.stdout + proc.stderr


def test_a_process_group_left_up_is_destroyed_at_exit(tmp_path):
    script = tmp_path / "group.py"
    script.write_text(f"""
import atexit
import torch.distributed as dist
from tagnet.engine import process

atexit.register(lambda: print("initialized at exit:", dist.is_initialized()))  # runs after tagnet's (LIFO)
dist.init_process_group("gloo", init_method="file://{tmp_path / 'store'}", rank=0, world_size=1)
process.close_process_group_at_exit()
process.close_process_group_at_exit()  # asking twice is harmless
""")
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip() == "initialized at exit: False"
