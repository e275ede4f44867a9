"""ONNX export: checked graph with metadata and dynamic batch, parity with PyTorch, int8, the predictor on OpenVINO or
ONNX Runtime."""

import shutil
import sys
import warnings

import numpy as np
import onnx
import onnxruntime
import pytest
import torch

from tagnet.inference import runtime
from tagnet.inference.artifact import load_artifact, save_artifact
from tagnet.cli import main
from tagnet.errors import ArtifactError, ConfigError, ModelError
from tagnet.evaluation.evaluate import evaluate
from tagnet.inference.export import PARITY_TOLERANCE, export_onnx, read_onnx_metadata
from tagnet.models import create_model
from tagnet.inference.predictor import Predictor
from tagnet.inference.runtime import RUNTIME_ENV


@pytest.fixture(scope="module")
def exported(tiny_run, synthetic_data, tmp_path_factory):
    """A copy of the tiny run's artifact exported with --quantize and scored on the synthetic labels."""
    folder = tmp_path_factory.mktemp("exported") / "artifact"
    shutil.copytree(tiny_run.artifact_dir, folder)
    report = export_onnx(folder, quantize=True, val_labels=synthetic_data.labels_csv,
                         images_dir=synthetic_data.images_dir)
    return folder, report


def test_export_writes_a_checked_model_with_metadata(exported):
    folder, report = exported
    artifact = load_artifact(folder)
    assert report.onnx_path == folder / "model.onnx" and report.size_bytes == report.onnx_path.stat().st_size
    model = onnx.load(str(report.onnx_path))
    onnx.checker.check_model(model, full_check=True)
    assert [i.name for i in model.graph.input] == ["images"]
    assert [o.name for o in model.graph.output] == ["probabilities"]
    dims = model.graph.input[0].type.tensor_type.shape.dim
    assert dims[0].dim_param and [d.dim_value for d in dims[1:]] == [3, 32, 32]
    meta = read_onnx_metadata(report.onnx_path)
    assert meta["label_names"] == artifact.label_names
    assert meta["thresholds"] == artifact.thresholds.to_dict()
    assert meta["preprocess"] == artifact.preprocess.to_dict()
    assert meta["model"]["name"] == "seed_cnn"
    assert 0 <= report.parity_max_abs_diff < PARITY_TOLERANCE
    assert not list(folder.glob("*.tmp"))


