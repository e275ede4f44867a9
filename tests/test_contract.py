"""One contract for every modality (like scikit-learn's check_estimator): train -> predict -> evaluate -> serve ->
export -> resume, through the Python API and the CLI, with the same calls for images, texts and feature rows."""

from __future__ import annotations

import base64
import dataclasses
import io
import json
import shutil
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image
from typer.testing import CliRunner

import tagnet
from tagnet import modalities
from tagnet.cli import app
from tagnet.config.settings import TrainConfig, parse_duration
from tagnet.config.source import DataSource
from tagnet.errors import ConfigError
from tagnet.inference.runtime import RUNTIME_ENV
from tagnet.modalities.codecs import RequestCodec
from tagnet.modalities.onnx_specs import OnnxSpec
from tagnet.serve.app import STATIC_DIR

runner = CliRunner()
WORDS = {"food": ["pizza", "pasta", "bread", "cheese"], "sport": ["goal", "match", "tennis", "marathon"],
         "rain": ["rain", "storm", "fog", "snow"]}


@dataclass
class Case:
    """A modality's tiny data set and how a user names its inputs."""

    labels: Path
    train_kwargs: dict  # tagnet.train keyword arguments besides out_dir and config
    cli_args: list[str]  # the same for `tagnet train`
    eval_args: list[str]  # and for `tagnet evaluate` (texts are read as the model was trained)
    items: list  # inputs for Predictor.predict
    body: dict  # a JSON body for POST /predict
    files: list[str]  # inputs for `tagnet predict`
    config: TrainConfig


def _image_case(folder: Path, synthetic) -> Case:
    png = io.BytesIO()
    Image.open(synthetic.images_dir / synthetic.table.items[0]).save(png, format="PNG")
    paths = [str(synthetic.images_dir / item) for item in synthetic.table.items[:3]]
    return Case(synthetic.labels_csv, {"images_dir": synthetic.images_dir}, ["--images", str(synthetic.images_dir)],
                ["--images", str(synthetic.images_dir)], paths, {"images": [base64.b64encode(png.getvalue()).decode()]}, paths,
                TrainConfig(backbone="seed_cnn", pretrained=False, image_size=32, epochs=2, batch_size=16))


def _text_case(folder: Path, synthetic) -> Case:
    rng = np.random.default_rng(0)
    lines = ["text,labels"]
    for k in range(40):
        names = [list(WORDS)[k % 3]] + ([list(WORDS)[(k + 1) % 3]] if k % 4 == 0 else [])
        lines.append(" and ".join(f"the {rng.choice(WORDS[n])}" for n in names) + "," + " ".join(names))
    labels = folder / "texts.csv"
    labels.write_text("\n".join(lines) + "\n")
    texts = folder / "new.txt"
    texts.write_text("fresh bread\nthe storm\n")
    return Case(labels, {"text_column": "text"}, ["--text-column", "text"], [], ["fresh bread", "a late goal"],
                {"texts": ["fresh bread"]}, [str(texts)], TrainConfig(epochs=2, batch_size=16))


def _tabular_case(folder: Path, synthetic) -> Case:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(80, 3))
    rows = [f"{a:.4f},{b:.4f},{c:.4f},{int(a > 0)},{int(b > 0)}" for a, b, c in x]
    labels = folder / "table-train.arff"
    labels.write_text("@relation 'table: -C -2'\n" + "".join(f"@attribute x{j} numeric\n" for j in range(3))
                      + "@attribute up {0,1}\n@attribute right {0,1}\n@data\n" + "\n".join(rows) + "\n")
    return Case(labels, {}, [], [], [list(r) for r in x[:3]], {"rows": x[:2].tolist()}, [str(labels)],
                TrainConfig(epochs=2, batch_size=16, lr=2e-2))


CASES = {"image": _image_case, "text": _text_case, "tabular": _tabular_case}  # (folder, synthetic data) -> Case


def test_every_registered_modality_has_a_case():
    assert sorted(CASES) == sorted(modalities.REGISTRY)


