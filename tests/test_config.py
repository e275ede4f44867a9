"""config/: settings declared once with constraints and rules, per-modality defaults, checks before any data."""

from __future__ import annotations

import json

import pytest
import yaml
from typer.testing import CliRunner

from tagnet.cli import app
from tagnet.config.settings import (MODALITY_DEFAULTS, ServeSettings, TrainConfig, describe_settings, load_config,
                           parse_overrides, validate_settings)
from tagnet.errors import ConfigError

runner = CliRunner()


@pytest.mark.parametrize("modality", ["image", "text", "tabular"])
def test_unset_settings_take_the_declared_modality_defaults(modality):
    resolved = TrainConfig().for_modality(modality)
    for name, value in MODALITY_DEFAULTS[modality].items():
        assert getattr(resolved, name) == value
    assert TrainConfig().backbone is None  # "the modality's default" until a modality is known


def test_an_explicit_value_equal_to_another_modalitys_default_is_kept():
    # 3e-4 is the image default; an explicit 3e-4 on text must not become the text default 5e-5
    assert TrainConfig(finetune_lr=3e-4).for_modality("text").finetune_lr == 3e-4
    assert TrainConfig(head_hidden=0).for_modality("text").head_hidden == 0
    assert TrainConfig().for_modality("text").finetune_lr == 5e-5


@pytest.mark.parametrize(("modality", "setting"), [("text", {"image_size": 64}), ("text", {"augment": "basic"}),
                                                    ("tabular", {"finetune": True}), ("tabular", {"weights": "w.pt"})])
def test_settings_a_modality_has_no_use_for_are_refused(modality, setting):
    name = next(iter(setting))
    with pytest.raises(ConfigError, match=rf"{name}=.*do not apply to {modality} models"):
        TrainConfig(**setting).for_modality(modality)


def test_a_backbone_of_another_modality_is_refused():
    with pytest.raises(ConfigError, match="backbone 'mlp' does not take image inputs"):
        TrainConfig(backbone="mlp").for_modality("image")
    with pytest.raises(ConfigError, match="backbone 'seed_cnn' does not take text inputs; expected minilm_l6"):
        TrainConfig(backbone="seed_cnn").for_modality("text")


def test_validation_names_the_setting_the_value_and_what_was_expected():
    with pytest.raises(ConfigError, match="precision is 'bogus'; expected one of .*bf16-mixed"):
        TrainConfig(precision="bogus").validate()
    with pytest.raises(ConfigError, match="batch_size is 0; expected at least 1"):
        TrainConfig(batch_size=0).validate()
    with pytest.raises(ConfigError, match="epochs is 'ten'; expected a int"):
        TrainConfig(epochs="ten").validate()
    with pytest.raises(ConfigError, match="unknown setting 'learning_rate'"):
        TrainConfig.from_dict({"learning_rate": 0.1})
    with pytest.raises(ConfigError, match="did you mean 'epochs'"):
        TrainConfig.from_dict({"epoch": 3})
    with pytest.raises(ConfigError, match="--port is 70000; expected at most 65535"):
        validate_settings(ServeSettings(port=70000), flags=True)


def test_overrides_are_typed_by_their_setting():
    assert parse_overrides(["epochs=3", "lr=0.01", "finetune=yes", "image_size=none", "loss=asl"]) == {
        "epochs": 3, "lr": 0.01, "finetune": True, "image_size": None, "loss": "asl"}
    with pytest.raises(ConfigError, match="'many' is not a valid int"):
        parse_overrides(["epochs=many"])
    with pytest.raises(ConfigError, match="expected KEY=VALUE"):
        parse_overrides(["epochs"])


def test_config_files_round_trip_and_bad_files_get_one_line(tmp_path):
    path = tmp_path / "c.json"
    path.write_text(json.dumps(TrainConfig(epochs=4).for_modality("text").to_dict()))
    assert load_config(path) == TrainConfig(epochs=4).for_modality("text")
    path.write_text("{")
    with pytest.raises(ConfigError, match="not valid JSON"):
        load_config(path)
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "none.json")


def test_settings_are_checked_before_any_data_is_read(tmp_path):
    import tagnet

    missing = tmp_path / "no-such-labels.csv"  # reading it would be a DataError: the settings fail first
    with pytest.raises(ConfigError, match="precision"):
        tagnet.train(missing, out_dir=tmp_path / "run", config=TrainConfig(precision="bogus"))
    with pytest.raises(ConfigError, match="image_size=64.*do not apply to text"):
        tagnet.train(missing, text_column="text", out_dir=tmp_path / "run", config=TrainConfig(image_size=64))
    done = runner.invoke(app, ["train", str(missing), "--tabular", "--augment", "basic", "--out", str(tmp_path / "r")])
    assert done.exit_code == 1 and "do not apply to tabular models" in str(done.exception)


def _help(*command: str) -> str:
    """A command's --help on one line, without the boxes rich draws."""
    return " ".join(runner.invoke(app, [*command, "--help"], env={"COLUMNS": "400"}).output.replace("│", " ").split())


def test_cli_options_come_from_the_declarations():
    flat = _help("train")
    for name, _, _, _, meaning in describe_settings():
        field = TrainConfig.__dataclass_fields__[name]
        if "flag" in field.metadata:
            assert field.metadata["flag"] in flat and " ".join(meaning.split()[:4]) in flat, name
    assert "(default efficientnet_lite0+efficientnet_lite1+efficientnet_lite2 (image), minilm_l6 (text), mlp (tabular))" in flat
    serve = _help("serve")
    assert "--batch-window-ms" in serve and "5.0" in serve and "--max-items" in serve