def test_graph_outputs_probabilities_for_any_batch_size(exported):
    folder, report = exported
    artifact = load_artifact(folder)
    session = onnxruntime.InferenceSession(str(report.onnx_path), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(3)
    for batch in (1, 7):
        x = rng.normal(size=(batch, 3, 32, 32)).astype(np.float32)
        got = session.run(["probabilities"], {"images": x})[0]
        with torch.inference_mode():
            expected = torch.sigmoid(artifact.model(torch.from_numpy(x))).numpy()
        assert got.shape == (batch, len(artifact.label_names))
        np.testing.assert_allclose(got, expected, atol=1e-4)
        assert ((got > 0) & (got < 1)).all()


def test_predictor_runs_the_graph_on_onnx_runtime_or_openvino_with_the_same_results(exported, synthetic_data,
                                                                                    monkeypatch):
    monkeypatch.delenv(RUNTIME_ENV, raising=False)
    folder, _ = exported
    paths = sorted(synthetic_data.images_dir.iterdir())[:20]
    on_ort, on_openvino = Predictor(folder, batch_size=8), Predictor(folder, batch_size=8, runtime="openvino")
    on_torch = Predictor(folder, runtime="torch")
    assert (on_ort.runtime, on_openvino.runtime, on_torch.runtime) == ("onnx", "openvino", "torch")
    a, b, c = on_ort.predict_paths(paths), on_openvino.predict_paths(paths), on_torch.predict_paths(paths)
    assert on_openvino.runtime == "openvino"  # batches of 8, 8 and 4: the batch axis is dynamic on every runtime
    np.testing.assert_allclose(b.probs, a.probs, atol=1e-4)
    np.testing.assert_allclose(a.probs, c.probs, atol=1e-4)
    assert [p.labels for p in a] == [p.labels for p in b] == [p.labels for p in c]
    assert np.abs(a.probs - b.probs).max() > 0  # OpenVINO's own numbers, not ONNX Runtime's


def test_the_runtime_environment_variable_names_the_predictors_runtime_under_auto(exported, monkeypatch):
    folder, _ = exported
    for chosen, expected in [("onnxruntime", "onnx"), ("torch", "torch"), ("openvino", "openvino"), ("auto", "onnx")]:
        monkeypatch.setenv(RUNTIME_ENV, chosen)
        assert Predictor(folder).runtime == expected, chosen
        assert Predictor(folder, runtime="onnx").runtime == "onnx"  # a runtime named to the Predictor wins
    monkeypatch.setenv(RUNTIME_ENV, "tensorrt")
    with pytest.raises(ConfigError, match="TAGNET_RUNTIME is 'tensorrt'; expected auto, openvino, onnxruntime or torch"):
        Predictor(folder)
    monkeypatch.delenv(RUNTIME_ENV)
    monkeypatch.setattr(runtime, "installed", lambda package: package != "openvino")  # without the speed extra
    assert Predictor(folder).runtime == "onnx"
    with pytest.raises(ConfigError, match=r"runtime is 'openvino' but openvino is not installed \(pip install"):
        Predictor(folder, runtime="openvino")


def _off(graph, output):
    """A runtime whose answers are wrong (0.5 everywhere, the right shape)."""
    return lambda batch: torch.full((len(batch), 5), 0.5)


def _unloadable(graph, output):
    raise RuntimeError("Exception from src/inference/src/cpp/core.cpp:84:\n-- No conversion rule found for operations: "
                       "ai.onnx.ml.TreeEnsembleRegressor\n")


def test_a_faster_runtime_that_disagrees_or_fails_gives_way_to_onnx_runtime(exported, synthetic_data, monkeypatch):
    monkeypatch.setenv(RUNTIME_ENV, "openvino")  # tried first whatever is installed (runner replaced below)
    monkeypatch.setattr(runtime, "installed", lambda package: True)
    folder, _ = exported
    paths = sorted(synthetic_data.images_dir.iterdir())[:6]
    want = Predictor(folder, runtime="onnx").predict_proba(paths)
    monkeypatch.setitem(runtime.RUNNERS, "openvino", _off)
    predictor = Predictor(folder)
    assert predictor.runtime == "openvino"  # until its first batch
    with pytest.warns(UserWarning, match=r"model.onnx: OpenVINO output differs from ONNX Runtime by 0\.\d+ \(more than "
                                         r"0.0001\); running ONNX Runtime"):
        got = predictor.predict_proba(paths)
    assert predictor.runtime == "onnx"
    np.testing.assert_array_equal(got, want)  # the first batch too is ONNX Runtime's
    monkeypatch.setitem(runtime.RUNNERS, "openvino", _unloadable)
    with pytest.warns(UserWarning, match=r"model.onnx: OpenVINO failed on it \(RuntimeError: -- No conversion rule found "
                                         r"for operations: ai.onnx.ml.TreeEnsembleRegressor\); running ONNX Runtime"):
        predictor = Predictor(folder, runtime="openvino")
    assert predictor.runtime == "onnx"
    np.testing.assert_array_equal(predictor.predict_proba(paths), want)


def test_an_int8_graph_runs_on_onnx_runtime_whose_numbers_it_has(exported, synthetic_data):
    folder, _ = exported
    paths = sorted(synthetic_data.images_dir.iterdir())[:6]
    with pytest.warns(UserWarning, match="model.int8.onnx: OpenVINO not used for a quantised graph .* running ONNX "
                                         "Runtime"):
        predictor = Predictor(folder, runtime="openvino", onnx_file="model.int8.onnx")
    assert predictor.runtime == "onnx"
    np.testing.assert_array_equal(predictor.predict_proba(paths),
                                  Predictor(folder, runtime="onnx", onnx_file="model.int8.onnx").predict_proba(paths))


def test_quantized_model_and_map_change_on_validation_data(exported, synthetic_data):
    folder, report = exported
    assert report.int8_path == folder / "model.int8.onnx"
    assert report.int8_size_bytes < report.size_bytes
    assert read_onnx_metadata(report.int8_path)["quantization"].startswith("int8 dynamic")
    ops = {node.op_type for node in onnx.load(str(report.int8_path)).graph.node}
    assert {"DynamicQuantizeLinear", "ConvInteger"} <= ops
    torch_map = evaluate(Predictor(folder, runtime="torch"), synthetic_data.labels_csv,
                         images_dir=synthetic_data.images_dir)[0].mAP
    int8_map = evaluate(Predictor(folder, runtime="onnx", onnx_file="model.int8.onnx"), synthetic_data.labels_csv,
                        images_dir=synthetic_data.images_dir)[0].mAP
    assert report.val_map["onnx"] == pytest.approx(torch_map, abs=1e-6)
    assert report.val_map["int8"] == pytest.approx(int8_map, abs=1e-9)
    assert report.val_map["change"] == pytest.approx(int8_map - torch_map, abs=1e-6)


def test_stale_onnx_model_is_never_used(exported, tmp_path):
    folder = tmp_path / "artifact"
    shutil.copytree(exported[0], folder)
    old = load_artifact(folder)
    retrained = create_model("seed_cnn", num_labels=len(old.label_names), pretrained=False, image_size=32)
    save_artifact(folder, model=retrained, modality="image", state=retrained.preprocess.to_dict(), label_names=old.label_names, thresholds=old.thresholds, config=old.config,
                  metrics=old.metrics)
    with pytest.raises(ArtifactError, match="exported from other weights.*tagnet export"):
        Predictor(folder, runtime="onnx")
    with pytest.warns(UserWarning, match="using PyTorch"):
        assert Predictor(folder).runtime == "torch"


def test_runtime_errors(tiny_run, tmp_path, monkeypatch):
    with pytest.raises(ConfigError, match="runtime is 'tensorrt'; expected one of auto, torch, onnx, openvino"):
        Predictor(tiny_run.artifact_dir, runtime="tensorrt")
    for name in ("onnx", "openvino"):
        with pytest.raises(ArtifactError, match="model.onnx does not exist; run `tagnet export"):
            Predictor(tiny_run.artifact_dir, runtime=name)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert Predictor(tiny_run.artifact_dir).runtime == "torch"
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not a model")
    with monkeypatch.context() as patched:
        patched.setattr(runtime, "installed", lambda package: package != "onnxruntime")
        with pytest.raises(ConfigError, match="runtime is 'openvino' but onnxruntime is not installed"):
            Predictor(tiny_run.artifact_dir, runtime="openvino", onnx_file=bad)
    with pytest.raises(ArtifactError, match="cannot be loaded by ONNX Runtime"):
        Predictor(tiny_run.artifact_dir, runtime="onnx", onnx_file=bad)


def test_export_refuses_bad_requests_and_failed_parity(tiny_run, tmp_path):
    with pytest.raises(ConfigError, match="export format is 'tflite'; expected one of onnx"):
        export_onnx(tiny_run.artifact_dir, format="tflite")
    with pytest.raises(ConfigError, match="must end in .onnx"):
        export_onnx(tiny_run.artifact_dir, out=tmp_path / "model.bin")
    with pytest.raises(ModelError, match="differ by up to .* Nothing was written"):
        export_onnx(tiny_run.artifact_dir, out=tmp_path / "model.onnx", tolerance=-1.0)
    assert list(tmp_path.iterdir()) == []


def test_cli_export_reports_parity(exported, monkeypatch, capsys, tmp_path):
    out = tmp_path / "elsewhere.onnx"
    monkeypatch.setattr(sys, "argv", ["tagnet", "export", str(exported[0]), "--format", "onnx", "--out", str(out),
                                      "--json", str(tmp_path / "report.json")])
    with pytest.raises(SystemExit) as stop:
        main()
    assert stop.value.code == 0
    printed = " ".join(capsys.readouterr().out.split())
    assert f"wrote {out}" in printed and "onnx.checker passed" in printed and "max |diff|" in printed
    assert out.is_file() and (tmp_path / "report.json").is_file()
    monkeypatch.setattr(sys, "argv", ["tagnet", "export", str(exported[0]), "--format", "coreml"])
    with pytest.raises(SystemExit) as stop:
        main()
    assert stop.value.code == 2 and "error: --format is 'coreml'; expected one of onnx" in capsys.readouterr().err