@pytest.fixture(scope="module", params=list(modalities.REGISTRY))
def case(request, tmp_path_factory, synthetic_data) -> tuple[str, Case, Path]:
    """Each registered modality's data, trained once through the Python API."""
    folder = tmp_path_factory.mktemp(request.param)
    made = CASES[request.param](folder, synthetic_data)
    result = tagnet.train(made.labels, out_dir=folder / "run", config=made.config, progress=False, **made.train_kwargs)
    assert tagnet.load_artifact(result.run_dir).modality == request.param
    return request.param, made, result.run_dir


@pytest.mark.parametrize("name", list(modalities.REGISTRY))
def test_each_modality_declares_its_facts_once_and_holds_its_roles(name):
    spec = modalities.spec(name)
    kind = modalities.get(name)
    assert kind.spec is spec and kind.name == spec.name == name
    assert isinstance(kind.codec, RequestCodec) and kind.codec.spec is spec and isinstance(kind.onnx, OnnxSpec)
    settings = {field.name for field in dataclasses.fields(TrainConfig)}
    assert set(spec.defaults) <= settings and set(spec.refuses) <= settings and not set(spec.defaults) & set(spec.refuses)
    resolved = TrainConfig().for_modality(name)
    assert {key: getattr(resolved, key) for key in spec.defaults} == dict(spec.defaults)
    for setting, (low, high, log) in spec.search.ranges.items():
        assert setting in settings and 0 <= low < high and (low > 0 or not log), setting
    assert spec.search.head_widths and all(isinstance(w, int) and w >= 0 for w in spec.search.head_widths)
    assert (STATIC_DIR / spec.page).is_file()
    assert spec.default_time_budget is None or parse_duration(spec.default_time_budget) > 0
    with pytest.raises(ConfigError, match=r"modality 'video' is not one of \['image', 'text', 'tabular'\]"):
        modalities.get("video")


def test_frozen_encoders_follow_the_declared_exceptions():
    image, text = modalities.get("image"), modalities.get("text")
    assert image.frozen(TrainConfig(backbone="efficientnet_lite0"))
    assert not image.frozen(TrainConfig(backbone="seed_cnn"))  # ModalitySpec.scratch_backbones
    assert not image.frozen(TrainConfig(backbone="efficientnet_lite0", pretrained=False))  # frozen_needs_pretrained
    assert text.frozen(TrainConfig(backbone="minilm_l6", pretrained=False))


def test_predict_evaluate_through_the_api(case):
    name, made, run = case
    predictor = tagnet.Predictor(run, runtime="torch")
    assert predictor.modality.name == name
    results = predictor.predict(made.items)
    assert len(results) == len(made.items) and not results.errors
    probs = predictor.predict_proba(made.items)
    for row, prediction in zip(probs, results.to_dicts()):
        assert [prediction["probabilities"][label] for label in predictor.label_names] == pytest.approx(row.tolist())
    report, skipped = tagnet.evaluate(predictor, made.labels, images_dir=made.train_kwargs.get("images_dir"))
    assert skipped == {} and 0.0 <= report.mAP <= 1.0
    source = DataSource(made.labels, images_dir=made.train_kwargs.get("images_dir"))
    table = predictor.modality.read(source, state=predictor.artifact.state, label_names=predictor.label_names).table
    assert [row["support"] for row in report.per_label] == (table.targets * table.known).sum(axis=0).tolist()


def test_server_batches_and_answers_like_the_predictor(case):
    name, made, run = case
    predictor = tagnet.Predictor(run, runtime="torch")
    with TestClient(tagnet.create_app(predictor, batch_window_ms=1)) as client:
        answer = client.post("/predict", json=made.body)
        assert answer.status_code == 200, answer.text
        got = answer.json()["predictions"]
        assert len(got) == len(next(iter(made.body.values())))
        assert client.get("/labels").json()["labels"] == predictor.label_names
        assert client.get("/health").json()["runtime"] == "torch"
        assert client.get("/metrics").json()["batches"]["images"] == len(got)  # micro-batching for every modality
        assert client.post("/predict", content=b"{", headers={"content-type": "application/json"}).status_code == 400


