"""Every row trains the final model: the head's epochs (or C) and the thresholds chosen by k-fold CV out of fold, then
the head refitted on all rows; --no-refit and a --val file keep their validation split."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest
import torch
from rich.console import Console
from scipy.special import expit, logit
from sklearn.linear_model import LogisticRegression
from torch import nn

from tagnet.config.settings import TrainConfig
from tagnet.decisions.calibration import PlattScaling, ece
from tagnet.data.feature_table import read_feature_table, standardize
from tagnet.engine.headfit import fit_head, fit_seed_mean
from tagnet.errors import ConfigError
from tagnet.inference.artifact import load_artifact
from tagnet.training.selection import Selection, cv_folds, final_seeds, fit_final_heads, folded_temperatures
from tagnet.training.trainer import train
from tagnet.training.validation import validation_thresholds


def _linear_arff(path, n, seed):
    """Two labels of noisy linear rules on 5 features."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 5))
    logits = np.c_[2 * x[:, 0] - x[:, 1], x[:, 2] + x[:, 3]] + rng.normal(scale=1.0, size=(n, 2))
    rows = [",".join(f"{v:.5f}" for v in r) + f",{int(a > 0)},{int(b > 0)}" for r, (a, b) in zip(x, logits)]
    header = "@relation lin\n" + "".join(f"@attribute f{j} numeric\n" for j in range(5))
    path.write_text(header + "@attribute a {0,1}\n@attribute b {0,1}\n@data\n" + "\n".join(rows) + "\n")
    (path.parent / "lin.xml").write_text('<labels xmlns="http://mulan.sourceforge.net/labels">'
                                         '<label name="a"></label><label name="b"></label></labels>')  # MULAN names
    return path


def _train(path, out, *, val=None, **settings):
    console = Console(record=True, width=300)
    config = TrainConfig(epochs=3, batch_size=32, cv_folds=3, select="linear", objective="f1", **settings)
    result = train(path, out_dir=out, config=config, progress=False, console=console, val_labels=val)
    return result, console.export_text(), json.loads((out / "metrics.json").read_text())


@pytest.fixture(scope="module")
def table(tmp_path_factory):
    folder = tmp_path_factory.mktemp("refit")
    return _linear_arff(folder / "lin-train.arff", 150, 0), _linear_arff(folder / "lin-val.arff", 60, 1)


def _saved(run_dir):
    """val_predictions.csv as (items, truths, probabilities)."""
    saved = np.loadtxt(run_dir / "val_predictions.csv", delimiter=",", skiprows=1, dtype=str)  # item, true_*, prob_*
    labels = (saved.shape[1] - 1) // 2
    return saved[:, 0], saved[:, 1:1 + labels].astype(float), saved[:, 1 + labels:].astype(float)


def test_linear_head_is_refitted_on_every_row_with_out_of_fold_thresholds(table, tmp_path):
    train_file, _ = table
    result, said, metrics = _train(train_file, tmp_path / "run")
    assert "training on all 150 tabular inputs" in said and "chosen by 3-fold CV, validating out of fold" in said
    selection = metrics["selection"]
    assert f"final linear head trained on all 150 rows at C={selection['C']:g}" in said
    assert metrics["final_fit"] == {"rows": 150, "all_rows": True, "folds": 3, "validation": "out-of-fold",
                                    "C": selection["C"]}
    artifact = load_artifact(result.run_dir)
    state = artifact.state
    found = read_feature_table(train_file)
    x = standardize(found.features, state["mean"], state["std"]).astype(np.float64)
    targets = found.labels.targets
    items, truth, oof = _saved(result.run_dir)
    np.testing.assert_array_equal(items.astype(int), np.arange(1, 151))  # items are row numbers from 1
    np.testing.assert_array_equal(truth, targets)
    # the validation probabilities are out of fold: each fold's held-out rows scored by a regression at the chosen C
    # fitted on the other folds (the folds the run's CV used), not by the final head
    known = np.ones_like(targets, dtype=bool)
    for fold_rows, held in cv_folds(targets, known, folds=3, seed=0):
        for j in range(2):
            fold = LogisticRegression(C=selection["C"], tol=1e-8, max_iter=1000).fit(x[fold_rows], targets[fold_rows, j])
            np.testing.assert_allclose(oof[held, j], fold.predict_proba(x[held])[:, 1], atol=3e-3)
    # the final head: the regression at the chosen C on all 150 rows
    linear = artifact.model.head[1]
    for j in range(2):
        everything = LogisticRegression(C=selection["C"], tol=1e-8, max_iter=1000).fit(x, targets[:, j])
        np.testing.assert_allclose(linear.weight[j].detach().numpy(), everything.coef_[0], atol=1e-3)
    # the thresholds: per-label F1 fitted on the out-of-fold probabilities, and the report is theirs
    config = TrainConfig.from_dict(artifact.config)
    expected = validation_thresholds({"probs": oof.astype(np.float32), "targets": targets, "known": known}, config)
    np.testing.assert_allclose(artifact.thresholds.values, expected.thresholds.values, atol=1e-4)
    assert metrics["validation"]["n_items"] == 150 and result.report.n_items == 150


