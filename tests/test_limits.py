"""Limits: bounds on what settings, files and requests can allocate; no silent overwrite; one line for every mistake."""

import hashlib
import json
import os
import shutil
import stat
import sys

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from tagnet.inference.artifact import load_artifact, save_artifact
from tagnet.cli import main
from tagnet.config.settings import (EXPLAIN_PIXELS, MAX_BATCH_SIZE, MAX_ENSEMBLE, MAX_HEATMAPS, MAX_IMAGE_SIZE, MAX_LABELS,
                           MAX_REQUEST_TEXT_CHARS, MAX_TEXT_CHARS, TrainConfig)
from tagnet.data import images
from tagnet.errors import ArtifactError, DataError, ModelError
from tagnet.inference.explain import explain_images
from tagnet.models import create_model
from tagnet.training.trainer import train
from tagnet.inference.predictor import Predictor
from tagnet.serve import create_app


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


@pytest.fixture(scope="module")
def text_predictor(tmp_path_factory):
    """A text model trained for one epoch on 16 generated texts (frozen MiniLM, head only)."""
    folder = tmp_path_factory.mktemp("text")
    rows = [f"t{i},{'good sunny day' if i % 2 else 'bad rainy night'} {i},{'happy' if i % 2 else 'sad'}" for i in range(16)]
    (folder / "labels.csv").write_text("id,text,labels\n" + "\n".join(rows) + "\n")
    result = train(folder / "labels.csv", modality="text", text_column="text", out_dir=folder / "run",
                   config=TrainConfig(epochs=1, batch_size=8), progress=False)
    return Predictor(result.run_dir)


@pytest.fixture(scope="module")
def table_predictor(tmp_path_factory):
    """A tabular model trained for one epoch on 20 generated rows of 2 features and 2 labels."""
    folder = tmp_path_factory.mktemp("table")
    rows = [f"{i % 3 - 1},{i % 5 - 2},{i % 2},{int(i % 3 == 0)}" for i in range(20)]
    (folder / "table.csv").write_text("x0,x1,a,b\n" + "\n".join(rows) + "\n")
    result = train(folder / "table.csv", modality="tabular", read_options={"label_count": 2}, out_dir=folder / "run",
                   config=TrainConfig(epochs=1, batch_size=8, head_hidden=8), progress=False)
    return Predictor(result.run_dir)


def _post(client, body: str):
    return client.post("/predict", content=body.encode("utf-8"), headers={"content-type": "application/json"})


