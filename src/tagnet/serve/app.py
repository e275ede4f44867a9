"""The HTTP API and web page over a Predictor: /predict, /explain, /labels, /health, /metrics and the page at /."""

from __future__ import annotations

import asyncio
import base64
import binascii
import ctypes
import io
import json
import time
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import numpy as np
import uvicorn
from fastapi import FastAPI, HTTPException, Query, Request
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from fastapi_offline import FastAPIOffline  # Swagger UI and ReDoc served from the package: /docs works offline
from PIL import Image, UnidentifiedImageError
from pydantic import BaseModel
from starlette.datastructures import UploadFile

import tagnet
from tagnet.errors import ConfigError, DataError, ModelError
from tagnet.predict import Predictor, load_predictor
from tagnet.serve.batching import MicroBatcher
from tagnet.serve.stats import ServerStats

STATIC_DIR = Path(__file__).parent / "static"
MAX_UPLOAD_BYTES = 20 * 1024 * 1024
MAX_IMAGES = 64
MAX_PIXELS = 40_000_000
BATCH_WINDOW_MS = 5.0
CORRUPT_IMAGE_ERRORS = (OSError, ValueError, SyntaxError, EOFError)  # what Pillow raises for damaged files


class PredictionOut(BaseModel):
    source: str
    labels: list[str]
    probabilities: dict[str, float]


class PredictResponse(BaseModel):
    predictions: list[PredictionOut]


class ExplanationOut(BaseModel):
    source: str
    labels: list[str]
    probabilities: dict[str, float]
    heatmaps: dict[str, str]


class ExplainResponse(BaseModel):
    explanations: list[ExplanationOut]


class LabelsResponse(BaseModel):
    labels: list[str]
    thresholds: list[float]
    threshold_mode: str
    top_k: int
    image_size: int | None = None  # image models
    modality: str | None = None  # text and tabular models


class HealthResponse(BaseModel):
    status: str
    model: str
    runtime: str
    labels: int
    version: str


PREDICT_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {"schema": {
                "type": "object", "required": ["files"],
                "properties": {"files": {"type": "array", "items": {"type": "string", "format": "binary"},
                                         "description": "one or more image files (any field name is accepted)"}}}},
            "application/json": {"schema": {
                "type": "object", "required": ["images"],
                "properties": {"images": {"type": "array", "description": "base64 strings or data: URLs, or "
                                          "objects {name, data} with data as base64",
                                          "items": {"oneOf": [{"type": "string"}, {
                                              "type": "object", "required": ["data"],
                                              "properties": {"name": {"type": "string"}, "data": {"type": "string"}}}]}}}}},
        },
    },
    "responses": {
        "400": {"description": "corrupt image, bad JSON or base64, or no image in the request"},
        "413": {"description": "request body or image dimensions over the limit"},
        "415": {"description": "a file that is not an image, or a body that is neither multipart nor JSON"},
    },
}


class BodyTooLarge(Exception):
    """The request body grew past the server's limit while being read."""


def too_large(max_bytes: int) -> JSONResponse:
    """The 413 answer to a request body over `max_bytes`."""
    return JSONResponse({"detail": f"request body is over the limit of {max_bytes} bytes; send fewer or smaller "
                                   "inputs"}, status_code=413)