def test_time_budget_parses_durations_and_refuses_nonsense():
    from tagnet.config.settings import parse_duration

    assert [parse_duration(text) for text in ("300", "90s", "5m", "1h30m", "2.5m", " 10M ")] == [
        300.0, 90.0, 300.0, 5400.0, 150.0, 600.0]
    assert TrainConfig(time_budget="5m").budget_seconds() == 300.0
    assert TrainConfig().budget_seconds() is None
    for bad in ("", "abc", "0", "5x", "-3", "inf"):
        with pytest.raises(ConfigError, match="time_budget|duration"):
            TrainConfig.from_dict({"time_budget": bad})


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


def test_intervals_keep_open_and_closed_ends_apart():
    from tagnet.config.constraints import Interval

    share = Interval(0, 1, closed="left")  # [0, 1)
    assert [share.check("x", v) is None for v in (0, 0.0, 0.5, 0.999, 1, 1.0, -0.001)] == [
        True, True, True, True, False, False, False]
    assert share.check("x", 1.0) == "x is 1.0; expected a number in [0, 1)"
    assert Interval(0, 1, closed="neither").check("x", 0.0) == "x is 0.0; expected a number in (0, 1)"
    positive = Interval(0, None, closed="neither")
    assert positive.check("lr", 0) == "lr is 0; expected greater than 0" and positive.check("lr", 1e-9) is None
    assert positive.check("lr", float("nan")) == "lr is nan; expected a number > 0"
    bounded = Interval(1, 10)
    assert (bounded.check("n", 0), bounded.check("n", 11)) == ("n is 0; expected at least 1", "n is 11; expected at most 10")
    assert [str(i) for i in (share, positive, bounded, Interval(None, 5, closed="neither"))] == [
        "in [0, 1)", "> 0", "in [1, 10]", "< 5"]


@pytest.mark.parametrize("setting, value, expected", [
    ("lr", 0.0, "lr is 0.0; expected greater than 0"),
    ("finetune_lr", -1e-5, "finetune_lr is -1e-05; expected greater than 0"),
    ("dropout", 1.0, r"dropout is 1.0; expected a number in \[0, 1\)"),
    ("label_smoothing", -0.1, r"label_smoothing is -0.1; expected a number in \[0, 1\)"),
    ("val_fraction", 1.0, r"val_fraction is 1.0; expected a number in \(0, 1\)"),
    ("fixed_threshold", 1.5, r"fixed_threshold is 1.5; expected a number in \[0, 1\]"),
    ("weight_decay", -0.1, "weight_decay is -0.1; expected at least 0"),
    ("cv", 1, r"cv is 1; expected 0 \(off\) or 2 to 100 folds"),
    ("loss", "softmax", "loss is 'softmax'; expected one of bce, weighted_bce, focal, asl"),
    ("loggers", "csv,wandb", "loggers has 'wandb'; expected a comma-separated list"),
    ("time_budget", "soon", "time_budget is 'soon'; expected seconds or a duration"),
])
def test_every_bad_setting_reads_alike(setting, value, expected):
    with pytest.raises(ConfigError, match=f"^config: {expected}"):
        TrainConfig(**{setting: value}).validate()


@pytest.mark.parametrize("settings, expected", [
    ({"cv": 3, "ensemble": 2}, "cv=3 with ensemble=2"),
    ({"cv": 3, "finetune": True}, "cv=3 with finetune"),
    ({"ensemble": 2, "finetune": True}, "ensemble=2 with finetune"),
    ({"objective": "hamming", "threshold_mode": "top-k"}, "applies to per-label and global"),
    ({"objective": "f1", "confidence": 0.9}, "confidence=0.9"),
    ({"min_labels": 3, "max_labels": 2}, "max_labels=2 is below min_labels=3"),
])
def test_rules_between_settings_are_checked_by_validate_and_for_modality_alike(settings, expected):
    with pytest.raises(ConfigError, match=expected):
        TrainConfig(**settings).validate()
    with pytest.raises(ConfigError, match=expected):
        TrainConfig(**settings).for_modality("image")


def test_settings_command_lists_each_constraint_and_the_rules():
    from tagnet.config.settings import TRAIN_RULES

    rows = {name: constraint for name, _, _, constraint, _ in describe_settings()}
    assert (rows["lr"], rows["dropout"], rows["batch_size"], rows["loss"]) == (
        "> 0", "in [0, 1)", "in [1, 65536]", "one of bce, weighted_bce, focal, asl, auto")
    out = " ".join(runner.invoke(app, ["settings"], env={"COLUMNS": "400"}).output.split())
    assert "constraint" in out and "> 0" in out and "Rules between settings:" in out
    assert all(rule.says in out for rule in TRAIN_RULES)


def test_every_numeric_or_choice_setting_declares_its_constraint():
    from dataclasses import fields

    from tagnet.config.settings import CalibrateSettings, ExportSettings, PredictSettings, TuneSettings, setting_types

    unbounded = {("TrainConfig", "seed"),  # any integer seeds
                 ("TrainConfig", "confidence"), ("CalibrateSettings", "confidence")}  # in (0, 1): a rule with objective
    for cls in (TrainConfig, CalibrateSettings, PredictSettings, ServeSettings, ExportSettings, TuneSettings):
        types = setting_types(cls)
        for f in fields(cls):
            if types[f.name] in (int, float) and (cls.__name__, f.name) not in unbounded:
                assert f.metadata.get("constraint") is not None, (cls.__name__, f.name)
