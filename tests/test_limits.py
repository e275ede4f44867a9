"""Safe with what users have, continued: no silent overwrite, bounds on what allocates, one line for every mistake."""

import hashlib
import shutil
import sys

import pytest

from tagnet.cli import main


def _one_line_error(monkeypatch, capsys, argv: list[str], code: int = 2) -> str:
    """Run the CLI with `argv`; assert exit `code` and one `error: ...` line on stderr; return that line."""
    monkeypatch.setattr(sys, "argv", ["tagnet", *argv])
    with pytest.raises(SystemExit) as stop:
        main()
    err = capsys.readouterr().err
    assert stop.value.code == code and err.startswith("error: ") and err.count("\n") == 1, err
    return err.strip()


def _digest(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _train_argv(synthetic_data, out) -> list[str]:
    return ["train", str(synthetic_data.labels_csv), "--images", str(synthetic_data.images_dir), "--backbone",
            "seed_cnn", "--no-pretrained", "--image-size", "32", "--epochs", "1", "--out", str(out)]


def test_training_into_a_finished_run_is_refused_unless_forced(tiny_run, synthetic_data, tmp_path, monkeypatch,
                                                               capsys):
    run = tmp_path / "run"
    shutil.copytree(tiny_run.run_dir, run)
    weights = run / "artifact" / "model.safetensors"
    before = _digest(weights)
    err = _one_line_error(monkeypatch, capsys, _train_argv(synthetic_data, run))
    assert err == (f"error: --out {run} already holds a finished run ({run / 'artifact' / 'tagnet.json'}); "
                   "use --force to replace it, or another --out")
    assert _digest(weights) == before and (run / "metrics.csv").is_file()
    (run / "artifact" / "model.onnx").write_bytes(b"stale export")
    monkeypatch.setattr(sys, "argv", ["tagnet", *_train_argv(synthetic_data, run), "--force"])
    with pytest.raises(SystemExit) as done:
        main()
    assert done.value.code == 0
    assert _digest(weights) != before and not (run / "artifact" / "model.onnx").exists()


def test_out_that_is_a_file_is_one_line(synthetic_data, tmp_path, monkeypatch, capsys):
    taken = tmp_path / "taken"
    taken.write_text("not a folder")
    for out in (taken, taken / "run"):
        err = _one_line_error(monkeypatch, capsys, _train_argv(synthetic_data, out))
        assert err == f"error: --out {out}: a file of that name (or above it) exists; expected a folder for the run"
