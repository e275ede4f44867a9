"""Tests of saving and loading model artifacts (model.safetensors + tagnet.json)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import safetensors.torch
import torch

from tagnet.inference.artifact import FORMAT_VERSION, load_artifact, save_artifact
from tagnet.errors import ArtifactError
from tagnet.models import PreprocessConfig, create_model
from tagnet.decisions.thresholds import Thresholds

LABELS = ["cat", "dog", "sky"]


def _save(out_dir, *, name="seed_cnn", head_hidden=8, **kwargs):
    torch.manual_seed(0)
    model = create_model(name, num_labels=len(LABELS), pretrained=False, image_size=32, head_hidden=head_hidden)
    with torch.no_grad():  # make the head non-trivial so equal outputs mean equal weights
        for parameter in model.parameters():
            parameter.add_(0.01 * torch.randn_like(parameter))
    thresholds = Thresholds(mode="per-label", values=[0.3, 0.5, 0.7], top_k=1)
    path = save_artifact(out_dir, model=model, modality="image", state=model.preprocess.to_dict(),
        label_names=LABELS,
        thresholds=thresholds,
        config={"backbone": name, "epochs": 2},
        metrics={"mAP": np.float32(0.75), "per_label": np.array([0.5, 1.0])},
        **kwargs,
    )
    return model.eval(), thresholds, path


@pytest.mark.parametrize("name", ["seed_cnn", "efficientnet_lite0"])
def test_roundtrip_gives_identical_outputs(tmp_path, name):
    model, thresholds, path = _save(tmp_path / "artifact", name=name, extra={"best_epoch": 2})
    assert path == tmp_path / "artifact"
    assert sorted(p.name for p in path.iterdir()) == ["MODEL_CARD.md", "model.safetensors", "tagnet.json"]  # no temp files left
    artifact = load_artifact(path)
    assert not artifact.model.training
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        torch.testing.assert_close(artifact.model(x), model(x), rtol=0, atol=0)
    assert artifact.label_names == LABELS
    assert artifact.thresholds == thresholds
    assert artifact.preprocess == model.preprocess == artifact.model.preprocess
    assert artifact.model.spec == model.spec
    assert artifact.config == {"backbone": name, "epochs": 2}
    assert artifact.metrics == {"mAP": 0.75, "per_label": [0.5, 1.0]}
    assert artifact.path == path
    meta = artifact.meta
    assert meta["format_version"] == FORMAT_VERSION == 2
    assert meta["modality"] == artifact.modality == "image"
    assert meta["extra"] == {"best_epoch": 2}
    assert meta["model"] == {"name": name, "num_labels": 3, "dropout": 0.2, "head_hidden": 8}
    assert meta["input"] == model.preprocess.to_dict() and meta["input"]["image_size"] == 32  # the size, stored once
    assert {"tagnet_version", "created"} <= set(meta)


def test_saved_preprocess_is_authoritative(tmp_path):
    _, _, path = _save(tmp_path)
    meta = json.loads((path / "tagnet.json").read_text())
    meta["input"]["mean"] = [0.5, 0.5, 0.5]
    (path / "tagnet.json").write_text(json.dumps(meta))
    artifact = load_artifact(path)
    assert artifact.preprocess == artifact.model.preprocess == PreprocessConfig(32, (0.5, 0.5, 0.5), (1.0, 1.0, 1.0))


def test_channels_last_model_saves(tmp_path):
    torch.manual_seed(0)
    model = create_model("seed_cnn", num_labels=3, image_size=32).to(memory_format=torch.channels_last).eval()
    save_artifact(tmp_path, model=model, modality="image", state=model.preprocess.to_dict(), label_names=LABELS, thresholds=Thresholds("global", [0.5] * 3), config={}, metrics={})
    x = torch.rand(1, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(load_artifact(tmp_path).model(x), model(x))


def test_run_folder_and_json_path_are_resolved(tmp_path):
    _save(tmp_path / "run" / "artifact")
    assert load_artifact(tmp_path / "run").path == tmp_path / "run" / "artifact"
    assert load_artifact(tmp_path / "run" / "artifact" / "tagnet.json").path == tmp_path / "run" / "artifact"


def test_missing_paths_are_artifact_errors(tmp_path):
    with pytest.raises(ArtifactError, match="nowhere does not exist"):
        load_artifact(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ArtifactError, match=r"no tagnet.json in .*empty or .*empty/artifact"):
        load_artifact(tmp_path / "empty")
    _, _, path = _save(tmp_path / "a")
    (path / "model.safetensors").unlink()
    with pytest.raises(ArtifactError, match="model.safetensors is missing"):
        load_artifact(path)


def _edit_meta(path, edit):
    meta = json.loads((path / "tagnet.json").read_text())
    edit(meta)
    (path / "tagnet.json").write_text(json.dumps(meta))


def test_newer_or_bad_format_version_is_refused(tmp_path):
    _, _, path = _save(tmp_path)
    _edit_meta(path, lambda meta: meta.update(format_version=FORMAT_VERSION + 1))
    with pytest.raises(ArtifactError, match=r"format_version 3, made by a newer tagnet.*reads up to 2: upgrade tagnet"):
        load_artifact(path)
    _edit_meta(path, lambda meta: meta.update(format_version="one"))
    with pytest.raises(ArtifactError, match="format_version is 'one'; expected an integer from 1 to 2"):
        load_artifact(path)


def test_malformed_metadata_is_refused(tmp_path):
    _, _, path = _save(tmp_path)
    _edit_meta(path, lambda meta: meta.pop("label_names"))
    with pytest.raises(ArtifactError, match="lacks the key\\(s\\) label_names"):
        load_artifact(path)
    _, _, path = _save(tmp_path / "b")
    _edit_meta(path, lambda meta: meta.update(label_names=["cat"]))
    with pytest.raises(ArtifactError, match=r"label_names is \['cat'\]; expected a list of 3 strings"):
        load_artifact(path)
    _, _, path = _save(tmp_path / "c")
    _edit_meta(path, lambda meta: meta["model"].update(name="seed-cnn"))
    with pytest.raises(ArtifactError, match="unknown model 'seed-cnn'; did you mean seed_cnn"):
        load_artifact(path)
    _, _, path = _save(tmp_path / "d")
    _edit_meta(path, lambda meta: meta["thresholds"].update(values=[0.5]))
    with pytest.raises(ArtifactError, match="thresholds"):
        load_artifact(path)
    (path / "tagnet.json").write_text("{not json")
    with pytest.raises(ArtifactError, match="tagnet.json is not valid JSON"):
        load_artifact(path)
    (path / "tagnet.json").write_text("[1, 2]")
    with pytest.raises(ArtifactError, match="holds a JSON list; expected an object"):
        load_artifact(path)


def test_weights_that_do_not_fit_are_refused(tmp_path):
    _, _, path = _save(tmp_path)
    _edit_meta(path, lambda meta: meta["model"].update(head_hidden=4))
    with pytest.raises(ArtifactError, match=r"do not fit the seed_cnn model recorded in tagnet.json: .*with another shape"):
        load_artifact(path)
    _, _, path = _save(tmp_path / "b")
    state = safetensors.torch.load_file(path / "model.safetensors")
    state.pop("head.0.bias")
    safetensors.torch.save_file(state, path / "model.safetensors")
    with pytest.raises(ArtifactError, match=r"1 missing \(head.0.bias\)"):
        load_artifact(path)
    (path / "model.safetensors").write_bytes(b"\x80\x04 a pickle, not safetensors")
    with pytest.raises(ArtifactError, match="not a readable safetensors file"):
        load_artifact(path)


def test_label_names_must_match_outputs(tmp_path):
    model = create_model("seed_cnn", num_labels=3, image_size=32)
    with pytest.raises(ArtifactError, match="2 label names for a model with 3 outputs"):
        save_artifact(tmp_path, model=model, modality="image", state=model.preprocess.to_dict(), label_names=["a", "b"], thresholds=Thresholds("global", [0.5] * 3),
                      config={}, metrics={})


def _format_1_meta(model, *, label_names, thresholds, extra):
    """tagnet.json exactly as tagnet 0.1.0's save_artifact wrote it (a frozen copy of that writer's layout)."""
    spec = {"name": model.name, "num_labels": model.num_labels, "dropout": model.dropout,
            "head_hidden": model.head_hidden, "image_size": model.preprocess.image_size if model.preprocess else 1}
    if extra.get("modality") == "tabular":
        spec["input_dim"] = model.num_features
    preprocess = model.preprocess.to_dict() if model.preprocess else {"image_size": 1, "mean": [0.0, 0.0, 0.0],
                                                                      "std": [1.0, 1.0, 1.0]}
    return {"format_version": 1, "tagnet_version": "0.1.0", "created": "2026-11-20T10:00:00+00:00",
            "label_names": label_names, "thresholds": thresholds.to_dict(), "preprocess": preprocess, "model": spec,
            "config": {}, "metrics": {}, "extra": extra}


def _write_format_1(folder, model, meta):
    folder.mkdir(parents=True)
    safetensors.torch.save_file({k: v.contiguous() for k, v in model.state_dict().items()}, folder / "model.safetensors")
    (folder / "tagnet.json").write_text(json.dumps(meta))


def test_format_1_image_artifact_loads_and_predicts_the_same(tmp_path):
    from tagnet.inference.predictor import Predictor

    model, thresholds, path = _save(tmp_path / "v2")
    old = tmp_path / "v1"
    _write_format_1(old, model, _format_1_meta(model, label_names=LABELS, thresholds=thresholds,
                                               extra={"modality": "image", "best_epoch": 2}))
    artifact = load_artifact(old)
    assert (artifact.modality, artifact.state, artifact.meta["format_version"]) == ("image", model.preprocess.to_dict(), 1)
    images = np.random.default_rng(0).integers(0, 256, (3, 40, 50, 3), dtype=np.uint8)
    np.testing.assert_array_equal(Predictor(old, runtime="torch").predict_proba(list(images)),
                                  Predictor(path, runtime="torch").predict_proba(list(images)))


def test_format_1_tabular_artifact_loads_and_predicts_the_same(tmp_path):
    from tagnet.data.feature_table import standardize
    from tagnet.inference.predictor import Predictor

    torch.manual_seed(0)
    model = create_model("mlp", num_labels=2, pretrained=False, head_hidden=8, input_dim=3).eval()
    mean, std = [1.0, -2.0, 0.5], [2.0, 1.0, 4.0]
    thresholds = Thresholds("per-label", [0.4, 0.6])
    _write_format_1(tmp_path / "v1", model, _format_1_meta(model, label_names=["a", "b"], thresholds=thresholds, extra={
        "modality": "tabular", "feature_names": ["x0", "x1", "x2"], "standardize": {"mean": mean, "std": std},
        "id_column": None, "best_epoch": 3}))
    predictor = Predictor(tmp_path / "v1", runtime="torch")
    assert predictor.artifact.state == {"feature_names": ["x0", "x1", "x2"], "mean": mean, "std": std, "id_column": None}
    rows = np.array([[0.0, 1.0, 2.0], [np.nan, -1.0, 3.0]])
    with torch.no_grad():
        expected = torch.sigmoid(model(torch.from_numpy(standardize(rows, np.array(mean), np.array(std))))).numpy()
    np.testing.assert_allclose(predictor.predict_proba(list(rows)), expected, rtol=0, atol=1e-7)
    assert predictor.predict(list(rows)).to_dicts()[0]["source"] == "1"
