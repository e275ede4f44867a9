"""Fitting the ecosystem: YAML settings files, Lightning loggers (TensorBoard, MLflow), a CLI that reads right."""

from __future__ import annotations

import json
import re

import pytest
import yaml

from typer.testing import CliRunner

from tagnet.cli import app
from tagnet.config.settings import TrainConfig, load_config
from tagnet.errors import ConfigError

runner = CliRunner()


def test_yaml_and_json_configs_load_alike(tmp_path):
    (tmp_path / "a.yaml").write_text("epochs: 3\nlr: 0.01\nbackbone: seed_cnn\npretrained: false\n")
    (tmp_path / "a.yml").write_text("{epochs: 3, lr: 0.01, backbone: seed_cnn, pretrained: no}\n")
    (tmp_path / "a.json").write_text(json.dumps({"epochs": 3, "lr": 0.01, "backbone": "seed_cnn", "pretrained": False}))
    loaded = [load_config(tmp_path / name) for name in ("a.yaml", "a.yml", "a.json")]
    assert loaded[0] == loaded[1] == loaded[2] == TrainConfig(epochs=3, lr=0.01, backbone="seed_cnn", pretrained=False)


@pytest.mark.parametrize("name, text, message", [
    ("typo.yaml", "epoch: 3\n", "unknown setting 'epoch'; did you mean 'epochs'?"),
    ("bad.yaml", "epochs: [3\n", "not valid YAML"),
    ("list.yml", "- 3\n", "expected a mapping of settings, got list"),
    ("wrong.yaml", "epochs: three\n", "epochs is 'three'; expected a int"),
    ("config.toml", "epochs = 3\n", "suffix '.toml'; expected one of .json, .yaml, .yml"),
])
def test_bad_yaml_configs_name_the_problem(tmp_path, name, text, message):
    (tmp_path / name).write_text(text)
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("?", r"\?").replace(".", r"\.")):
        load_config(tmp_path / name)


def test_every_run_writes_config_yaml(tiny_run):
    yaml_values = yaml.safe_load((tiny_run.run_dir / "config.yaml").read_text())
    assert yaml_values == json.loads((tiny_run.run_dir / "config.json").read_text())
    assert load_config(tiny_run.run_dir / "config.yaml") == load_config(tiny_run.run_dir / "config.json")
    assert yaml_values["image_size"] == 32 and yaml_values["backbone"] == "seed_cnn"


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


def test_bare_commands_print_help_and_exit_0():
    for args in ([], ["data"]):
        result = runner.invoke(app, args)
        assert result.exit_code == 0 and "Usage" in result.output and "Commands" in result.output


def test_help_texts():
    train_help = runner.invoke(app, ["train", "--help"], env={"COLUMNS": "200"}).output
    assert "<bool>" not in train_help and "(default True)" in train_help and "(default none)" in train_help
    assert "required unless --resume" in train_help
    for command in (["evaluate"], ["data", "check"], ["data", "split"]):
        text = " ".join(runner.invoke(app, [*command, "--help"], env={"COLUMNS": "200"}).output.split())
        for name in ("ARFF", "CVAT", "Label Studio", "spaCy", "Hugging Face", "labelstudio-csv", "huggingface"):
            assert name in text, (command, name)
        assert "<bool>" not in text


@pytest.mark.parametrize("seed", [0, 1])
def test_split_sizes_follow_the_fractions_on_dense_labels(seed):
    import numpy as np

    from tagnet.data.split import split_table
    from tagnet.data.label_table import LabelTable

    y = (np.random.default_rng(seed).random((600, 20)) < 0.3).astype(np.uint8)
    table = LabelTable([f"i{i}" for i in range(600)], [f"l{j}" for j in range(20)], y, np.ones_like(y, bool), "tags", {})
    parts = split_table(table, val=0.2, test=0.1, seed=seed)  # plain stratification gave e.g. 206 and 111 of 1000
    assert {name: len(part) for name, part in parts.items()} == {"train": 420, "val": 120, "test": 60}
    shares = np.stack([part.targets.mean(axis=0) for part in parts.values()])
    assert (shares.max(axis=0) - shares.min(axis=0)).max() < 0.15  # a random split of 60 test items: ~0.25


def test_data_check_counts_the_image_sizes_it_does_not_show(tmp_path):
    from PIL import Image

    from tagnet.data.check import check_dataset

    rows = ["image,tags"]
    for i, width in enumerate([8, 8, 9, 10, 11, 12]):
        Image.new("RGB", (width, 6)).save(tmp_path / f"{i}.png")
        rows.append(f"{i}.png,a")
    (tmp_path / "labels.csv").write_text("\n".join(rows) + "\n")
    report = check_dataset(tmp_path / "labels.csv", images_dir=tmp_path)
    detail = next(step.detail for step in report.steps if step.name == "images")
    assert detail.startswith("6 images decoded; sizes 8x6 (2), ")
    assert detail.endswith("and 2 other sizes (2 images)")


def test_predict_checks_the_output_suffix_first(tiny_run, tmp_path):
    result = runner.invoke(app, ["predict", str(tmp_path / "no-such-run"), "x.png", "--output", str(tmp_path / "out.txt")])
    assert "suffix '.txt'; expected one of .csv, .tsv, .json" in str(result.exception)


def test_prediction_table_keeps_long_file_names_whole():
    from rich.console import Console

    from tagnet.inference.predictor import Prediction, PredictionResults
    from tagnet.report.terminal import render_predictions

    name = "photos/2024/holiday/" + "x" * 40 + "_IMG_0001.jpg"
    names = ["alpha", "beta", "gamma", "delta"]
    results = PredictionResults([Prediction(name, {n: 0.5 for n in names}, names)], names)
    console = Console(width=70, record=True)
    render_predictions(results, console)
    rows = [line.split("│") for line in console.export_text().splitlines() if line.startswith("│")]
    assert "".join(cells[1].strip() for cells in rows) == name  # folded over lines, never cut with "…"