class _LimitAndMeasure:
    """ASGI middleware: a body declared over `max_bytes` is answered 413 before the app sees it; one that grows
    past it while read raises BodyTooLarge (answered 413 by the app's handler); each request is recorded in
    `stats` under its route ("POST /predict")."""

    def __init__(self, app, *, stats: ServerStats, max_bytes: int) -> None:
        self.app, self.stats, self.max_bytes = app, stats, max_bytes

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started, status, received = time.perf_counter(), 500, 0
        declared = dict(scope["headers"]).get(b"content-length", b"0")

        async def send_recording_status(message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        async def receive_limited():
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > self.max_bytes:
                raise BodyTooLarge()
            return message

        try:
            if declared.isdigit() and int(declared) > self.max_bytes:
                await too_large(self.max_bytes)(scope, receive, send_recording_status)
            else:
                await self.app(scope, receive_limited, send_recording_status)
        finally:
            route = scope.get("route")
            endpoint = f"{scope['method']} {route.path}" if route is not None else "unmatched"
            self.stats.record_request(endpoint, status, time.perf_counter() - started)


def _decode(name: str, data: bytes, *, predictor: Predictor, max_pixels: int) -> tuple[np.ndarray, tuple[int, int]]:
    """Image bytes -> (uint8 (size, size, 3) as the Predictor prepares files, the image's own (width, height)).

    Raises HTTPException: 415 when no image format is recognised, 413 over `max_pixels`, 400 when a
    recognised image cannot be decoded (truncated or damaged).
    """
    try:
        image = Image.open(io.BytesIO(data))
    except UnidentifiedImageError:
        raise HTTPException(415, f"{name}: not an image; expected a JPEG, PNG, GIF, BMP, TIFF or WebP file") from None
    except Image.DecompressionBombError as exc:
        raise HTTPException(413, f"{name}: {exc}") from None
    except CORRUPT_IMAGE_ERRORS as exc:
        raise HTTPException(400, f"{name}: corrupt image ({exc})") from None
    with image:
        width, height = image.size
        if width * height > max_pixels:
            raise HTTPException(413, f"{name}: {width}x{height} is {width * height} pixels; expected at most {max_pixels}")
        try:
            image.draft("RGB", (predictor.image_size, predictor.image_size))
            return predictor.prepare(image), (width, height)
        except CORRUPT_IMAGE_ERRORS as exc:
            raise HTTPException(400, f"{name}: corrupt {image.format} image ({exc})") from None


def _from_base64(index: int, item: Any) -> tuple[str, bytes]:
    """One item of a JSON body's "images" -> (name, bytes)."""
    name, text = f"image_{index}", item
    if isinstance(item, dict):
        name, text = str(item.get("name", name)), item.get("data")
    if not isinstance(text, str):
        raise HTTPException(400, f"images[{index}] is {type(item).__name__} {str(item)[:60]!r}; expected a base64 "
                                 "string, a data: URL or an object {name, data}")
    if text.startswith("data:"):
        text = text.partition(",")[2]
    try:
        return name, base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise HTTPException(400, f"images[{index}] ({name}) is not valid base64") from None


async def _read_uploads(request: Request, *, max_images: int) -> list[tuple[str, bytes]]:
    """(name, bytes) of every image in a multipart or JSON request."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type == "multipart/form-data":
        async with request.form(max_files=max_images) as form:
            files = [value for _, value in form.multi_items() if isinstance(value, UploadFile)]
            uploads = [(upload.filename or f"image_{i}", await upload.read()) for i, upload in enumerate(files)]
    elif content_type == "application/json":
        try:
            body = json.loads(await request.body())
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise HTTPException(400, f"request body is not valid JSON ({exc})") from None
        items = body.get("images") if isinstance(body, dict) else None
        if not isinstance(items, list):
            raise HTTPException(400, 'JSON body needs "images": a list of base64 strings or {name, data} objects')
        if len(items) > max_images:
            raise HTTPException(400, f"{len(items)} images in one request; expected at most {max_images}")
        uploads = [_from_base64(i, item) for i, item in enumerate(items)]
    else:
        raise HTTPException(415, f"content type {content_type or 'none'!r}; expected multipart/form-data "
                                 "(image files) or application/json (base64 images)")
    if not uploads:
        raise HTTPException(400, "no image in the request; expected multipart file field(s) 'files' or JSON 'images'")
    return uploads


def _explain(uploads: list[tuple[str, bytes]], labels: list[str] | None, *, predictor: Predictor, max_pixels: int) -> dict:
    """Grad-CAM overlays of each upload as PNG data URLs, shaped like the original image (longest side = model input).

    Raises HTTPException: 400 for an unknown label, 501 when the model or the installation cannot explain.
    """
    from tagnet.explain import explain_images

    arrays, sizes = [], []
    for name, data in uploads:
        array, size = _decode(name, data, predictor=predictor, max_pixels=max_pixels)
        arrays.append(array)
        scale = predictor.image_size / max(size)
        sizes.append(tuple(max(1, round(side * scale)) for side in size))
    try:
        explanations = explain_images(predictor, arrays, labels=labels, sources=[name for name, _ in uploads])
    except DataError as exc:
        raise HTTPException(400, str(exc)) from None
    except (ModelError, ConfigError) as exc:
        raise HTTPException(501, str(exc)) from None
    return {"explanations": [e.to_dict(overlay_size=size) for e, size in zip(explanations, sizes)]}


def create_app(predictor: Predictor, *, max_upload_bytes: int = MAX_UPLOAD_BYTES,
               batch_window_ms: float = BATCH_WINDOW_MS, max_images: int = MAX_IMAGES,
               max_pixels: int = MAX_PIXELS) -> FastAPI:
    """The FastAPI app serving `predictor`.

    Args:
        predictor: the image Predictor (PyTorch or ONNX Runtime) to serve.
        max_upload_bytes: largest request body; larger ones get 413.
        batch_window_ms: how long the batcher waits for more requests after the first one.
        max_images: most images in one request (400 beyond).
        max_pixels: most pixels (width x height) in one image (413 beyond).
    Returns:
        The app: POST /predict, POST /explain, GET /labels, /health, /metrics, the web page at /, OpenAPI docs at /docs.
    """
    stats = ServerStats()
    batcher = MicroBatcher(predictor.predict_proba, max_batch=predictor.batch_size, window_ms=batch_window_ms,
                           on_batch=stats.record_batch)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        batcher.start()
        yield
        await batcher.stop()

    model_name = predictor.artifact.meta["model"]["name"]
    app = FastAPIOffline(title="tagnet", version=tagnet.__version__, lifespan=lifespan,
                  description=f"Multi-label image classifier ({model_name}, labels: {', '.join(predictor.label_names)}).")
    add_common_routes(app, predictor, stats=stats, max_upload_bytes=max_upload_bytes, page="index.html",
                      labels_extra={"image_size": predictor.image_size})

    @app.post("/predict", response_model=PredictResponse, openapi_extra=PREDICT_BODY)
    async def predict(request: Request) -> dict:
        """Labels of one or more images: every label's probability and the predicted label set."""
        uploads = await _read_uploads(request, max_images=max_images)
        arrays = await asyncio.to_thread(
            lambda: np.stack([_decode(name, data, predictor=predictor, max_pixels=max_pixels)[0] for name, data in uploads]))
        probs = await batcher.predict(arrays)
        return {"predictions": predictor.results(probs, sources=[name for name, _ in uploads]).to_dicts()}

    @app.post("/explain", response_model=ExplainResponse, openapi_extra=PREDICT_BODY)
    async def explain(request: Request, labels: list[str] | None = Query(
            None, description="labels to explain (repeat for several); default each image's predicted labels")) -> dict:
        """Grad-CAM heatmap of each label's logit per image, as RGBA PNG data URLs to lay over the image."""
        uploads = await _read_uploads(request, max_images=max_images)
        return await asyncio.to_thread(_explain, uploads, labels, predictor=predictor, max_pixels=max_pixels)

    return app


def add_common_routes(app: FastAPI, predictor, *, stats: ServerStats, max_upload_bytes: int, page: str,
                      labels_extra: dict[str, Any]) -> None:
    """What every tagnet server has: the body-size limit (413) and request statistics (middleware), the
    static files, the web page `page` at /, GET /labels (with `labels_extra`), /health and /metrics."""
    app.add_middleware(_LimitAndMeasure, stats=stats, max_bytes=max_upload_bytes)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")

    @app.exception_handler(BodyTooLarge)
    async def body_too_large(request: Request, exc: BodyTooLarge) -> JSONResponse:
        return too_large(max_upload_bytes)

    @app.get("/", include_in_schema=False)
    async def web_page() -> FileResponse:
        return FileResponse(STATIC_DIR / page)

    @app.get("/labels", response_model=LabelsResponse, response_model_exclude_none=True)
    async def labels() -> dict:
        """The model's labels with their decision thresholds, and the input image size (or the modality)."""
        thresholds = predictor.artifact.thresholds
        return {"labels": predictor.label_names, "thresholds": thresholds.values, "threshold_mode": thresholds.mode,
                "top_k": thresholds.top_k, **labels_extra}

    @app.get("/health", response_model=HealthResponse)
    async def health() -> dict:
        """Liveness: the model served and the runtime it runs on."""
        return {"status": "ok", "model": predictor.artifact.meta["model"]["name"], "runtime": predictor.runtime,
                "labels": len(predictor.label_names), "version": tagnet.__version__}

    @app.get("/metrics")
    async def metrics() -> dict:
        """Request counts per endpoint and status, latency percentiles (ms) and model batch sizes."""
        return stats.snapshot()


def keep_memory_flat() -> None:
    """On glibc, stop malloc from raising its trim/mmap thresholds as it goes (its default), so that memory
    freed after each batch goes back to the OS: under load the server's resident memory then stays flat
    instead of creeping up by fragmentation (measured in benchmarks/RESULTS.md). No-op elsewhere."""
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return
    m_trim_threshold = -1  # from glibc's malloc.h; setting it also turns off the dynamic thresholds
    libc.mallopt(m_trim_threshold, 128 * 1024)


def run_server(artifact: str | Path, *, host: str = "127.0.0.1", port: int = 8000, runtime: str = "auto",
               batch_size: int = 32, **app_options: Any) -> None:
    """Serve an artifact with uvicorn until interrupted (images: create_app; text/tabular: create_vector_app).

    Args:
        artifact: run folder or artifact folder.
        host, port: where to listen (default loopback only).
        runtime, batch_size: passed to Predictor ("auto" uses ONNX Runtime when model.onnx is there).
        app_options: create_app's limits (max_upload_bytes, batch_window_ms, max_images, max_pixels).
    Raises:
        ConfigError: a bad runtime.
    """
    predictor = load_predictor(artifact, batch_size=batch_size, runtime=runtime)
    if isinstance(predictor, Predictor):
        app = create_app(predictor, **app_options)
    else:  # text and tabular models: JSON in, a page with a text box
        from tagnet.serve.vectors import create_vector_app

        app = create_vector_app(predictor, max_upload_bytes=app_options.get("max_upload_bytes", MAX_UPLOAD_BYTES))
    keep_memory_flat()
    print(f"serving {predictor.artifact.path} on http://{host}:{port}/ (API docs at /docs)")
    uvicorn.run(app, host=host, port=port, log_level="info")
