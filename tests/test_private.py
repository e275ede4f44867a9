"""Tests of private training (--dp-epsilon): DP-SGD's ε against Opacus' accountant, a private table run that learns and
records its privacy in the artifact and model card, per-row losses, what the budget covers, refusals and the CLI."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest
import torch
from opacus.accountants import RDPAccountant
from sklearn.metrics import average_precision_score
from torch import nn
from typer.testing import CliRunner

from tagnet.cli import app, main
from tagnet.config.settings import TrainConfig
from tagnet.engine.private import fit_private_head
from tagnet.errors import ConfigError
from tagnet.models import create_model
from tagnet.report.html import write_report
from tagnet.report.model_card import CARD_FILE
from tagnet.training.losses import BCELoss
from tagnet.training.privacy import coverage, refuse_unsupported
from tagnet.training.trainer import train

runner = CliRunner()


def _table(path, *, n=500, features=8, seed=0):
    """A CSV feature table as pandas writes one (header, index-free, 0/1 label columns last): 3 labels, each a
    threshold of its own feature plus a little noise."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, features)).round(4)
    y = (x[:, :3] + 0.3 * rng.normal(size=(n, 3)) > 0.4).astype(int)
    header = [f"f{j}" for j in range(features)] + ["red", "green", "blue"]
    rows = [",".join(map(str, [*row_x, *row_y])) for row_x, row_y in zip(x, y)]
    path.write_text(",".join(header) + "\n" + "\n".join(rows) + "\n", encoding="utf-8")
    return path


def test_reported_epsilon_is_opacus_rdp_accountants_for_the_same_steps():
    rng = np.random.default_rng(0)
    x = torch.from_numpy(rng.normal(size=(300, 6)).astype(np.float32))
    y = (rng.random((300, 2)) > 0.5).astype(np.float32)
    config = TrainConfig(dp_epochs=4, dp_batch_size=64, dp_max_grad_norm=0.5)
    head = nn.Sequential(nn.Dropout(0.1), nn.Linear(6, 2))
    spent = fit_private_head(head, x, y, np.ones_like(y, dtype=bool), config=config, epsilon=3.0, delta=1e-3, seed=0)
    assert spent.sample_rate == pytest.approx(1 / 5)  # ceil(300 / 64) batches per epoch
    assert spent.steps == 4 * 5 and spent.training_rows == 300 and spent.max_grad_norm == 0.5
    accountant = RDPAccountant()
    accountant.history = [(spent.noise_multiplier, 1 / 5, 20)]
    assert spent.epsilon == pytest.approx(accountant.get_epsilon(1e-3), rel=1e-9)
    assert 2.9 < spent.epsilon <= 3.0 + 0.01  # Opacus chose the noise for the asked ε (its tolerance 0.01)


def test_private_table_run_learns_and_records_its_privacy(tmp_path):
    labels = _table(tmp_path / "table.csv")
    result = train(labels, out_dir=tmp_path / "run", tabular=True, read_options={"label_count": 3}, progress=False,
                   dp_epsilon=8.0)
    val = json.loads((result.run_dir / "metrics.json").read_text())
    predictions = np.loadtxt(result.run_dir / "val_predictions.csv", delimiter=",", skiprows=1, usecols=range(1, 7))
    truth, probs = predictions[:, :3], predictions[:, 3:]
    assert result.report.mAP == pytest.approx(np.mean([average_precision_score(truth[:, j], probs[:, j])
                                                       for j in range(3)]), abs=1e-5)
    assert result.report.mAP > truth.mean() + 0.4  # chance: each label's prevalence, about 0.34
    meta = json.loads((result.artifact_dir / "tagnet.json").read_text())
    privacy = meta["extra"]["privacy"]
    assert privacy == result.privacy == val["privacy"]
    n_train = privacy["training_rows"]
    assert n_train == 400 and privacy["delta"] == pytest.approx(1 / 400)  # 20% held out; δ = 1/n by default
    accountant = RDPAccountant()
    accountant.history = [(privacy["noise_multiplier"], privacy["sample_rate"], privacy["steps"])]
    assert privacy["epsilon"] == pytest.approx(accountant.get_epsilon(1 / 400)) and privacy["epsilon"] <= 8.01
    assert meta["config"]["threshold_mode"] == "fixed" and meta["extra"]["recipe"]["name"] == "dp-head"
    assert any("feature scaling" in line for line in privacy["not_covered"])
    assert meta["extra"]["decision_rules"] == {}  # no rule fitted on the private validation rows
    card = (result.artifact_dir / CARD_FILE).read_text()
    assert f"ε = {privacy['epsilon']:.3g}" in card and "NOT covered" in card and "feature scaling" in card
    page = write_report(result.run_dir).read_text()
    assert f"ε = {privacy['epsilon']:.3g}, δ = 0.0025 (the head)" in page and "not covered by ε" in page