def test_no_refit_keeps_the_split_and_fits_the_head_on_its_training_rows(table, tmp_path):
    train_file, _ = table
    result, said, metrics = _train(train_file, tmp_path / "run", refit=False)
    assert "training on 120 tabular inputs, validating on 30" in said and "final" not in said
    assert metrics["final_fit"] == {"rows": 120, "all_rows": False, "validation": "held-out split",
                                    "validation_rows": 30}
    artifact = load_artifact(result.run_dir)
    assert artifact.config["refit"] is False
    items, _, _ = _saved(result.run_dir)
    rows = np.setdiff1d(np.arange(150), items.astype(int) - 1)
    found = read_feature_table(train_file)
    x = standardize(found.features, artifact.state["mean"], artifact.state["std"]).astype(np.float64)
    for j in range(2):
        expected = LogisticRegression(C=metrics["selection"]["C"], tol=1e-8, max_iter=1000).fit(
            x[rows], found.labels.targets[rows, j])
        np.testing.assert_allclose(artifact.model.head[1].weight[j].detach().numpy(), expected.coef_[0], atol=1e-3)


def test_a_val_file_keeps_its_meaning(table, tmp_path):
    train_file, val_file = table
    result, said, metrics = _train(train_file, tmp_path / "run", val=val_file)
    assert "training on 150 tabular inputs, validating on 60" in said and "final" not in said
    assert metrics["final_fit"] == {"rows": 150, "all_rows": False, "validation": "--val file", "validation_rows": 60}
    assert load_artifact(result.run_dir).config["refit"] is False and result.report.n_items == 60
    with pytest.raises(ConfigError, match="refit with --val"):
        _train(train_file, tmp_path / "both", val=val_file, refit=True)


def test_refit_conflicts_are_refused():
    with pytest.raises(ConfigError, match="refit with cv=3"):
        TrainConfig(refit=True, cv=3).validate()
    with pytest.raises(ConfigError, match="refit with finetune"):
        TrainConfig(refit=True, finetune=True).validate()
    with pytest.raises(ConfigError, match="refit=True"):
        TrainConfig(refit=True).for_modality("text")


def _head(seed):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Dropout(0.2), nn.Linear(6, 2))


