"""HTTP API: /predict (multipart and JSON), /labels, /health, /metrics, the page, limits and error answers."""

import asyncio
import base64
import io
import re
import sys

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from tagnet.cli import main
from tagnet.inference.predictor import Predictor
from tagnet.serve import create_app
from tagnet.serve.batching import MicroBatcher

MAX_BYTES = 200_000
MAX_PIXELS = 100 * 100


@pytest.fixture(scope="module")
def predictor(tiny_run):
    return Predictor(tiny_run.artifact_dir, runtime="torch")


@pytest.fixture(scope="module")
def client(predictor):
    app = create_app(predictor, max_upload_bytes=MAX_BYTES, batch_window_ms=2, max_items=4, max_pixels=MAX_PIXELS)
    with TestClient(app) as test_client:
        yield test_client


@pytest.fixture(scope="module")
def images(synthetic_data):
    """Three of the synthetic PNG files as (name, bytes)."""
    paths = sorted(synthetic_data.images_dir.iterdir())[:3]
    return [(path.name, path.read_bytes()) for path in paths], paths


def encode(array: np.ndarray, kind: str) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, kind)
    return buffer.getvalue()


NOISY_JPEG = encode(np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8), "JPEG")


def files(*items: tuple[str, bytes], content_type: str = "image/png") -> list:
    return [("files", (name, data, content_type)) for name, data in items]


def test_predict_multipart_matches_the_predictor(client, predictor, images):
    uploads, paths = images
    expected = predictor.predict_paths(paths)
    single = client.post("/predict", files=files(uploads[0]))
    assert single.status_code == 200
    several = client.post("/predict", files=files(*uploads))
    assert several.status_code == 200
    got = several.json()["predictions"]
    assert single.json()["predictions"][0]["probabilities"] == pytest.approx(got[0]["probabilities"], abs=1e-6)
    assert [p["source"] for p in got] == [name for name, _ in uploads]
    for answer, want in zip(got, expected):
        assert answer["labels"] == want.labels
        assert answer["probabilities"] == pytest.approx(want.probabilities, abs=1e-6)
        assert list(answer["probabilities"]) == predictor.label_names


def test_predict_json_base64(client, images):
    uploads, _ = images
    (name, data), (name2, data2) = uploads[:2]
    body = {"images": [base64.b64encode(data).decode(),
                       {"name": name2, "data": "data:image/png;base64," + base64.b64encode(data2).decode()}]}
    answer = client.post("/predict", json=body)
    assert answer.status_code == 200
    by_upload = client.post("/predict", files=files(*uploads[:2])).json()["predictions"]
    got = answer.json()["predictions"]
    assert [p["source"] for p in got] == ["image_0", name2]
    for answer, upload in zip(got, by_upload):
        assert answer["probabilities"] == pytest.approx(upload["probabilities"], abs=1e-6)


def test_labels_and_health(client, predictor):
    labels = client.get("/labels").json()
    thresholds = predictor.artifact.thresholds
    assert labels == {"labels": predictor.label_names, "thresholds": pytest.approx(thresholds.values),
                      "threshold_mode": thresholds.mode, "top_k": thresholds.top_k, "min_labels": 0,
                      "if_empty": "none", "image_size": 32}
    health = client.get("/health").json()
    assert health["status"] == "ok" and health["model"] == "seed_cnn" and health["runtime"] == "torch"
    assert health["labels"] == len(predictor.label_names)