def test_export_gives_the_same_probabilities_on_onnx_runtime_and_openvino(case, tmp_path, monkeypatch):
    name, made, run = case
    monkeypatch.delenv(RUNTIME_ENV, raising=False)
    artifact = Path(shutil.copytree(run / "artifact", tmp_path / "artifact"))
    report = tagnet.export_onnx(artifact)
    assert report.parity_max_abs_diff <= 1e-4
    forest = tagnet.load_artifact(artifact).meta["model"].get("head") == "forest"  # the table's choice here
    with warnings.catch_warnings(record=True) as said:
        warnings.simplefilter("always")
        on_openvino = tagnet.Predictor(artifact, runtime="openvino")
    on_onnx, on_torch = tagnet.Predictor(artifact), tagnet.Predictor(artifact, runtime="torch")
    assert on_onnx.runtime == "onnx"
    probs = on_onnx.predict_proba(made.items)
    np.testing.assert_allclose(on_openvino.predict_proba(made.items), probs, atol=1e-4)
    np.testing.assert_allclose(probs, on_torch.predict_proba(made.items), atol=1e-4)
    assert on_openvino.runtime == ("onnx" if forest else "openvino")  # OpenVINO has no ONNX-ML trees: said once
    assert [str(w.message) for w in said if "OpenVINO" in str(w.message)] == [
        "model.onnx: OpenVINO failed on it (RuntimeError: -- No conversion rule found for operations: "
        "ai.onnx.ml.TreeEnsembleRegressor); running ONNX Runtime"] * forest


def test_resume_of_a_finished_run_gives_the_same_report(case):
    name, made, run = case
    before = json.loads((run / "metrics.json").read_text())["validation"]["mAP"]
    result = tagnet.resume_training(run, progress=False)
    assert result.report.mAP == pytest.approx(before)


def test_cli_train_predict_evaluate(case, tmp_path):
    name, made, run = case
    overrides = [arg for key, value in made.config.to_dict().items()
                 if value is not None and value != getattr(TrainConfig(), key) for arg in ("--set", f"{key}={value}")]
    done = runner.invoke(app, ["train", str(made.labels), *made.cli_args, "--out", str(tmp_path / "run"), *overrides])
    assert done.exit_code == 0, done.output
    assert json.loads((tmp_path / "run" / "run.json").read_text())["modality"] == name
    out = tmp_path / "p.json"
    done = runner.invoke(app, ["predict", str(tmp_path / "run"), *made.files, "--output", str(out)])
    assert done.exit_code == 0, done.output
    assert len(json.loads(out.read_text())["predictions"]) >= 2
    report = tmp_path / "m.json"
    done = runner.invoke(app, ["evaluate", str(tmp_path / "run"), str(made.labels), *made.eval_args, "--json", str(report)])
    assert done.exit_code == 0, done.output
    assert "mAP" in json.loads(report.read_text())


def test_train_and_evaluate_find_a_voc_sets_images_as_data_check_does(tmp_path, synthetic_data):
    from tagnet.data.check import check_dataset

    root = tmp_path / "VOC"
    (root / "Annotations").mkdir(parents=True)
    (root / "JPEGImages").mkdir()
    table = synthetic_data.table
    for item, labels in zip(table.items[:40], table.label_sets()[:40]):
        shutil.copy(synthetic_data.images_dir / item, root / "JPEGImages" / item)
        objects = "".join(f"<object><name>{name}</name></object>" for name in labels or ["circle"])
        (root / "Annotations" / f"{Path(item).stem}.xml").write_text(
            f"<annotation><filename>{item}</filename>{objects}</annotation>")
    assert check_dataset(root).images_checked == 40  # no --images: JPEGImages beside Annotations
    config = TrainConfig(backbone="seed_cnn", pretrained=False, image_size=32, epochs=1, batch_size=16)
    result = tagnet.train(root, out_dir=tmp_path / "run", config=config, progress=False)
    assert result.skipped == {}
    report, skipped = tagnet.evaluate(result.run_dir, root)
    assert skipped == {} and sum(row["support"] for row in report.per_label) > 0
