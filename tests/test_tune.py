"""Tests of the Optuna search: search space, resumable study, best config file, the pruning hook."""

import csv
import json

import optuna
import pytest

from tagnet.config.settings import TrainConfig, load_config
from tagnet.errors import ConfigError
from tagnet.training.trainer import train
from tagnet.tuning.search import suggest_config, tune

BASE = TrainConfig(backbone="seed_cnn", pretrained=False, image_size=32, epochs=1, batch_size=16)


def test_search_resumes_and_writes_a_loadable_best_config(synthetic_data, tmp_path):
    out = tmp_path / "study"
    kwargs = dict(images_dir=synthetic_data.images_dir, out_dir=out, base_config=BASE, backbones=["seed_cnn"])
    first = tune(synthetic_data.labels_csv, trials=1, **kwargs)
    assert (first.finished, first.pruned) == (1, 0)
    assert len(list((out / "cache").glob("images-*.u8"))) == 1  # every trial decodes into the study's one cache

    second = tune(synthetic_data.labels_csv, trials=2, **kwargs)
    assert second.finished == 2 and second.best_value >= first.best_value
    study = optuna.load_study(study_name="tagnet", storage=f"sqlite:///{out / 'study.db'}")
    assert [t.number for t in study.trials] == [0, 1]
    # trial 0 is the base recipe itself
    assert {k: study.trials[0].params[k] for k in ("lr", "weight_decay", "dropout", "head_hidden", "loss", "augment")} \
        == {"lr": BASE.lr, "weight_decay": BASE.weight_decay, "dropout": BASE.dropout, "head_hidden": 0,
            "loss": "bce", "augment": "basic"}  # the image default

    config = load_config(second.best_config_path)
    assert config == BASE.for_modality("image").updated(**study.best_trial.params)  # fixed settings kept, searched ones from the best trial
    assert config.cache_dir is None
    best_metrics = json.loads((second.best_run / "metrics.json").read_text())
    assert best_metrics["validation"]["mAP"] == pytest.approx(study.best_value)
    with (out / "trials.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert [float(r["mAP"]) for r in rows] == pytest.approx([t.value for t in study.trials], abs=1e-5)
    assert not (out / "trials").exists()

    with pytest.raises(ConfigError, match="base_config"):  # another recipe: not the same study
        tune(synthetic_data.labels_csv, trials=3, **{**kwargs, "base_config": BASE.updated(epochs=3)})


def test_search_space_maps_onto_train_config():
    features = TrainConfig()  # pretrained efficientnet_lite0: a head on cached features, augmentation has no effect
    params = {"backbone": "efficientnet_lite0", "lr": 0.01, "weight_decay": 1e-3, "dropout": 0.3, "head_hidden": 256,
              "loss": "asl", "asl_gamma_neg": 2.0, "asl_gamma_pos": 1.0, "asl_clip": 0.1}
    config = suggest_config(optuna.trial.FixedTrial(params), features, backbones=["efficientnet_lite0"])
    assert config == features.updated(**params)

    focal = {**params, "backbone": "seed_cnn", "loss": "focal", "focal_gamma": 3.0, "augment": "randaugment"}
    config = suggest_config(optuna.trial.FixedTrial(focal), BASE, backbones=["seed_cnn", "efficientnet_lite0"])
    assert (config.loss, config.focal_gamma, config.augment, config.asl_gamma_neg) == ("focal", 3.0, "randaugment",
                                                                                        BASE.asl_gamma_neg)
    with pytest.raises(ValueError):  # images reach the seed CNN, so augmentation is searched
        suggest_config(optuna.trial.FixedTrial({k: v for k, v in focal.items() if k != "augment"}), BASE,
                       backbones=["seed_cnn"])


def test_bad_arguments_raise_config_error(synthetic_data, tmp_path):
    with pytest.raises(ConfigError, match="trials"):
        tune(synthetic_data.labels_csv, out_dir=tmp_path, trials=0)
    with pytest.raises(ConfigError, match="timeout"):
        tune(synthetic_data.labels_csv, out_dir=tmp_path, trials=1, timeout=-1)
    with pytest.raises(ConfigError, match="backbones"):
        tune(synthetic_data.labels_csv, out_dir=tmp_path, trials=1, backbones=[" "])


def test_epoch_callback_sees_each_validation_and_can_stop_training(synthetic_data, tmp_path):
    seen = []

    def stop_after_two(epoch, score):
        seen.append((epoch, score))
        if epoch == 2:
            raise optuna.TrialPruned("stop")

    with pytest.raises(optuna.TrialPruned):
        train(synthetic_data.labels_csv, images_dir=synthetic_data.images_dir, out_dir=tmp_path,
              config=BASE.updated(epochs=3), progress=False, epoch_callback=stop_after_two)
    with (tmp_path / "metrics.csv").open() as handle:
        logged = [(int(r["epoch"]), float(r["val_mAP"])) for r in csv.DictReader(handle)]
    assert [e for e, _ in seen] == [1, 2]
    assert len(logged) == 1 and seen[0][1] == pytest.approx(logged[0][1])  # stopped before epoch 2 was logged