@pytest.mark.parametrize("send, status, message", [
    (lambda c, png: c.post("/predict", files=files(("big.png", png + b"\0" * MAX_BYTES))), 413, "over the limit of"),
    (lambda c, png: c.post("/predict", content=iter([b"{" + b" " * 60_000] * 4),
                           headers={"content-type": "application/json"}), 413, "over the limit of"),
    (lambda c, png: c.post("/predict", files=files(("huge.png", encode(np.zeros((101, 100, 3), np.uint8), "PNG")))),
     413, "huge.png: 100x101 is 10100 pixels; expected at most 10000"),
    (lambda c, png: c.post("/predict", files=files(("notes.txt", b"just some text"), content_type="text/plain")),
     415, "notes.txt: not an image"),
    (lambda c, png: c.post("/predict", content=b"abc", headers={"content-type": "text/plain"}), 415,
     "content type 'text/plain'; expected multipart/form-data"),
    (lambda c, png: c.post("/predict", files=files(("cut.png", png[: len(png) // 2]))), 400, "cut.png: corrupt PNG image"),
    (lambda c, png: c.post("/predict", files=files(("cut.jpg", NOISY_JPEG[: len(NOISY_JPEG) // 2]),
                                                   content_type="image/jpeg")), 400, "cut.jpg: corrupt JPEG image"),
    (lambda c, png: c.post("/predict", json={"images": ["%%%"]}), 400, r"images\[0\] \(image_0\) is not valid base64"),
    (lambda c, png: c.post("/predict", json={"images": [3]}), 400, r"images\[0\] is int '3'; expected a base64"),
    (lambda c, png: c.post("/predict", content=b"{nope", headers={"content-type": "application/json"}), 400,
     "not valid JSON"),
    (lambda c, png: c.post("/predict", json={"pictures": []}), 400, 'JSON body needs "images"'),
    (lambda c, png: c.post("/predict", files={"note": (None, "no file")}), 400, "no image in the request"),
    (lambda c, png: c.post("/predict", files=files(*[(f"{k}.png", png) for k in range(5)])), 400, "Too many files"),
    (lambda c, png: c.post("/predict", json={"images": [base64.b64encode(png).decode()] * 5}), 400,
     "5 images in one request; expected at most 4"),
])
def test_bad_requests_get_json_errors_and_the_server_keeps_serving(client, images, send, status, message):
    uploads, _ = images
    answer = send(client, uploads[0][1])
    assert answer.status_code == status
    assert answer.headers["content-type"] == "application/json"
    assert re.search(message, answer.json()["detail"]), answer.json()
    assert client.post("/predict", files=files(uploads[0])).status_code == 200


def test_damaged_files_never_break_the_server(client, images):
    """Truncated and byte-flipped PNG, JPEG, GIF and TIFF files: each gets 200, 400, 413 or 415 with a message."""
    rng = np.random.default_rng(1)
    array = rng.integers(0, 256, (40, 50, 3), dtype=np.uint8)
    statuses = set()
    for kind in ("PNG", "JPEG", "GIF", "TIFF"):
        data = encode(array, kind)
        for trial in range(10):
            if trial % 2:
                damaged = data[: rng.integers(1, len(data))]
            else:
                damaged = bytearray(data)
                for position in rng.integers(0, len(data), 8):
                    damaged[position] = rng.integers(0, 256)
            name = f"damaged.{kind.lower()}"
            answer = client.post("/predict", files=files((name, bytes(damaged))))
            assert answer.status_code in (200, 400, 413, 415)
            if answer.status_code != 200:
                assert answer.json()["detail"].startswith(f"{name}: ")
            statuses.add(answer.status_code)
    assert {400, 415} <= statuses
    assert client.post("/predict", files=files(images[0][0])).status_code == 200


def test_metrics_count_requests_statuses_latencies_and_batches(predictor, images):
    uploads, _ = images
    with TestClient(create_app(predictor, max_upload_bytes=MAX_BYTES)) as client:
        for _ in range(3):
            client.post("/predict", files=files(*uploads))
        client.post("/predict", files=files(("x.txt", b"text")))
        client.get("/health")
        client.get("/nowhere")
        metrics = client.get("/metrics").json()
    assert metrics["requests"] == {"POST /predict": {"200": 3, "415": 1}, "GET /health": {"200": 1},
                                   "unmatched": {"404": 1}}
    latency = metrics["latency_ms"]["POST /predict"]
    assert latency["count"] == 4 and 0 < latency["p50"] <= latency["p90"] <= latency["p99"] <= latency["max"]
    assert metrics["batches"]["images"] == 9 and metrics["batches"]["max_size"] == 3
    assert metrics["uptime_s"] > 0


def test_batcher_joins_jobs_that_arrive_together_and_survives_errors():
    calls = []

    def predict(batch: list) -> np.ndarray:  # the batcher hands over one list of every job's inputs
        calls.append(len(batch))
        rows = np.stack(batch)
        if rows.min() < 0:
            raise ValueError("bad batch")
        return rows[:, :1] * 10.0

    async def scenario():
        sizes = []
        batcher = MicroBatcher(predict, max_batch=4, window_ms=50, on_batch=sizes.append)
        batcher.start()
        jobs = [np.full((n, 1), float(k)) for k, n in enumerate([1, 2, 1, 3], start=1)]
        results = await asyncio.gather(*(batcher.predict(job) for job in jobs))
        with pytest.raises(ValueError, match="bad batch"):
            await batcher.predict(np.full((1, 1), -1.0))
        after = await batcher.predict(np.full((2, 1), 5.0))
        await batcher.stop()
        return results, after, sizes

    results, after, sizes = asyncio.run(scenario())
    assert [r.ravel().tolist() for r in results] == [[10.0], [20.0, 20.0], [30.0], [40.0, 40.0, 40.0]]
    assert calls == [4, 3, 1, 2] and sizes == [4, 3, 2]
    assert after.ravel().tolist() == [50.0, 50.0]


def test_page_and_docs(client):
    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert 'id="file-input"' in page.text and "/static/common.js" in page.text and "/static/app.js" in page.text
    script = client.get("/static/app.js").text
    assert '"/predict"' in script and "explain-slot" in script
    assert '"/labels"' in client.get("/static/common.js").text
    assert client.get("/static/style.css").status_code == 200
    docs = client.get("/docs")
    assert docs.status_code == 200 and "swagger-ui-bundle.js" in docs.text
    assert "http://" not in docs.text and "https://" not in docs.text  # no CDN: the docs work offline
    assert client.get("/static-offline-docs/swagger-ui-bundle.js").status_code == 200
    spec = client.get("/openapi.json").json()
    assert {"/predict", "/labels", "/health", "/metrics"} <= set(spec["paths"])
    body = spec["paths"]["/predict"]["post"]["requestBody"]["content"]
    assert {"multipart/form-data", "application/json"} <= set(body)


def test_cli_serve_reports_a_bad_runtime(tiny_run, monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", ["tagnet", "serve", str(tiny_run.artifact_dir), "--runtime", "gpu"])
    with pytest.raises(SystemExit) as stop:
        main()
    assert stop.value.code == 2 and "error: --runtime is 'gpu'; expected one of auto, torch, onnx" in capsys.readouterr().err


def test_serve_reaches_modalities_only_through_the_codec_protocol():
    """The server knows no modality: what it imports from tagnet.modalities is the request codec protocol."""
    import ast
    from pathlib import Path

    import tagnet.serve

    imported = {(node.module, alias.name) for path in Path(tagnet.serve.__file__).parent.glob("*.py")
                for node in ast.walk(ast.parse(path.read_text())) if isinstance(node, ast.ImportFrom)
                and (node.module or "").startswith("tagnet.modalities") for alias in node.names}
    assert imported == {("tagnet.modalities.codecs", "HttpBody"), ("tagnet.modalities.codecs", "RequestCodec")}
