"""Distributed data-parallel training (2 CPU processes, gloo) and resuming after SIGKILL, through the CLI."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tagnet.inference.artifact import load_artifact
from tagnet.config.settings import TrainConfig
from tagnet.inference.predictor import Predictor
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