def test_final_fit_trains_the_cv_epochs_on_the_same_schedule_with_the_mirror_copies():
    """A head trained for the CV's epochs (stop_after) is the head early stopping kept at that epoch, on the same
    schedule; fit_final_heads trains every row and its copies so, and validates with the out-of-fold probabilities."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(120, 6)).astype(np.float32)
    mirror = (x + rng.normal(scale=0.1, size=x.shape)).astype(np.float32)
    targets = (x[:, :2] + rng.normal(scale=0.5, size=(120, 2)) > 0).astype(np.float32)
    known = np.ones_like(targets, dtype=bool)
    config = TrainConfig(epochs=8, batch_size=16, lr=0.01, patience=8, refit_seeds=1)
    rows, val_rows = np.arange(90), np.arange(90, 120)
    stopped = _head(1)
    start = copy.deepcopy(stopped)
    _, best = fit_head(stopped, torch.from_numpy(x), targets, known, rows, val_rows, config=config, seed=5,
                       augmented=torch.from_numpy(mirror))
    refitted = copy.deepcopy(start)
    assert fit_head(refitted, torch.from_numpy(x), targets, known, rows, None, config=config, seed=5,
                    augmented=torch.from_numpy(mirror), stop_after=best) == (None, best)
    for a, b in zip(stopped.state_dict().values(), refitted.state_dict().values()):
        torch.testing.assert_close(a, b)
    oof = rng.random(targets.shape).astype(np.float32)
    selection = Selection("head", "micro_f1", folds=3, epochs=3, oof=oof)
    final, reference = copy.deepcopy(start), copy.deepcopy(start)
    [result] = fit_final_heads([final], x, targets, known, selection, config=config, augmented=mirror)
    fit_head(reference, torch.from_numpy(x), targets, known, np.arange(120), None, config=config, seed=config.seed,
             augmented=torch.from_numpy(mirror), stop_after=3)
    for a, b in zip(final.state_dict().values(), reference.state_dict().values()):
        torch.testing.assert_close(a, b)
    assert result.validation["probs"] is oof and result.best_epoch == 3


def test_a_linear_heads_final_fit_is_the_mean_of_its_seeds_fits():
    """refit_seeds fits of one Linear head (the first from its own start, each other initialised under its seed) are
    averaged into one head whose logits are the mean of theirs; the fits differ, so the mean is none of them. A head
    with a hidden layer, or an ensemble's members, train one seed each; fit_seed_mean refuses to average hidden
    layers."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(120, 6)).astype(np.float32)
    targets = (x[:, :2] + rng.normal(scale=0.5, size=(120, 2)) > 0).astype(np.float32)
    known = np.ones_like(targets, dtype=bool)
    config = TrainConfig(epochs=4, batch_size=16, lr=0.01, seed=3, refit_seeds=3)
    start = _head(1)
    fits = []
    for k, seed in enumerate((3, 4, 5)):
        member = copy.deepcopy(start)
        if k:
            torch.manual_seed(seed)
            member[1].reset_parameters()
        fit_head(member, torch.from_numpy(x), targets, known, np.arange(120), None, config=config, seed=seed,
                 stop_after=2)
        fits.append(member)
    selection = Selection("head", "micro_f1", folds=3, epochs=2, oof=np.full(targets.shape, 0.5, np.float32))
    final = copy.deepcopy(start)
    fit_final_heads([final], x, targets, known, selection, config=config)
    features = torch.from_numpy(x)
    with torch.no_grad():
        logits = [fit(features) for fit in [m.eval() for m in fits]]
        torch.testing.assert_close(final.eval()(features), torch.stack(logits).mean(dim=0), atol=1e-5, rtol=0)
        assert min(float((final(features) - each).abs().max()) for each in logits) > 1e-3
    assert final_seeds(config, [final]) == 3 and final_seeds(config, [final, copy.deepcopy(final)]) == 1
    hidden = nn.Sequential(nn.Linear(6, 4), nn.ReLU(), nn.Linear(4, 2))
    assert final_seeds(config, [hidden]) == 1 and final_seeds(TrainConfig(refit_seeds=1), [final]) == 1
    with pytest.raises(ValueError, match="one Linear layer"):
        fit_seed_mean(hidden, features, targets, known, np.arange(120), config=config, seeds=range(2))


def _smoothing_table():
    """120 rows of 6 features; two labels, each the sign of one feature."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(120, 6)).astype(np.float32)
    targets = (x[:, :2] > 0).astype(np.float32)
    return x, targets, np.ones_like(targets, dtype=bool)


@pytest.mark.parametrize("better", [0.0, 0.1])
def test_the_heads_cv_chooses_the_label_smoothing_whose_out_of_fold_probabilities_score_best(monkeypatch, better):
    """Unset, the label smoothing is chosen from LABEL_SMOOTHINGS by the head's CV on the selection metric (micro-F1
    at thresholds fitted out of fold): here the other smoothing's out-of-fold probabilities are noise."""
    from tagnet.training import selection as chooser

    x, targets, known = _smoothing_table()
    tried = []

    def out_of_fold(config, x, targets, known, folds, **_):
        tried.append(config.label_smoothing)
        noise = np.random.default_rng(1).random(targets.shape)
        probs = targets * 0.8 + 0.1 if config.label_smoothing == better else noise
        return {"mlp": probs.astype(np.float32)}, {"mlp": 0.5}, {"mlp": 3 if config.label_smoothing else 2}

    monkeypatch.setattr(chooser, "network_out_of_fold", out_of_fold)
    config = TrainConfig(cv_folds=3, label_smoothing_cv=True).for_modality("image")
    assert config.label_smoothing is None
    console = Console(record=True, width=200)
    selection = chooser.select_head(config, x, targets, known, make_head=lambda: _head(0), names=("head",), refit=True,
                                    thresholds_for=lambda val: validation_thresholds(val, config).thresholds,
                                    console=console)
    summary = selection.candidates["head"]
    assert tried == [0.0, 0.1] and selection.label_smoothing == better == summary["label_smoothing"]
    assert summary["smoothing_scores"][f"{better:g}"] == summary["mean"] == 1.0
    assert summary["smoothing_scores"][f"{0.1 - better:g}"] < 0.7 and summary["seconds"] == 1.0
    assert selection.epochs == (3 if better else 2)
    np.testing.assert_allclose(selection.oof, targets * 0.8 + 0.1)
    assert selection.applied(config).label_smoothing == better
    assert f"label smoothing {better:g} chosen by 3-fold CV on micro_f1" in console.export_text()


