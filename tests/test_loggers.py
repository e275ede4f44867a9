"""Training output: Lightning loggers (CSV, TensorBoard, MLflow), one line per epoch without a terminal, the progress bar."""

from __future__ import annotations

import re

import pytest
import yaml

from typer.testing import CliRunner

from tagnet.cli import app
from tagnet.config.settings import TrainConfig
from tagnet.errors import ConfigError

runner = CliRunner()


@pytest.fixture(scope="module")
def logged_run(synthetic_data, tmp_path_factory):
    """The tiny seed_cnn run with every logger on: 3 epochs at 32 px."""
    from tagnet.training.trainer import train

    config = TrainConfig(backbone="seed_cnn", pretrained=False, image_size=32, epochs=3, batch_size=16,
                         loggers="csv,tensorboard,mlflow")
    return train(synthetic_data.labels_csv, images_dir=synthetic_data.images_dir,
                 out_dir=tmp_path_factory.mktemp("logged") / "logged", config=config, progress=False)


@pytest.mark.filterwarnings("ignore:The inplace keyword")  # tbparse on pandas 3
def test_tensorboard_gets_losses_validation_metrics_settings_and_summary(logged_run):
    from tbparse import SummaryReader

    from tagnet.training.run_folder import read_epochs

    scalars = SummaryReader(str(logged_run.run_dir / "logs" / "tensorboard" / "train")).scalars
    epochs = read_epochs(logged_run.run_dir)
    for tag in ("train_loss", "val_loss", "val_mAP"):
        values = scalars[scalars.tag == tag].sort_values("step").value.tolist()
        assert values == pytest.approx([float(row[tag]) for row in epochs], rel=1e-5), tag
    summary = SummaryReader(str(logged_run.run_dir / "logs" / "tensorboard" / "summary")).scalars
    final = dict(zip(summary.tag, summary.value))
    assert final["final_mAP"] == pytest.approx(logged_run.report.mAP, rel=1e-6)
    assert final["final_hamming_loss"] == pytest.approx(logged_run.report.hamming_loss, rel=1e-6)
    hparams = yaml.safe_load((logged_run.run_dir / "logs" / "tensorboard" / "train" / "hparams.yaml").read_text())
    assert hparams["loggers"] == "csv,tensorboard,mlflow" and hparams["image_size"] == 32
    csv_rows = (logged_run.run_dir / "logs" / "csv" / "train" / "metrics.csv").read_text()
    assert "val_mAP" in csv_rows.splitlines()[0]


def test_mlflow_run_in_the_local_store(logged_run):
    from mlflow.tracking import MlflowClient

    from tagnet.training.run_folder import read_epochs

    client = MlflowClient(tracking_uri=(logged_run.run_dir / "mlruns").resolve().as_uri())
    experiment = client.get_experiment_by_name("tagnet")
    (run,) = client.search_runs([experiment.experiment_id])
    assert run.info.run_name == "logged" and run.info.status == "FINISHED"
    assert run.data.params["epochs"] == "3" and run.data.params["backbone"] == "seed_cnn"
    history = [m.value for m in sorted(client.get_metric_history(run.info.run_id, "train-val_mAP"), key=lambda m: m.step)]
    assert history == pytest.approx([float(row["val_mAP"]) for row in read_epochs(logged_run.run_dir)], rel=1e-5)
    assert "train-train_loss" in run.data.metrics
    for key in ("mAP", "micro_f1", "macro_f1", "samples_f1", "hamming_loss"):
        assert run.data.metrics[f"final_{key}"] == pytest.approx(getattr(logged_run.report, key), rel=1e-6)


def test_bad_logger_names_and_cli_flags(tmp_path):
    with pytest.raises(ConfigError, match="loggers has 'wandb'; expected a comma-separated list of csv, tensorboard, mlflow"):
        TrainConfig(loggers="tensorboard,wandb").validate()
    assert TrainConfig(loggers=" csv, tensorboard,csv").logger_names() == ("csv", "tensorboard")
    for flags in (["--logger", "wandb", "--logger", "csv"], ["--logger", "csv,wandb"]):  # repeated values are joined
        result = runner.invoke(app, ["train", str(tmp_path / "labels.csv"), *flags])
        assert isinstance(result.exception, ConfigError) and "loggers has 'wandb'" in str(result.exception)


def test_without_a_terminal_one_line_per_epoch_and_how_training_stopped(synthetic_data, tmp_path, capsys):
    from tagnet.training.trainer import train

    # a learning rate too small to change any ranking: validation mAP never improves after epoch 1
    config = TrainConfig(backbone="seed_cnn", pretrained=False, image_size=32, epochs=5, batch_size=16, lr=1e-12,
                         patience=1, schedule="constant")
    train(synthetic_data.labels_csv, images_dir=synthetic_data.images_dir, out_dir=tmp_path / "run", config=config)
    out = capsys.readouterr().out
    lines = [line for line in out.splitlines() if line.startswith("train epoch ")]
    assert [line.split(":")[0] for line in lines] == ["train epoch 1/5", "train epoch 2/5"]
    assert re.fullmatch(r"train epoch 1/5: train loss \d\.\d{4}, val loss \d\.\d{4}, val mAP \d\.\d{4}", lines[0])
    assert re.search(r"train: early stopping after epoch 2 of 5 \(no better validation mAP in 1 epochs\); "
                     r"kept epoch 1 \(val mAP \d\.\d{4}\)", out)
    assert "Epoch 0" not in out and "━" not in out  # no progress bar


def test_progress_bar_counts_from_one_and_labels_f1_at_half():
    from tagnet.engine.fit import PROGRESS_NAMES, EpochProgressBar

    bar = EpochProgressBar()
    bar._trainer = type("T", (), {"max_epochs": 15})()
    assert bar._get_train_description(0).strip() == "Epoch 1/15"
    assert PROGRESS_NAMES["val_micro_f1"] == "val micro-F1 at 0.5"
