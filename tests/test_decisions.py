"""Issue 17 end to end: decision settings in training, the rules in every prediction path, calibrate, audit, suggest."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from tagnet.artifact import load_artifact
from tagnet.cli import app
from tagnet.config import TrainConfig
from tagnet.errors import ConfigError
from tagnet.pipeline import train as train_run
from tagnet.predict import Predictor
from tagnet.thresholds import apply_thresholds

runner = CliRunner()


def separable_arff(path, n, seed, *, noise=0.0, flip=()):
    """Labels a = x0 > 0, b = x1 > 0 (b flipped with probability `noise`; the rows in `flip` have label a flipped)."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 3))
    y = np.column_stack([x[:, 0] > 0, x[:, 1] > 0]).astype(int)
    y[:, 1] ^= (rng.random(n) < noise).astype(int)
    for i in flip:
        y[i, 0] ^= 1
    header = "@relation sep\n" + "".join(f"@attribute x{j} numeric\n" for j in range(3))
    rows = [",".join(f"{v:.6g}" for v in r) + f",{a},{b}" for r, (a, b) in zip(x, y)]
    path.write_text(header + "@attribute a {0,1}\n@attribute b {0,1}\n@data\n" + "\n".join(rows) + "\n")
    path.with_suffix(".xml").write_text('<?xml version="1.0"?>\n<labels xmlns="http://mulan.sourceforge.net/labels">'
                                        '<label name="a"></label><label name="b"></label></labels>\n')
    return path


@pytest.fixture(scope="module")
def tables(tmp_path_factory):
    folder = tmp_path_factory.mktemp("decisions")
    return (separable_arff(folder / "train.arff", 160, 0, noise=0.1), separable_arff(folder / "new.arff", 120, 1))


FAST = ["--epochs", "3", "--batch-size", "32", "--set", "head_hidden=8"]


def test_decision_settings_are_checked_before_any_data_is_read(tmp_path):
    missing = str(tmp_path / "absent.arff")
    for flags, expected in ((["--objective", "precision>=1.5"], "objective 'precision>=1.5' is not one of"),
                            (["--objective", "f1", "--confidence", "0.9"], "confidence=0.9"),
                            (["--objective", "recall>=0.9", "--confidence", "1.5"], "confidence=1.5"),
                            (["--min-labels", "3", "--max-labels", "2"], "max_labels=2 is below min_labels=3"),
                            (["--if-empty", "all"], "expected one of none, top1")):
        done = runner.invoke(app, ["train", missing, "--out", str(tmp_path / "run"), *flags])
        assert done.exit_code != 0 and expected in str(done.exception or done.output), (flags, done.output)
        assert not (tmp_path / "run").exists()
    with pytest.raises(ConfigError, match="applies to per-label and global"):
        TrainConfig(objective="hamming", threshold_mode="top-k").validate()


def test_train_stores_the_rules_and_prints_unreachable_labels(tables, tmp_path):
    train, new = tables
    out = tmp_path / "run"
    done = runner.invoke(app, ["train", str(train), "--out", str(out), *FAST, "--objective", "precision>=0.99",
                               "--max-labels", "1", "--if-empty", "top1"])
    assert done.exit_code == 0, done.output
    flat = " ".join(done.output.split())
    assert "label 'b': precision>=0.99 not reached on validation data; the best precision it reaches is" in flat
    artifact = load_artifact(out)
    stored = json.loads((artifact.path / "tagnet.json").read_text())["thresholds"]
    assert stored["max_labels"] == 1 and stored["if_empty"] == "top1"
    assert artifact.config["objective"] == "precision>=0.99"
    predictor = Predictor(out)
    results = predictor.predict_paths([new])
    chosen = apply_thresholds(predictor.predict_proba(np.array([list(r) for r in _rows(new)])), artifact.thresholds)
    assert [p.labels for p in results] == [[n for n, on in zip("ab", row) if on] for row in chosen]
    assert all(len(p.labels) == 1 for p in results)  # max_labels 1, if_empty top1


def _rows(path):
    from tagnet.data.tabular import read_feature_table

    return read_feature_table(path).features