def test_a_smoothed_heads_temperatures_are_folded_into_its_last_layer():
    """folded_temperatures: the temperatures fitted on the out-of-fold probabilities divide the last Linear, so the
    head outputs exactly the scaled probabilities; the spread comes back (smoothed probabilities of clean labels get
    T < 1), rankings stay; a head not ending in a Linear of one output per label is left alone."""
    x, targets, known = _smoothing_table()
    head = nn.Sequential(nn.Linear(6, 2))
    with torch.no_grad():
        head[0].weight.copy_(torch.tensor([[2.0, 0, 0, 0, 0, 0], [0, 1.0, 0, 0, 0, 0]]))
        head[0].bias.zero_()
    features = torch.from_numpy(x)
    smoothed = torch.sigmoid(head(features)).detach().numpy()  # the labels are sign(x0), sign(x1): too soft
    scaled = folded_temperatures(head, smoothed, targets, known)
    after = torch.sigmoid(head(features)).detach().numpy()
    np.testing.assert_allclose(after, scaled, atol=1e-6)
    order = np.argsort(smoothed, axis=0)
    assert (np.diff(np.take_along_axis(after, order, axis=0), axis=0) >= 0).all()  # the same ranking (ties at 0 and 1)
    assert (ece(targets, scaled) < ece(targets, smoothed)).all()
    assert (np.abs(scaled - 0.5) > np.abs(smoothed - 0.5) - 1e-7).all()  # every probability moved away from 0.5
    grown = nn.Sequential(nn.Linear(6, 3))  # three outputs for two labels: not this head's calibration
    before = grown[0].weight.detach().clone()
    assert folded_temperatures(grown, smoothed, targets, known) is smoothed and torch.equal(grown[0].weight, before)


def test_an_asl_heads_out_of_fold_platt_maps_score_it_and_fold_into_its_last_layer(tmp_path):
    """A table's MLP head trained with ASL (which down-weights easy negatives: its probabilities sit above the labels'
    rates): the out-of-fold probabilities its CV keeps are mapped by per-label Platt maps fitted on every row (back
    to the labels' rates), said in the final head's line; plain BCE is left as it is. fit_final_heads folds the maps into the refitted head's last Linear: its
    probabilities are the maps of the same head's unmapped fit."""
    path = _linear_arff(tmp_path / "lin.arff", 300, 2)
    for loss in ("asl", "bce"):
        console = Console(record=True, width=300)
        config = TrainConfig(epochs=40, batch_size=32, cv_folds=3, select="mlp", refit=True, loss=loss, head_hidden=16)
        train(path, out_dir=tmp_path / loss, config=config, progress=False, console=console)
        said, metrics = console.export_text(), json.loads((tmp_path / loss / "metrics.json").read_text())
        mapped = "recalibrated by per-label Platt maps (asl trades calibration for ranking) fitted out of fold"
        assert (mapped in said) == (loss == "asl") and "temperatures" not in said
        assert ("calibration" in metrics["selection"]) == (loss == "asl")
        _, truth, oof = _saved(tmp_path / loss)
        if loss == "asl":
            np.testing.assert_allclose(oof.mean(0), truth.mean(0), atol=0.02)  # Platt's fit keeps each label's mean
    unmapped = _head(1)
    mapped = copy.deepcopy(unmapped)
    x = np.random.default_rng(0).normal(size=(40, 6)).astype(np.float32)
    targets, known = (x[:, :2] > 0).astype(np.float32), np.ones((40, 2), dtype=bool)
    config = TrainConfig(epochs=3, batch_size=16, refit_seeds=1)
    maps = PlattScaling([2.0, 0.5], [-1.0, 0.3])
    oof = np.full(targets.shape, 0.5, np.float32)
    [result] = fit_final_heads([mapped], x, targets, known, Selection("mlp", "hamming_loss", epochs=3, oof=oof,
                                                                     calibration=maps), config=config)
    fit_final_heads([unmapped], x, targets, known, Selection("mlp", "hamming_loss", epochs=3, oof=oof), config=config)
    features = torch.from_numpy(x)
    expected = maps.apply(torch.sigmoid(unmapped.eval()(features)).detach().numpy())  # the same fit, then the maps
    np.testing.assert_allclose(torch.sigmoid(mapped.eval()(features)).detach().numpy(), expected, atol=1e-5)
    assert result.validation["probs"] is oof  # the CV mapped them already


