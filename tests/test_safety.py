"""Safe with what users have: foreign checkpoints never run code, full disks and interrupts give one line."""

import pickle
import shutil
import sys

import pytest
import torch

from tagnet.cli import main
from tagnet.config import TrainConfig
from tagnet.errors import ArtifactError, Interrupted, ModelError
from tagnet.models.weights import read_state_dict
from tagnet.train import resume_training, train

TINY = dict(backbone="seed_cnn", pretrained=False, image_size=32, epochs=2, batch_size=16)


def _one_line_error(monkeypatch, capsys, argv: list[str]) -> str:
    """Run the CLI with `argv`; assert exit code 2 and one `error: ...` line; return that line."""
    monkeypatch.setattr(sys, "argv", ["tagnet", *argv])
    with pytest.raises(SystemExit) as stop:
        main()
    err = capsys.readouterr().err
    assert stop.value.code == 2 and err.startswith("error: ") and err.count("\n") == 1, err
    return err.strip()


class _Payload:
    """Unpickling this would create `marker`: the stand-in for code hidden in a shared checkpoint."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


@pytest.fixture(scope="module")
def interrupted_run(synthetic_data, tmp_path_factory):
    """The tiny run stopped by Ctrl+C during epoch 2: run.json, config.json and epoch 1's last.ckpt."""
    def interrupt(epoch: int, score: float) -> None:
        if epoch == 2:
            raise KeyboardInterrupt

    run = tmp_path_factory.mktemp("interrupted")
    with pytest.raises(Interrupted) as stopped:
        train(synthetic_data.labels_csv, images_dir=synthetic_data.images_dir, out_dir=run,
              config=TrainConfig(**TINY), progress=False, epoch_callback=interrupt)
    return run, str(stopped.value)


def _copy(run, tmp_path):
    shutil.copytree(run, tmp_path / "run")
    return tmp_path / "run"


def test_interrupt_names_the_epoch_and_how_to_resume(interrupted_run):
    run, message = interrupted_run
    assert "during epoch 2 of 2" in message and f"tagnet train --resume {run}" in message
    assert (run / "checkpoints" / "train" / "last.ckpt").is_file() and not (run / "artifact").exists()
    assert "\n" not in message


def test_checkpoint_loads_as_tensors_only(interrupted_run):
    checkpoint = torch.load(interrupted_run[0] / "checkpoints" / "train" / "last.ckpt", weights_only=True)
    assert checkpoint["epoch"] == 0 and isinstance(checkpoint["rng"]["numpy"][1], torch.Tensor)


def test_resume_after_interrupt_gives_the_uninterrupted_result(interrupted_run, tiny_run, tmp_path):
    resumed = resume_training(_copy(interrupted_run[0], tmp_path), progress=False)
    assert resumed.report.mAP == pytest.approx(tiny_run.report.mAP, abs=1e-6)
    epochs = [line.split(",")[1] for line in (resumed.run_dir / "metrics.csv").read_text().splitlines()[1:]]
    assert epochs == ["1", "2"]


@pytest.mark.parametrize("how", ["pickle", "torch.save"])
def test_malicious_checkpoint_is_refused_and_never_run(interrupted_run, tmp_path, how):
    run = _copy(interrupted_run[0], tmp_path)
    last, marker = run / "checkpoints" / "train" / "last.ckpt", tmp_path / "pwned"
    payload = {"epoch": 0, "state_dict": _Payload(marker)}
    if how == "pickle":
        last.write_bytes(pickle.dumps(payload))
    else:
        torch.save(payload, last)
    with pytest.raises(ArtifactError) as refused:
        resume_training(run, progress=False)
    message = str(refused.value)
    assert f"checkpoint {last} holds something other than tensors and plain data" in message
    assert f"Delete {run / 'checkpoints'}" in message and "\n" not in message
    assert not marker.exists()


def test_truncated_checkpoint_is_one_line_through_the_cli(interrupted_run, tmp_path, monkeypatch, capsys):
    run = _copy(interrupted_run[0], tmp_path)
    last = run / "checkpoints" / "train" / "last.ckpt"
    last.write_bytes(last.read_bytes()[:1000])
    err = _one_line_error(monkeypatch, capsys, ["train", "--resume", str(run)])
    assert f"checkpoint {last}" in err and "or is damaged" in err


def test_weights_file_that_is_not_weights_is_a_model_error(tmp_path):
    text = tmp_path / "passwd"
    text.write_text("root:x:0:0:root:/root:/bin/bash\n")
    with pytest.raises(ModelError, match=rf"weights file {text} is not a torch state dict .*expected a .safetensors"):
        read_state_dict(text)
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.pth"
    torch.save({"w": _Payload(marker)}, evil)
    with pytest.raises(ModelError, match="weights_only=True"):
        read_state_dict(evil)
    assert not marker.exists()
