"""`tagnet train`, `evaluate`, `predict`, `settings` and the demo, as a user runs them."""

import json
import sys

import pytest
from typer.testing import CliRunner

from tagnet.cli import app, main
from tagnet.config.settings import TrainConfig
from tagnet.demo import run_demo
from tagnet.inference import runtime

runner = CliRunner()


def test_train_evaluate_predict_from_the_command_line(synthetic_data, tmp_path):
    run = tmp_path / "run"
    result = runner.invoke(app, ["train", str(synthetic_data.labels_csv), "--images", str(synthetic_data.images_dir),
                                 "--backbone", "seed_cnn", "--no-pretrained", "--epochs", "1", "--image-size", "24",
                                 "--set", "batch_size=16", "--out", str(run)])
    assert result.exit_code == 0, result.output
    assert "micro avg" in result.output and (run / "artifact" / "tagnet.json").is_file()
    assert json.loads((run / "config.json").read_text())["batch_size"] == 16

    report_file = tmp_path / "report.json"
    result = runner.invoke(app, ["evaluate", str(run), str(synthetic_data.labels_csv),
                                 "--images", str(synthetic_data.images_dir), "--json", str(report_file)])
    assert result.exit_code == 0, result.output
    report = json.loads(report_file.read_text())
    for key in ("mAP", "per_label", "micro_f1", "macro_f1", "samples_f1", "hamming_loss", "exact_match",
                "ranking_loss", "coverage", "one_error"):
        assert key in report
    assert report["n_items"] == len(synthetic_data.table)

    bad = synthetic_data.images_dir.parent / "not-an-image.png"
    bad.write_bytes(b"garbage")
    out_csv = tmp_path / "pred.csv"
    result = runner.invoke(app, ["predict", str(run), str(synthetic_data.images_dir / "0000*.png"), str(bad),
                                 "--output", str(out_csv)])
    assert result.exit_code == 0, result.output
    lines = out_csv.read_text().splitlines()
    assert lines[0] == "source,labels," + ",".join(synthetic_data.table.label_names)
    assert len(lines) == 1 + 10 and "not-an-image.png" in result.output and "skipped" in result.output


def test_bad_setting_is_one_clear_line(synthetic_data, monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", ["tagnet", "train", str(synthetic_data.labels_csv), "--set", "dropuot=0.1"])
    with pytest.raises(SystemExit) as stop:
        main()
    err = capsys.readouterr().err
    assert stop.value.code == 2
    assert err.strip() == "error: --set 'dropuot=0.1': unknown setting 'dropuot'; did you mean 'dropout'?"
    assert "Traceback" not in err
    monkeypatch.setattr(sys, "argv", ["tagnet", "train", str(synthetic_data.labels_csv), "--threshold-mode", "fixed",
                                      "--set", "fixed_threshold=1.5"])
    with pytest.raises(SystemExit) as stop:
        main()
    assert stop.value.code == 2 and "fixed_threshold is 1.5; expected a number in [0, 1]" in capsys.readouterr().err


def test_missing_artifact_is_a_clear_error(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", ["tagnet", "predict", str(tmp_path / "nope"), str(tmp_path)])
    with pytest.raises(SystemExit) as stop:
        main()
    err = capsys.readouterr().err
    assert stop.value.code == 2 and err.startswith("error: ") and "nope" in err and "Traceback" not in err


def test_settings_lists_every_setting():
    result = runner.invoke(app, ["settings"])
    assert result.exit_code == 0
    for name in ("backbone", "lr", "threshold_mode", "mixup"):
        assert name in result.output


def test_demo_runs_the_whole_pipeline(tmp_path):
    result = run_demo(tmp_path / "demo", n_train=120, n_test=30, config=TrainConfig(image_size=48, epochs=3),
                      progress=False)
    assert result.predictions_file.is_file() and len(result.predictions) == 5
    assert (result.train.artifact_dir / "model.safetensors").is_file()
    assert result.test_report.n_items == 30 and result.test_report.mAP > 0.5
    budget = json.loads((result.train.run_dir / "metrics.json").read_text())["time_budget"]
    assert budget["seconds"] == 60.0 and budget["choices"]  # the demo trains within its 1-minute budget and says how


def test_demo_refuses_a_bad_time_budget_before_making_data(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", ["tagnet", "demo", "--out", str(tmp_path / "demo"), "--time-budget", "5x"])
    with pytest.raises(SystemExit) as stop:
        main()
    assert stop.value.code == 2 and "time_budget is '5x'" in capsys.readouterr().err
    assert not (tmp_path / "demo").exists()


def test_predict_runtime_choice(tiny_run, synthetic_data, monkeypatch, capsys):
    image = str(synthetic_data.images_dir / "00000.png")
    result = runner.invoke(app, ["predict", str(tiny_run.run_dir), image, "--runtime", "torch"])
    assert result.exit_code == 0, result.output
    for name in ("onnx", "openvino"):  # no model.onnx in the run
        monkeypatch.setattr(sys, "argv", ["tagnet", "predict", str(tiny_run.run_dir), image, "--runtime", name])
        with pytest.raises(SystemExit) as stop:
            main()
        err = capsys.readouterr().err
        assert stop.value.code == 2 and "model.onnx does not exist" in err and "Traceback" not in err
    monkeypatch.setattr(sys, "argv", ["tagnet", "predict", str(tiny_run.run_dir), image, "--runtime", "tensorrt"])
    with pytest.raises(SystemExit) as stop:
        main()
    err = capsys.readouterr().err
    assert stop.value.code == 2 and "expected one of auto, torch, onnx, openvino" in err and "Traceback" not in err
    monkeypatch.setattr(runtime, "installed", lambda package: package != "openvino")  # without the speed extra
    monkeypatch.setattr(sys, "argv", ["tagnet", "predict", str(tiny_run.run_dir), image, "--runtime", "openvino"])
    with pytest.raises(SystemExit) as stop:
        main()
    err = capsys.readouterr().err
    assert stop.value.code == 2 and err.count("\n") == 1 and "Traceback" not in err
    assert "error: runtime is 'openvino' but openvino is not installed (pip install 'tagnet[speed]')" in err