@pytest.mark.parametrize("loss", ["asl", "bce"])
def test_an_asl_heads_cv_scores_it_after_platt_maps_fitted_on_the_other_folds(monkeypatch, loss):
    """ASL's out-of-fold probabilities (here every cell's odds raised e^2.5: p >= 0.5 calls every cell positive) are
    scored at the table's p >= 0.5 after per-label Platt maps fitted on the other folds' rows (cross_fitted_platt), and
    kept mapped by the maps of every row, which the selection holds for the final head; BCE's as they are."""
    from tagnet.training import selection as chooser

    x, targets, known = _smoothing_table()
    raw = expit(logit(np.where(targets > 0, 0.7, 0.2)) + 2.5).astype(np.float32)
    monkeypatch.setattr(chooser, "network_out_of_fold", lambda *_, **__: ({"mlp": raw}, {"mlp": 0.5}, {"mlp": 2}))
    config = TrainConfig(cv_folds=3, loss=loss).for_modality("tabular")
    thresholds_for = lambda val: validation_thresholds(val, config).thresholds  # noqa: E731
    selection = chooser.select_head(config, x, targets, known, make_head=lambda: _head(0), names=("mlp",), refit=True,
                                    thresholds_for=thresholds_for, console=Console(record=True, width=200))
    folds = cv_folds(targets, known, folds=3, seed=config.seed)
    scored = chooser.cross_fitted_platt(raw, targets, known, folds) if loss == "asl" else raw
    expected = chooser.fold_scores("hamming_loss", {"probs": scored, "targets": targets, "known": known}, folds,
                                   thresholds_for)
    assert selection.candidates["mlp"]["mean"] == pytest.approx(np.mean(expected))
    assert selection.candidates["mlp"]["mean"] == (0.0 if loss == "asl" else pytest.approx(1 - targets.mean()))
    if loss == "asl":
        np.testing.assert_allclose(selection.oof, selection.calibration.apply(raw), atol=1e-6)
        np.testing.assert_allclose(selection.oof.mean(0), targets.mean(0), atol=0.01)
    else:
        assert selection.calibration is None and selection.oof is raw


def test_a_given_label_smoothing_is_kept_without_a_search(monkeypatch):
    from tagnet.training import selection as chooser

    x, targets, known = _smoothing_table()
    tried = []

    def out_of_fold(config, x, targets, known, folds, **_):
        tried.append(config.label_smoothing)
        return {"mlp": targets * 0.8 + 0.1}, {"mlp": 0.5}, {"mlp": 2}

    monkeypatch.setattr(chooser, "network_out_of_fold", out_of_fold)
    for given in (0.0, 0.05):
        config = TrainConfig(cv_folds=3, label_smoothing=given, label_smoothing_cv=True).for_modality("image")
        selection = chooser.select_head(config, x, targets, known, make_head=lambda: _head(0), names=("head",),
                                        refit=True, console=Console(quiet=True),
                                        thresholds_for=lambda val: validation_thresholds(val, config).thresholds)
        assert tried.pop() == given and not tried
        assert selection.label_smoothing is None and "smoothing_scores" not in selection.candidates["head"]
        assert selection.applied(config).label_smoothing == given and "label_smoothing" not in selection.to_dict()
    assert chooser.smoothing_grid(TrainConfig(), ("head",)) == (0.0, 0.1)  # the default
    assert chooser.smoothing_grid(TrainConfig(), ("ensemble",)) == chooser.smoothing_grid(
        TrainConfig(label_smoothing=0.0), ("head",)) == chooser.smoothing_grid(
        TrainConfig(label_smoothing_cv=False), ("head",)) == ()


