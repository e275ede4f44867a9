"""Fitting the ecosystem: YAML settings files, Lightning loggers (TensorBoard, MLflow), a CLI that reads right."""

from __future__ import annotations

import json

import pytest
import yaml

from tagnet.config import TrainConfig, load_config
from tagnet.errors import ConfigError


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
