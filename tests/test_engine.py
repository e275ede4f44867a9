"""engine/: the Lightning adapter: seeding, ranks, precision, one training phase with checkpoints; nothing else
imports Lightning, and inference never imports the engine."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from tagnet.config.settings import TrainConfig
from tagnet.engine import default_precision, is_main_process, seed_everything
from tagnet.engine.fit import run_phase
from tagnet.engine.module import MultiLabelModule
from tagnet.engine.optim import adamw
from tagnet.training.losses import make_loss
from tagnet.models.base import make_head

SRC = Path(__file__).resolve().parents[1] / "src" / "tagnet"


def test_seeding_repeats_every_random_source():
    seed_everything(7)
    first = (torch.rand(3), np.random.rand(3))
    seed_everything(7)
    second = (torch.rand(3), np.random.rand(3))
    assert torch.equal(first[0], second[0]) and np.array_equal(first[1], second[1])


def test_adamw_is_fused_on_the_cpu_and_updates_as_the_per_tensor_loop_does():
    torch.manual_seed(0)
    ours, reference = torch.nn.Linear(5, 3), torch.nn.Linear(5, 3)
    reference.load_state_dict(ours.state_dict())
    fused = adamw([{"params": list(ours.parameters()), "lr": 1e-2}], weight_decay=0.1)
    loop = torch.optim.AdamW(reference.parameters(), lr=1e-2, weight_decay=0.1, foreach=False)
    assert fused.defaults["fused"] is True and loop.defaults["fused"] is None
    inputs = torch.randn(8, 5)
    for _ in range(3):
        for network, optimizer in ((ours, fused), (reference, loop)):
            optimizer.zero_grad()
            network(inputs).pow(2).sum().backward()
            optimizer.step()
    for mine, theirs in zip(ours.parameters(), reference.parameters()):
        torch.testing.assert_close(mine, theirs, rtol=1e-6, atol=1e-7)
    assert not torch.equal(ours.weight, torch.nn.Linear(5, 3).weight)
    elsewhere = torch.nn.Parameter(torch.zeros(2, device="meta"))  # no fused kernel: the default implementation
    assert adamw([{"params": [elsewhere], "lr": 1.0}], weight_decay=0.0).defaults["fused"] is None


def test_main_process_follows_the_distributed_environment(monkeypatch):
    for name in ("RANK", "SLURM_PROCID", "LOCAL_RANK", "NODE_RANK"):
        monkeypatch.delenv(name, raising=False)
    assert is_main_process()
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert not is_main_process()
    monkeypatch.setenv("RANK", "0")  # the global rank wins
    assert is_main_process()


def test_precision_explicit_or_by_hardware(monkeypatch):
    assert default_precision(TrainConfig(precision="32-true")) == "32-true"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)
    assert default_precision(TrainConfig()) == "32-true"
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: True)
    assert default_precision(TrainConfig()) == "bf16-mixed"


def _loaders(n: int = 200):
    rng = np.random.default_rng(0)
    x = torch.from_numpy(rng.normal(size=(n, 4)).astype(np.float32))
    y = torch.stack([x[:, 0] > 0, x[:, 1] > 0], 1).float()
    known = torch.ones_like(y, dtype=torch.bool)
    data = TensorDataset(x, y, known, torch.arange(n))
    return DataLoader(data, batch_size=32, shuffle=True), DataLoader(data, batch_size=256)


def test_a_phase_trains_keeps_the_best_epoch_and_resumes_without_training_again(tmp_path, monkeypatch):
    from tagnet.engine.steps import validation_score

    config = TrainConfig(epochs=6, patience=6, lr=5e-2)
    seed_everything(0)
    head = make_head(4, 2, dropout=0.0, head_hidden=0)
    module = MultiLabelModule(head, make_loss(config, label_frequency=np.array([0.5, 0.5])), lr=config.lr,
                              weight_decay=0.0, schedule="onecycle", normalize=None, score=validation_score)
    result = run_phase(module, *_loaders(), config=config, epochs=6, phase="head", run_dir=tmp_path, progress=False,
                       precision="32-true", head_only=True)
    rows = list(csv.DictReader((tmp_path / "metrics.csv").open()))
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3, 4, 5, 6] and {r["phase"] for r in rows} == {"head"}
    assert result.best_score == max(float(r["val_mAP"]) for r in rows) > 0.9
    assert result.best_epoch == 1 + [float(r["val_mAP"]) for r in rows].index(result.best_score)
    done = json.loads((tmp_path / "checkpoints" / "head" / "done.json").read_text())
    assert done["best_score"] == pytest.approx(result.best_score)
    best_weights = {k: v.clone() for k, v in head.state_dict().items()}

    import tagnet.engine.fit as fit

    monkeypatch.setattr(fit.L, "Trainer", lambda *a, **k: pytest.fail("a finished phase was trained again"))
    fresh = make_head(4, 2, dropout=0.0, head_hidden=0)
    again = run_phase(MultiLabelModule(fresh, module.loss, lr=config.lr, weight_decay=0.0, schedule="onecycle",
                                       normalize=None, score=validation_score),
                      *_loaders(), config=config, epochs=6, phase="head", run_dir=tmp_path, progress=False, resume=True)
    assert again.best_score == pytest.approx(result.best_score) and again.best_epoch == result.best_epoch
    for key, value in fresh.state_dict().items():
        torch.testing.assert_close(value, best_weights[key])


def test_only_the_engine_imports_lightning():
    outside = [str(path.relative_to(SRC)) for path in SRC.rglob("*.py") if "engine" not in path.parts
               and any(line.lstrip().startswith(("import lightning", "from lightning"))
                       for line in path.read_text().splitlines())]
    assert outside == []


def test_inference_never_imports_the_training_engine():
    code = ("import sys, tagnet.inference.predictor, tagnet.serve, tagnet.inference.export, tagnet.evaluation.evaluate, tagnet.inference.explain; "
            "print(sorted(m for m in sys.modules if m.startswith(('lightning', 'tagnet.engine', 'tagnet.training.trainer'))))")
    found = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert found == "[]"


def test_the_cli_starts_without_scikit_learn_lightning_or_onnx():
    code = ("import sys, tagnet.cli; "
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'sklearn', 'lightning', 'onnxruntime', 'openvino'}))")
    found = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert found == "[]"  # each costs a second or more of every command's start; imported where used


def test_a_table_trains_without_lightning_timm_or_torchvision(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(120, 3))
    rows = [",".join(f"{v:.4f}" for v in r) + f",{int(r[0] > 0)},{int(r[1] > 0)}" for r in x]
    table = tmp_path / "t.arff"
    table.write_text("@relation t\n" + "".join(f"@attribute x{j} numeric\n" for j in range(3))
                     + "@attribute a {0,1}\n@attribute b {0,1}\n@data\n" + "\n".join(rows) + "\n")
    code = ("import sys; from tagnet.cli import app; "
            f"app(['train', {str(table)!r}, '--label-count', '2', '--out', {str(tmp_path / 'run')!r}], "
            "standalone_mode=False); "
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'lightning', 'timm', 'torchvision'}))")
    found = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert (tmp_path / "run" / "artifact" / "model.safetensors").is_file()
    assert found.strip().splitlines()[-1] == "[]"  # a table's heads never need them; each costs seconds to import
