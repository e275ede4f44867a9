"""Shared fixtures: the read-only real data sets next to the repository."""

import socket
from pathlib import Path

import pytest


@pytest.fixture(autouse=True, scope="session")
def own_user_cache(tmp_path_factory):
    """The user's cache folder (exported ONNX graphs) is a temporary one: tests never write to ~/.cache, and child
    processes (the CLI, distributed runs) inherit it."""
    import os

    from tagnet.inference.runtime import CACHE_ENV

    before = os.environ.get(CACHE_ENV)
    os.environ[CACHE_ENV] = str(tmp_path_factory.mktemp("user-cache"))
    yield
    if before is None:
        os.environ.pop(CACHE_ENV, None)
    else:
        os.environ[CACHE_ENV] = before


@pytest.fixture
def shared_data() -> Path:
    """/work/shared/data when the repository is /work/main (skips the test when absent)."""
    path = Path(__file__).resolve().parents[2] / "shared" / "data"
    if not path.is_dir():
        pytest.skip(f"shared data folder {path} not found")
    return path


@pytest.fixture(scope="session")
def synthetic_data(tmp_path_factory):
    """A small synthetic image set (120 images, 48 px) with labels.csv and boxes.json."""
    from tagnet.data.synthetic import write_synthetic_dataset

    return write_synthetic_dataset(tmp_path_factory.mktemp("synthetic"), n=120, size=48, seed=0)


@pytest.fixture(scope="session")
def tiny_run(synthetic_data, tmp_path_factory):
    """A run folder of seed_cnn trained for 2 epochs at 32 px on `synthetic_data` (a few seconds)."""
    from tagnet.config.settings import TrainConfig
    from tagnet.training.trainer import train

    config = TrainConfig(backbone="seed_cnn", pretrained=False, image_size=32, epochs=2, batch_size=16)
    return train(synthetic_data.labels_csv, images_dir=synthetic_data.images_dir,
                 out_dir=tmp_path_factory.mktemp("tiny_run"), config=config, progress=False)


@pytest.fixture
def no_network(monkeypatch):
    """Any attempt to connect fails loudly: for tests that must prove tagnet works offline."""

    def refuse(*args, **kwargs):
        raise AssertionError("tagnet tried to use the network")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


@pytest.fixture
def numbers_csv(tmp_path):
    """(path, rows): a CSV of 30 rows of three numeric columns f0, f1, f2 (normal, seed 0, 3 decimals) and the labels
    a = f0 > 0, b = f1 > 0, as a feature table is written."""
    import numpy as np

    rows = np.random.default_rng(0).normal(size=(30, 3))
    path = tmp_path / "table.csv"
    path.write_text("f0,f1,f2,a,b\n" + "".join(f"{r[0]:.3f},{r[1]:.3f},{r[2]:.3f},{int(r[0] > 0)},{int(r[1] > 0)}\n"
                                                for r in rows))
    return path, rows