def test_item_losses_are_each_rows_own_mean_over_its_known_cells():
    logits = torch.tensor([[0.5, -1.0, 2.0], [1.5, 0.0, -0.5]])
    targets = torch.tensor([[1.0, 0.0, 1.0], [0.0, 1.0, 1.0]])
    known = torch.tensor([[True, False, True], [True, True, True]])
    bce = torch.nn.functional.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    got = BCELoss().item_losses(logits, targets, known)
    torch.testing.assert_close(got, torch.stack([(bce[0, 0] + bce[0, 2]) / 2, bce[1].mean()]))
    changed = BCELoss().item_losses(torch.stack([logits[0], logits[1] + 5]), targets, known)
    assert changed[0] == got[0]  # no row's loss depends on another row of its batch


def test_dp_settings_defaults_and_rules():
    image = TrainConfig(dp_epsilon=8).for_modality("image")
    assert image.threshold_mode == "fixed" and image.finetune is False
    assert TrainConfig(dp_epsilon=8, dp_public_val=True).for_modality("image").threshold_mode == "per-label"
    assert TrainConfig(dp_epsilon=8).for_modality("tabular").select is None  # no CV choice of the head
    for settings, words in ((dict(dp_epsilon=1, cv=5), "cv=5 with dp_epsilon=1"),
                            (dict(dp_epsilon=1, select="auto"), "select='auto' with dp_epsilon=1"),
                            (dict(dp_epsilon=1, mixup=0.2), "mixup=0.2"),
                            (dict(dp_epsilon=1, loss="weighted_bce"), "choose another loss"),
                            (dict(dp_delta=0.01), "dp_delta=0.01 without dp_epsilon")):
        with pytest.raises(ConfigError, match=words.replace("(", r"\(")):
            TrainConfig(**settings).for_modality("tabular")


def test_coverage_says_what_reads_private_data():
    private = coverage(TrainConfig(dp_epsilon=8, threshold_mode="per-label"), modality="image", validation_rows=40,
                       public_val=False)
    assert "the per-label thresholds: fitted on 40 private validation rows" in private["not_covered"]
    public = coverage(TrainConfig(dp_epsilon=8, threshold_mode="per-label", dp_public_val=True), modality="image",
                      validation_rows=40, public_val=True)
    assert public["not_covered"] == [] and "the per-label thresholds: fitted on the public --val file" in public["covered"]
    fixed = coverage(TrainConfig(dp_epsilon=8, threshold_mode="fixed"), modality="image", validation_rows=40,
                     public_val=False)
    assert "the thresholds: fixed (fitted on no data)" in fixed["no_private_data"]


def test_finetuning_with_dp_is_refused_for_batchnorm_encoders():
    model = create_model("efficientnet_lite0", num_labels=2, pretrained=False)
    config = TrainConfig(dp_epsilon=8, finetune=True, backbone="efficientnet_lite0")
    with pytest.raises(ConfigError, match=r"Opacus cannot train efficientnet_lite0 privately \(.*BatchNorm") as caught:
        refuse_unsupported(config, model, frozen=True)
    assert "\n" not in str(caught.value)
    refuse_unsupported(TrainConfig(dp_epsilon=8, backbone="efficientnet_lite0"), model, frozen=True)  # the head: fine
    with pytest.raises(ConfigError, match="trains the whole network"):
        refuse_unsupported(TrainConfig(dp_epsilon=8, backbone="seed_cnn"), model, frozen=False)


def test_cli_options_and_one_line_refusals(tmp_path, monkeypatch, capsys):
    shown = " ".join(runner.invoke(app, ["train", "--help"], terminal_width=200).output.split())
    assert "--dp-epsilon" in shown and "--dp-delta" in shown and "--dp-public-val" in shown
    labels = _table(tmp_path / "table.csv", n=40)
    for args, words in ((["--dp-epsilon", "8", "--cv", "5"], "cv=5 with dp_epsilon=8.0: cross-validation"),
                        (["--dp-delta", "0.001"], "dp_delta=0.001 without dp_epsilon"),
                        (["--dp-epsilon", "8", "--dp-public-val"], "no --val file is given"),
                        (["--dp-epsilon", "0"], "dp_epsilon is 0.0; expected greater than 0")):
        monkeypatch.setattr(sys, "argv", ["tagnet", "train", str(labels), "--tabular", "--label-count", "3", "--out",
                                          str(tmp_path / "run"), *args])
        with pytest.raises(SystemExit) as stop:
            main()
        err = capsys.readouterr().err
        assert stop.value.code == 2 and words in err and err.startswith("error: "), err
        assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert not (tmp_path / "run" / "artifact").exists()
