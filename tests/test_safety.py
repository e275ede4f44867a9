"""Safe with what users have: foreign checkpoints never run code, full disks and interrupts give one line."""

import errno
import json
import os
import pickle
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from tagnet.cli import main
from tagnet.config.settings import TrainConfig
from tagnet.data import images
from tagnet.data.images import MAX_IMAGE_SIZE, build_image_cache
from tagnet.data.labels import read_labels
from tagnet.data.label_table import LabelTable
from tagnet.errors import ArtifactError, ConfigError, DataError, Interrupted, ModelError, TagnetError
from tagnet.models.weights import read_state_dict
from tagnet.training.trainer import resume_training, train

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


def test_weights_file_that_is_not_weights_is_a_model_error(synthetic_data, tmp_path, monkeypatch, capsys):
    text = tmp_path / "passwd"
    text.write_text("root:x:0:0:root:/root:/bin/bash\n")
    err = _one_line_error(monkeypatch, capsys, ["train", str(synthetic_data.labels_csv), "--images",
                                                str(synthetic_data.images_dir), "--backbone", "seed_cnn", "--weights",
                                                str(text), "--out", str(tmp_path / "run")])
    assert err.startswith(f"error: weights file {text} holds something other than tensors")
    with pytest.raises(ModelError, match=rf"^weights file {text} holds something other than tensors and plain data, "
                       r"or is damaged \(IndexError\); nothing in it was run. Expected a .safetensors file"):
        read_state_dict(text)
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.pth"
    torch.save({"w": _Payload(marker)}, evil)
    with pytest.raises(ModelError, match="weights_only=True"):
        read_state_dict(evil)
    assert not marker.exists()


def _images(synthetic_data, n=6):
    return sorted(synthetic_data.images_dir.iterdir())[:n]


def test_full_disk_while_reserving_the_cache_is_one_data_error(synthetic_data, tmp_path, monkeypatch):
    def no_space(fd, offset, length):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "posix_fallocate", no_space)
    with pytest.raises(DataError) as full:
        build_image_cache(_images(synthetic_data), size=32, cache_dir=tmp_path)
    message = str(full.value)
    assert message.startswith(f"not enough disk space in {tmp_path} for the image cache (6 images at 32x32 px): "
                              "needs 18.0 KiB, ") and " free;" in message
    assert list(tmp_path.iterdir()) == []


