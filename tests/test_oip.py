"""Open Inference Protocol v2 beside tagnet's API: the real tritonclient against a real server, and JSON REST."""

from __future__ import annotations

import base64
import json
import socket
import threading
import time

import numpy as np
import pytest
import torch
import uvicorn
from fastapi.testclient import TestClient

from tagnet.config.settings import TrainConfig
from tagnet.data.images import load_image, normalize_batch
from tagnet.training.trainer import train
from tagnet.inference.predictor import Predictor
from tagnet.serve import create_app

httpclient = pytest.importorskip("tritonclient.http")
from tritonclient.utils import InferenceServerException  # noqa: E402


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def predictor(tiny_run):
    return Predictor(tiny_run.artifact_dir, runtime="torch")


@pytest.fixture(scope="module")
def server(predictor):
    """A uvicorn server of the tiny image model in a thread: its host:port."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(predictor, batch_window_ms=2, max_items=4), host="127.0.0.1",
                                           port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.started
    yield f"127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=10)


@pytest.fixture(scope="module")
def images(synthetic_data):
    return sorted(synthetic_data.images_dir.iterdir())[:3]


def test_tritonclient_health_and_metadata(server, predictor, tiny_run):
    client = httpclient.InferenceServerClient(server)
    name = tiny_run.run_dir.name  # the run folder's name
    assert client.is_server_live() and client.is_server_ready() and client.is_model_ready(name)
    meta = client.get_model_metadata(name)
    assert meta["name"] == name and meta["platform"] == "tagnet"
    assert meta["inputs"] == [{"name": "images", "datatype": "BYTES", "shape": [-1]},
                              {"name": "pixels", "datatype": "FP32", "shape": [-1, 3, 32, 32]}]
    assert meta["outputs"] == [{"name": "probabilities", "datatype": "FP32", "shape": [-1, len(predictor.label_names)]},
                               {"name": "labels", "datatype": "BYTES", "shape": [-1]}]
    assert meta["parameters"]["labels"] == predictor.label_names
    assert meta["parameters"]["thresholds"] == pytest.approx(predictor.artifact.thresholds.values)
    assert not client.is_model_ready("other")
    with pytest.raises(InferenceServerException, match=f"serves '{name}'"):
        client.get_model_metadata("other")


def test_tritonclient_infers_binary_image_files(server, predictor, tiny_run, images):
    client = httpclient.InferenceServerClient(server)
    expected = predictor.predict_paths(images)
    tensor = httpclient.InferInput("images", [len(images)], "BYTES")
    tensor.set_data_from_numpy(np.array([path.read_bytes() for path in images], dtype=object), binary_data=True)
    result = client.infer(tiny_run.run_dir.name, [tensor])  # outputs come back as binary data
    probs = result.as_numpy("probabilities")
    assert probs.shape == (3, len(predictor.label_names)) and probs.dtype == np.float32
    want = np.array([[p.probabilities[n] for n in predictor.label_names] for p in expected])
    assert probs == pytest.approx(want, abs=1e-5)
    assert [json.loads(v) for v in result.as_numpy("labels")] == [p.labels for p in expected]


def test_tritonclient_infers_normalised_pixels_as_json(server, predictor, tiny_run, images):
    client = httpclient.InferenceServerClient(server)
    pre = predictor.artifact.preprocess
    batch = torch.from_numpy(np.stack([load_image(path, pre.image_size) for path in images])).permute(0, 3, 1, 2)
    pixels = normalize_batch(batch, pre.mean, pre.std).contiguous().numpy()
    tensor = httpclient.InferInput("pixels", list(pixels.shape), "FP32")
    tensor.set_data_from_numpy(pixels, binary_data=False)
    outputs = [httpclient.InferRequestedOutput("probabilities", binary_data=False)]
    probs = client.infer(tiny_run.run_dir.name, [tensor], outputs=outputs).as_numpy("probabilities")
    assert probs == pytest.approx(predictor.predict_proba([load_image(p, pre.image_size) for p in images]), abs=1e-5)
    wrong = httpclient.InferInput("pixels", [1, 3, 16, 16], "FP32")
    wrong.set_data_from_numpy(np.zeros((1, 3, 16, 16), np.float32))
    with pytest.raises(InferenceServerException, match=r"shape \[1, 3, 16, 16\]; expected \[-1, 3, 32, 32\]"):
        client.infer(tiny_run.run_dir.name, [wrong])


def test_json_rest_base64_images_and_errors(predictor, tiny_run, images):
    client = TestClient(create_app(predictor, max_items=2))
    name = tiny_run.run_dir.name
    data = [base64.b64encode(path.read_bytes()).decode() for path in images[:2]]
    body = {"id": "r1", "inputs": [{"name": "images", "datatype": "BYTES", "shape": [2], "data": data}]}
    answer = client.post(f"/v2/models/{name}/infer", json=body)
    assert answer.status_code == 200
    got = answer.json()
    assert got["id"] == "r1" and got["model_name"] == name
    outputs = {o["name"]: o for o in got["outputs"]}
    assert outputs["probabilities"]["shape"] == [2, len(predictor.label_names)]
    expected = predictor.predict_paths(images[:2])
    assert [json.loads(v) for v in outputs["labels"]["data"]] == [p.labels for p in expected]
    body["inputs"][0].update(shape=[3], data=data + data[:1])
    too_many = client.post(f"/v2/models/{name}/infer", json=body)
    assert too_many.status_code == 400 and too_many.json() == {"error": "3 items in one request; expected 1 to 2"}
    body["inputs"][0].update(shape=[1], data=["not base64!"])
    assert client.post(f"/v2/models/{name}/infer", json=body).json()["error"] == "images[0] (image_0) is not valid base64"
    assert client.post("/v2/models/nope/infer", json=body).status_code == 404


@pytest.fixture(scope="module")
def tabular_predictor(tmp_path_factory):
    folder = tmp_path_factory.mktemp("oip_tabular")
    rng = np.random.default_rng(0)
    x = rng.normal(size=(80, 3))
    rows = "\n".join(",".join(f"{v:.5f}" for v in r) + f",{int(r[0] > 0)},{int(r[1] > 0)}" for r in x)
    (folder / "t.arff").write_text("@relation t\n" + "".join(f"@attribute x{j} numeric\n" for j in range(3))
                                   + "@attribute a {0,1}\n@attribute b {0,1}\n@data\n" + rows + "\n")
    config = TrainConfig(epochs=2, batch_size=32, head_hidden=8)
    result = train(folder / "t.arff", modality="tabular", out_dir=folder / "rows_run", config=config, progress=False,
                   read_options={"label_count": 2})
    return Predictor(result.run_dir)


def test_tabular_json_rest(tabular_predictor):
    client = TestClient(create_app(tabular_predictor))
    meta = client.get("/v2/models/rows_run").json()
    assert meta["inputs"] == [{"name": "rows", "datatype": "FP32", "shape": [-1, 3]}]
    assert meta["parameters"]["labels"] == ["a", "b"] and meta["parameters"]["modality"] == "tabular"
    rows = [[1.0, -1.0, 0.0], [None, 2.0, 0.5]]
    body = {"inputs": [{"name": "rows", "datatype": "FP32", "shape": [2, 3], "data": rows}]}
    answer = client.post("/v2/models/rows_run/infer", json=body)
    assert answer.status_code == 200
    outputs = {o["name"]: o for o in answer.json()["outputs"]}
    expected = tabular_predictor.predict(np.array([[1.0, -1.0, 0.0], [np.nan, 2.0, 0.5]]))
    probs = np.array(outputs["probabilities"]["data"]).reshape(2, 2)
    assert probs == pytest.approx(np.array([[p.probabilities[n] for n in ("a", "b")] for p in expected]), abs=1e-6)
    assert [json.loads(v) for v in outputs["labels"]["data"]] == [p.labels for p in expected]
    body["inputs"][0]["datatype"] = "FP64"
    assert client.post("/v2/models/rows_run/infer", json=body).json() == {
        "error": "input 'rows' has datatype 'FP64'; expected FP32"}
    body["inputs"][0].update(datatype="FP32", shape=[1, 3])
    assert client.post("/v2/models/rows_run/infer", json=body).json() == {
        "error": "input 'rows' holds 6 values; its shape [1, 3] needs 3"}
    assert client.get("/v2/health/ready").json() == {"ready": True}


def test_text_bytes_and_mixed_image_batches(predictor, images):
    from tagnet.errors import RequestError
    from tagnet.modalities.codecs import TextCodec
    from tagnet.modalities.specs import TEXT

    texts = np.array(["héllo".encode(), "from JSON"], dtype=object)
    assert TextCodec(TEXT).oip_items("texts", texts, None, max_pixels=0) == (["héllo", "from JSON"], ["héllo", "from JSON"])
    with pytest.raises(RequestError, match=r"texts\[0\] is not UTF-8 text"):
        TextCodec(TEXT).oip_items("texts", np.array([b"\xff"], dtype=object), None, max_pixels=0)
    # the batcher may join file uploads (uint8) and normalised pixels (float32) in one model call
    pre = predictor.artifact.preprocess
    arrays = [load_image(path, pre.image_size) for path in images[:2]]
    pixels = normalize_batch(torch.from_numpy(np.array(arrays[1][None])).permute(0, 3, 1, 2), pre.mean, pre.std)[0]
    mixed = predictor.predict_proba([arrays[0], np.ascontiguousarray(pixels.numpy())])
    assert mixed == pytest.approx(predictor.predict_proba(arrays), abs=1e-5)