def test_text_server_caps_text_before_tokenising(text_predictor):
    client = TestClient(create_app(text_predictor))
    assert client.post("/predict", json={"texts": ["x" * MAX_TEXT_CHARS]}).status_code == 200
    long = client.post("/predict", json={"texts": ["ok", "x" * (MAX_TEXT_CHARS + 1)]})
    assert long.status_code == 413
    assert long.json()["detail"] == f"texts[1] has {MAX_TEXT_CHARS + 1} characters; at most {MAX_TEXT_CHARS} per text"
    many = client.post("/predict", json={"texts": ["x" * MAX_TEXT_CHARS] * (MAX_REQUEST_TEXT_CHARS // MAX_TEXT_CHARS + 1)})
    assert many.status_code == 413 and f"at most {MAX_REQUEST_TEXT_CHARS}" in many.json()["detail"]
    surrogate = _post(client, '{"texts": ["fine", "bad \\ud800 text"]}')
    assert surrogate.status_code == 400
    assert surrogate.json()["detail"] == ("texts[1] is not valid Unicode (a lone surrogate '\\ud800' at character 4); "
                                          "expected UTF-8 text")
    assert client.post("/predict", json={"texts": ["still serving"]}).status_code == 200


def test_tokenizer_reads_only_the_first_characters_of_a_huge_text(text_predictor):
    encoder = text_predictor.model.backbone
    huge = "word " * (MAX_TEXT_CHARS // 5) + "tail " * 10**6
    assert encoder.tokenize([huge]) == encoder.tokenize([huge[:MAX_TEXT_CHARS]])


@pytest.mark.parametrize("value", ["1e400", "-1e400", "1e308", "Infinity"])
def test_table_server_refuses_non_finite_inputs(table_predictor, value):
    client = TestClient(create_app(table_predictor))
    answer = _post(client, f'{{"rows": [[0, 1], [2, {value}]]}}')
    assert answer.status_code == 400, answer.text
    assert answer.json()["detail"].startswith("rows[1][1] is ") and "expected a finite number" in answer.json()["detail"]
    missing = _post(client, '{"rows": [[0, null], [2, NaN]]}')
    assert missing.status_code == 200
    assert all(v is not None for p in missing.json()["predictions"] for v in p["probabilities"].values())


def test_non_finite_probabilities_are_a_json_error_not_null(table_predictor, monkeypatch):
    monkeypatch.setattr(table_predictor, "predict_proba", lambda items: np.full((len(items), 2), np.nan, np.float32))
    answer = TestClient(create_app(table_predictor)).post("/predict", json={"rows": [[0, 1]]})
    assert answer.status_code == 500
    assert answer.json()["detail"].startswith("the model gave non-finite probabilities (NaN or inf) for input 1 ('1')")


def test_deeply_nested_body_is_a_json_400(table_predictor):
    answer = _post(TestClient(create_app(table_predictor)), '{"rows": ' + "[" * 100_000 + "]" * 100_000 + "}")
    assert answer.status_code == 400 and answer.json()["detail"].startswith("request body is not valid JSON")


def _png(path) -> tuple:
    return ("files", (path.name, path.read_bytes(), "image/png"))


def test_explain_bounds_pixels_and_heatmaps_per_request(tiny_run, synthetic_data):
    predictor = Predictor(tiny_run.run_dir)
    images = sorted(synthetic_data.images_dir.iterdir())
    width, height = Image.open(images[0]).size
    client = TestClient(create_app(predictor, max_pixels=width * height))
    over = client.post("/explain", files=[_png(p) for p in images[:EXPLAIN_PIXELS + 1]])
    assert over.status_code == 413
    assert over.json()["detail"] == (f"{EXPLAIN_PIXELS + 1} images of {(EXPLAIN_PIXELS + 1) * width * height} pixels in "
                                     f"all; at most {EXPLAIN_PIXELS * width * height} per /explain request")
    labels = predictor.label_names
    count = MAX_HEATMAPS // len(labels) + 1
    client = TestClient(create_app(predictor))
    maps = client.post("/explain", params={"labels": labels}, files=[_png(p) for p in images[:count]])
    assert maps.status_code == 413
    assert maps.json()["detail"] == (f"{count} images x {len(labels)} labels is {count * len(labels)} heatmaps; "
                                     f"at most {MAX_HEATMAPS} per request")
    assert client.post("/explain", params={"labels": labels[:1]}, files=[_png(images[0])]).status_code == 200
    with pytest.raises(DataError, match=r"^2 heatmaps \(images x labels\) asked for; at most 1"):
        explain_images(predictor, images[:2], labels=labels[:1], max_maps=1)


def test_saved_artifact_is_readable_by_group_and_others(tiny_run, tmp_path):
    loaded = load_artifact(tiny_run.run_dir)
    old = os.umask(0o022)
    try:
        folder = save_artifact(tmp_path / "artifact", model=loaded.model, modality=loaded.modality,
                               label_names=loaded.label_names, thresholds=loaded.thresholds, state=loaded.state,
                               config=loaded.config, metrics=loaded.metrics)
    finally:
        os.umask(old)
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in folder.iterdir()}
    assert modes == {"model.safetensors": 0o644, "tagnet.json": 0o644, "MODEL_CARD.md": 0o644}


def test_bogus_precision_is_refused_before_reading_data(tmp_path, monkeypatch, capsys):
    err = _one_line_error(monkeypatch, capsys, ["train", str(tmp_path / "absent.csv"), "--precision", "bogus",
                                                "--out", str(tmp_path / "run")])
    assert err.startswith("error: config: precision is 'bogus'; expected one of 64, 32, 16, bf16")
    assert not (tmp_path / "run").exists()


def test_delimiter_of_two_characters_is_one_line(synthetic_data, tmp_path, monkeypatch, capsys):
    expected = ("delimiter 'xx': expected one character other than a quote or line break, or one of space, comma, "
                "semicolon, pipe, tab")
    err = _one_line_error(monkeypatch, capsys, _train_argv(synthetic_data, tmp_path / "run") + ["--delimiter", "xx"])
    assert err == f"error: {expected}"
    monkeypatch.setattr(sys, "argv", ["tagnet", "data", "check", str(synthetic_data.labels_csv), "--delimiter", "xx"])
    with pytest.raises(SystemExit) as unusable:  # data check reports the failed step and exits 1
        main()
    assert unusable.value.code == 1 and f"error {synthetic_data.labels_csv}: {expected}" in capsys.readouterr().out


def test_label_with_dollar_signs_explains_as_plain_text(tiny_run, synthetic_data, tmp_path, monkeypatch, capsys):
    artifact = tmp_path / "artifact"
    shutil.copytree(tiny_run.artifact_dir, artifact)
    meta = json.loads((artifact / "tagnet.json").read_text())
    meta["label_names"][0] = "$\\x$"
    (artifact / "tagnet.json").write_text(json.dumps(meta))
    image = str(sorted(synthetic_data.images_dir.iterdir())[0])
    monkeypatch.setattr(sys, "argv", ["tagnet", "explain", str(artifact), image, "--labels", "$\\x$",
                                      "--out", str(tmp_path / "out")])
    with pytest.raises(SystemExit) as done:
        main()
    assert done.value.code == 0 and len(list((tmp_path / "out").glob("*.png"))) == 1


def test_ctrl_c_outside_training_is_one_line(synthetic_data, tmp_path, monkeypatch, capsys):
    def interrupted(path, size):
        raise KeyboardInterrupt

    monkeypatch.setattr(images, "load_image", interrupted)
    err = _one_line_error(monkeypatch, capsys, _train_argv(synthetic_data, tmp_path / "run"), code=130)
    assert err == "error: interrupted"


@pytest.mark.parametrize("setting, value, bound", [("image_size", MAX_IMAGE_SIZE + 1, MAX_IMAGE_SIZE),
                                                   ("batch_size", MAX_BATCH_SIZE + 1, MAX_BATCH_SIZE),
                                                   ("ensemble", MAX_ENSEMBLE + 1, MAX_ENSEMBLE),
                                                   ("top_k", MAX_LABELS + 1, MAX_LABELS)])
def test_settings_that_allocate_are_bounded(tmp_path, monkeypatch, capsys, setting, value, bound):
    err = _one_line_error(monkeypatch, capsys, ["train", str(tmp_path / "absent.csv"), "--set", f"{setting}={value}",
                                                "--out", str(tmp_path / "run")])
    assert err == f"error: config: {setting} is {value}; expected at most {bound}"


def test_serve_and_predict_batch_sizes_are_bounded(tiny_run, monkeypatch, capsys):
    too_big = ["--batch-size", str(MAX_BATCH_SIZE + 1)]
    for argv in (["serve", str(tiny_run.run_dir)], ["predict", str(tiny_run.run_dir), "x.png"],
                 ["explain", str(tiny_run.run_dir), "x.png"]):
        monkeypatch.setattr(sys, "argv", ["tagnet", *argv, *too_big])
        with pytest.raises(SystemExit) as refused:
            main()
        assert refused.value.code == 2 and str(MAX_BATCH_SIZE) in capsys.readouterr().err


def test_too_many_labels_are_refused_when_building_the_model():
    with pytest.raises(ModelError, match=rf"^num_labels is {MAX_LABELS + 1}; expected an integer from 1 to {MAX_LABELS}"):
        create_model("seed_cnn", num_labels=MAX_LABELS + 1, pretrained=False, image_size=32)


def test_artifact_with_a_huge_image_size_is_refused_at_load(tiny_run, tmp_path):
    artifact = tmp_path / "artifact"
    shutil.copytree(tiny_run.artifact_dir, artifact)
    meta = json.loads((artifact / "tagnet.json").read_text())
    meta["input"]["image_size"] = 60000
    (artifact / "tagnet.json").write_text(json.dumps(meta))
    with pytest.raises(ArtifactError, match=rf"preprocess image_size is 60000; expected an integer from 1 to {MAX_IMAGE_SIZE}"):
        load_artifact(artifact)