def test_image_head_on_frozen_features_is_refitted_on_every_image(synthetic_data, tmp_path):
    console = Console(record=True, width=300)
    config = TrainConfig(backbone="efficientnet_lite0", image_size=32, epochs=4, batch_size=16, cv_folds=3,
                         label_smoothing_cv=True)
    result = train(synthetic_data.labels_csv, images_dir=synthetic_data.images_dir, out_dir=tmp_path / "run",
                   config=config, progress=False, console=console)
    said = console.export_text()
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    epochs = metrics["selection"]["epochs"]
    assert "training on all 120 image inputs (the final head; its epochs and thresholds chosen by 3-fold CV" in said
    assert f"final head trained on all 120 rows for {epochs} of 4 epochs" in said and 1 <= epochs <= 4
    smoothing = metrics["selection"]["label_smoothing"]
    scores = metrics["selection"]["candidates"]["head"]["smoothing_scores"]
    assert smoothing in (0.0, 0.1) and list(scores) == ["0", "0.1"]
    assert scores[f"{smoothing:g}"] == max(scores.values()) and (smoothing == 0.0 or scores["0.1"] > scores["0"])
    assert "choosing the head's epochs and label smoothing (0, 0.1) by 3-fold CV on 120 rows" in said
    assert (f"label smoothing {smoothing:g} chosen by 3-fold CV on micro_f1 (0: {scores['0']:.4f}, "
            f"0.1: {scores['0.1']:.4f})") in said
    assert ("(its probabilities recalibrated by per-label temperatures fitted out of fold)" in said) == (smoothing > 0)
    assert "the mean of 5 seeds' weights; epochs and thresholds chosen by 3-fold CV" in said
    assert metrics["final_fit"] == {"rows": 120, "all_rows": True, "folds": 3, "validation": "out-of-fold",
                                    "epochs": epochs, "label_smoothing": smoothing, "seeds": 5}
    assert set(metrics["selection"]["candidates"]) == {"head"} and metrics["best_epoch"] == epochs
    items, truth, oof = _saved(tmp_path / "run")
    assert len(set(items)) == 120  # every image, validated out of fold
    artifact = load_artifact(result.run_dir)
    assert artifact.config["label_smoothing"] == smoothing and artifact.meta["extra"]["selection"]["label_smoothing"] == smoothing
    known = np.ones_like(truth, dtype=bool)
    expected = validation_thresholds({"probs": oof.astype(np.float32), "targets": truth.astype(np.float32),
                                      "known": known}, TrainConfig.from_dict(artifact.config))
    np.testing.assert_allclose(artifact.thresholds.values, expected.thresholds.values, atol=1e-4)


def test_an_image_head_whose_cv_would_not_fit_the_budget_holds_out_a_split(synthetic_data, tmp_path):
    console = Console(record=True, width=300)
    config = TrainConfig(backbone="efficientnet_lite0", image_size=32, epochs=2, batch_size=16, finetune=False,
                         time_budget="1s")
    result = train(synthetic_data.labels_csv, images_dir=synthetic_data.images_dir, out_dir=tmp_path / "run",
                   config=config, progress=False, console=console)
    said = console.export_text()
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert "training on all 120 image inputs" in said and "5-fold CV of the head and its refit would take about" in said
    assert "training on 96 image inputs, validating on 24 instead" in said and "final head trained" not in said
    assert metrics["final_fit"] == {"rows": 96, "all_rows": False, "validation": "held-out split", "validation_rows": 24}
    assert any("5-fold CV of the head" in choice for choice in metrics["time_budget"]["choices"])
    assert load_artifact(result.run_dir).config["refit"] is False and result.report.n_items == 24


def test_threshold_rows_are_redrawn_from_the_split_a_budget_falls_back_to(synthetic_data, tmp_path):
    console = Console(record=True, width=300)
    config = TrainConfig(backbone="efficientnet_lite0", image_size=32, epochs=2, batch_size=16, finetune=False,
                         time_budget="1s", threshold_share=0.5)
    result = train(synthetic_data.labels_csv, images_dir=synthetic_data.images_dir, out_dir=tmp_path / "run",
                   config=config, progress=False, console=console)
    said = console.export_text()
    assert "validating on 24 instead" in said  # half of the 24 held-out rows choose the epoch, half the thresholds
    assert "thresholds fitted on 12 held-out rows apart from the 12 that chose the epoch" in said
    assert result.report.n_items == 12