def test_too_little_free_space_is_refused_before_writing(synthetic_data, tmp_path, monkeypatch):
    monkeypatch.setattr(shutil, "disk_usage", lambda path: shutil._ntuple_diskusage(10**9, 10**9 - 1000, 1000))
    with pytest.raises(DataError, match=r"for the image cache \(6 images at 32x32 px\): needs 18.0 KiB, 1000 bytes free"):
        build_image_cache(_images(synthetic_data), size=32, cache_dir=tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_full_disk_through_the_cli_is_one_line(synthetic_data, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(shutil, "disk_usage", lambda path: shutil._ntuple_diskusage(10**9, 10**9 - 1000, 1000))
    err = _one_line_error(monkeypatch, capsys, ["train", str(synthetic_data.labels_csv), "--images",
                                                str(synthetic_data.images_dir), "--backbone", "seed_cnn",
                                                "--no-pretrained", "--image-size", "32", "--out", str(tmp_path / "run")])
    assert err.startswith("error: not enough disk space in ") and "1000 bytes free" in err


def test_ctrl_c_while_decoding_leaves_no_temporary_file(synthetic_data, tmp_path, monkeypatch):
    decode = images.load_image

    def interrupted(path, size):
        if path.name == _images(synthetic_data)[3].name:
            raise KeyboardInterrupt
        return decode(path, size)

    monkeypatch.setattr(images, "load_image", interrupted)
    with pytest.raises(KeyboardInterrupt):
        build_image_cache(_images(synthetic_data), size=32, cache_dir=tmp_path, workers=1)
    assert list(tmp_path.iterdir()) == []
    monkeypatch.setattr(images, "load_image", decode)
    cache = build_image_cache(_images(synthetic_data), size=32, cache_dir=tmp_path)
    assert cache.array.shape == (6, 32, 32, 3) and cache.array.any() and not list(tmp_path.glob("*.tmp"))


def test_stale_cache_files_of_dead_processes_are_cleared(synthetic_data, tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = [tmp_path / f"images-32-0123456789abcdef.u8.{images._HOST}-{dead.pid}.tmp",
             tmp_path / f"images-32-0123456789abcdef.{dead.pid}.tmp"]  # as older tagnet named them
    kept = [tmp_path / f"images-32-0123456789abcdef.u8.{images._HOST}-{os.getpid()}.tmp",  # alive
            tmp_path / f"images-32-0123456789abcdef.u8.otherhost-{dead.pid}.tmp"]  # another machine's
    for path in stale + kept:
        path.write_bytes(b"x")
    build_image_cache(_images(synthetic_data), size=32, cache_dir=tmp_path)
    assert not any(p.exists() for p in stale) and all(p.exists() for p in kept)


def test_image_size_is_bounded_where_the_cache_allocates(synthetic_data, tmp_path):
    with pytest.raises(ConfigError, match=rf"image_size=5000: expected 1 to {MAX_IMAGE_SIZE} px per side"):
        build_image_cache(_images(synthetic_data), size=5000, cache_dir=tmp_path)


def test_file_system_without_fallocate_still_builds_the_cache(synthetic_data, tmp_path, monkeypatch):
    def unsupported(fd, offset, length):
        raise OSError(errno.EOPNOTSUPP, "Operation not supported")

    monkeypatch.setattr(os, "posix_fallocate", unsupported)
    cache = build_image_cache(_images(synthetic_data), size=32, cache_dir=tmp_path)
    assert cache.array.shape == (6, 32, 32, 3) and cache.failures == {}


def test_deeply_nested_json_is_one_line(tmp_path, monkeypatch, capsys):
    deep = tmp_path / "labels.json"
    deep.write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(DataError, match=rf"^{deep}: JSON nested too deeply \(Python reads about 1000 levels"):
        read_labels(deep)
    lines = tmp_path / "labels.jsonl"
    lines.write_text('{"image": "a.png", "labels": ["x"]}\n' + '{"a": ' * 5000 + "1" + "}" * 5000 + "\n")
    with pytest.raises(DataError, match=r"^labels.jsonl line 2: JSON nested too deeply"):
        read_labels(lines)
    huge = tmp_path / "huge.json"
    huge.write_text('[{"image": ' + "7" * 5000 + ', "labels": []}]')
    with pytest.raises(DataError, match=r"JSON holds a number with more than \d+ digits"):
        read_labels(huge)
    err = _one_line_error(monkeypatch, capsys, ["train", str(deep), "--out", str(tmp_path / "run")])
    assert err.startswith(f"error: {deep}: JSON nested too deeply")


def test_coco_ids_that_are_lists_or_mixed_are_data_errors(tmp_path):
    coco = tmp_path / "coco.json"
    coco.write_text(json.dumps({"images": [{"id": [1], "file_name": "a.png"}], "annotations": [],
                                "categories": [{"id": 1, "name": "cat"}]}))
    with pytest.raises(DataError, match=r"images\[0\] has id \[1\]; expected a number or a string"):
        read_labels(coco)
    coco.write_text(json.dumps({"images": [{"id": 1, "file_name": "a.png"}],
                                "annotations": [{"image_id": 1, "category_id": 9}],
                                "categories": [{"id": 1, "name": "cat"}, {"id": "2", "name": "dog"}]}))
    with pytest.raises(DataError, match=r"category_id 9, expected one of \[1, '2'\]"):
        read_labels(coco)


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(
        st.sampled_from(["image", "labels", "id", "file_name", "name", "image_id", "category_id"]), inner, max_size=4),
    max_leaves=12)
_VALUE = st.integers(-1, 2) | st.sampled_from(["a", "b", "1"]) | _JSON
_COCO = st.fixed_dictionaries({
    "images": st.lists(st.fixed_dictionaries({"id": _VALUE, "file_name": _VALUE}), max_size=3),
    "annotations": st.lists(st.fixed_dictionaries({"image_id": _VALUE, "category_id": _VALUE}), max_size=3),
    "categories": st.lists(st.fixed_dictionaries({"id": _VALUE, "name": _VALUE}), max_size=3)})
_RECORDS = st.lists(st.fixed_dictionaries({"image": _VALUE, "labels": st.lists(_VALUE, max_size=3) | _VALUE}), max_size=4)
_CSV_PIECES = list('ab01-., ;|\t"\n\r\\[]{}:') + ["image", "labels", "id", "\ufeff", "é", "1.0", "-1", "\x00"]
_CONTENT = st.one_of(
    st.binary(max_size=300),
    st.lists(st.sampled_from(_CSV_PIECES), max_size=60).map(lambda pieces: "".join(pieces).encode()),
    st.one_of(_JSON, _COCO, _RECORDS).map(lambda value: json.dumps(value).encode()),
    _RECORDS.map(lambda records: "\n".join(json.dumps(r) for r in records).encode()))


@settings(max_examples=100, deadline=None, database=None)
@given(content=_CONTENT, suffix=st.sampled_from([".csv", ".json", ".jsonl", ".tsv"]))
def test_label_readers_give_a_table_or_a_tagnet_error(content, suffix):
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / f"labels{suffix}"
        path.write_bytes(content)
        try:
            assert isinstance(read_labels(path), LabelTable)
        except TagnetError:
            pass
