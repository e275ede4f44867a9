"""The HTTP API and web page over a Predictor: /predict, /explain, /labels, /health, /metrics and the page at /."""

from __future__ import annotations

import asyncio
import ctypes
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
from pydantic import BaseModel
from starlette.datastructures import UploadFile

import tagnet
from tagnet.config.settings import EXPLAIN_PIXELS, MAX_HEATMAPS, ServeSettings
from tagnet.errors import ConfigError, DataError, ModelError, RequestError
from tagnet.modalities.codecs import HttpBody, RequestCodec
from tagnet.inference.predictor import Predictor
from tagnet.serve.batching import MicroBatcher
from tagnet.serve.oip import add_oip_routes
from tagnet.serve.stats import ServerStats

STATIC_DIR = Path(__file__).parent / "static"
_SERVE = ServeSettings()
MAX_UPLOAD_BYTES = int(_SERVE.max_upload_mb * 1024 * 1024)
MAX_ITEMS = _SERVE.max_items
MAX_PIXELS = _SERVE.max_pixels
BATCH_WINDOW_MS = _SERVE.batch_window_ms


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
    min_labels: int = 0  # label-set rules the answers' labels already follow (tagnet train/calibrate --min-labels...)
    max_labels: int | None = None
    if_empty: str = "none"
    temperatures: list[float] | None = None  # the probabilities returned are calibrated with these (tagnet calibrate)
    image_size: int | None = None  # image models
    modality: str | None = None  # text and tabular models
    paths: list[str] | None = None  # under a label hierarchy: each label's path from its root (vehicle/car/taxi)


class HealthResponse(BaseModel):
    status: str
    model: str
    runtime: str
    labels: int
    version: str


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


async def _read_json(request: Request) -> Any:
    """The parsed JSON body; RequestError 400 when it is not JSON."""
    try:
        return json.loads(await request.body())
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as exc:
        raise RequestError(400, f"request body is not valid JSON ({exc})") from None


async def _http_body(request: Request, codec: RequestCodec, *, max_items: int) -> HttpBody:
    """A POST body as the modality's codec takes it: its files (multipart, any field name) or its parsed JSON;
    RequestError 415 for a content type the codec does not take."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    codec.check_content_type(content_type)
    if content_type == "multipart/form-data":
        async with request.form(max_files=max_items) as form:
            files = [(value.filename, await value.read()) for _, value in form.multi_items() if isinstance(value, UploadFile)]
        return HttpBody(files=files)
    return HttpBody(json=await _read_json(request))


def _explain(files: list[tuple[str, bytes]], labels: list[str] | None, *, predictor: Predictor,
             max_pixels: int) -> dict:
    """Grad-CAM overlays of each uploaded file as PNG data URLs, shaped like the original (longest side = model input).

    Raises HTTPException: 400 for an unknown label, 501 when the model or the installation cannot explain.
    """
    from tagnet.inference.explain import explain_images

    if labels and len(files) * len(labels) > MAX_HEATMAPS:
        raise RequestError(413, f"{len(files)} images x {len(labels)} labels is {len(files) * len(labels)} heatmaps; "
                                f"at most {MAX_HEATMAPS} per request")
    arrays, sizes = predictor.modality.codec.explain_inputs(files, predictor, max_pixels=max_pixels,
                                                            max_total_pixels=EXPLAIN_PIXELS * max_pixels)
    try:
        explanations = explain_images(predictor, arrays, labels=labels, sources=[name for name, _ in files],
                                      max_maps=MAX_HEATMAPS)
    except DataError as exc:
        raise HTTPException(400, str(exc)) from None
    except (ModelError, ConfigError) as exc:
        raise HTTPException(501, str(exc)) from None
    return {"explanations": [e.to_dict(overlay_size=size) for e, size in zip(explanations, sizes)]}


def create_app(predictor: Predictor, *, max_upload_bytes: int = MAX_UPLOAD_BYTES,
               batch_window_ms: float = BATCH_WINDOW_MS, max_items: int = MAX_ITEMS,
               max_pixels: int = MAX_PIXELS) -> FastAPI:
    """The FastAPI app serving `predictor`, for any modality.

    Args:
        predictor: the Predictor (PyTorch or ONNX Runtime) to serve.
        max_upload_bytes: largest request body; larger ones get 413.
        batch_window_ms: how long the batcher waits for more requests after the first one.
        max_items: most images, texts or rows in one request (400 beyond).
        max_pixels: most pixels (width x height) in one image (413 beyond).
    Returns:
        The app: POST /predict (image files or base64 JSON; JSON texts; JSON feature rows), POST /explain (images),
        GET /labels, /health, /metrics, the web page at /, OpenAPI docs at /docs, and the Open Inference Protocol
        v2 routes under /v2 (tagnet.serve.oip).
    """
    stats = ServerStats()
    batcher = MicroBatcher(predictor.predict_proba, max_batch=predictor.batch_size, window_ms=batch_window_ms,
                           on_batch=stats.record_batch)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        batcher.start()
        yield
        await batcher.stop()

    modality, codec = predictor.modality, predictor.modality.codec
    model_name = predictor.artifact.meta["model"]["name"]
    app = FastAPIOffline(title="tagnet", version=tagnet.__version__, lifespan=lifespan,
                         description=f"Multi-label {modality.name} classifier ({model_name}, "
                                     f"labels: {', '.join(predictor.label_names)}).")
    add_common_routes(app, predictor, stats=stats, max_upload_bytes=max_upload_bytes, page=modality.spec.page,
                      labels_extra=codec.labels_info(predictor))

    @app.exception_handler(RequestError)
    async def bad_request(request: Request, exc: RequestError) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=exc.status)

    @app.post("/predict", response_model=PredictResponse, openapi_extra=codec.openapi())
    async def predict(request: Request) -> dict:
        """Labels of one or more inputs: every label's probability and the predicted label set."""
        body = await _http_body(request, codec, max_items=max_items)
        sources, items = await asyncio.to_thread(codec.items, body, predictor, max_items=max_items, max_pixels=max_pixels)
        try:
            probs = await batcher.predict(items)
        except (DataError, ValueError, TypeError) as exc:
            raise RequestError(400, str(exc)) from None
        broken = np.flatnonzero(~np.isfinite(probs).all(axis=1))
        if len(broken):
            raise RequestError(500, f"the model gave non-finite probabilities (NaN or inf) for input "
                                    f"{broken[0] + 1} ({str(sources[broken[0]])[:60]!r}); "
                                    "inputs far outside the training data, or a damaged model, cause this")
        return {"predictions": predictor.results(probs, sources=sources).to_dicts()}

    add_oip_routes(app, predictor, batcher=batcher, max_items=max_items, max_pixels=max_pixels)

    if modality.spec.explainable:
        @app.post("/explain", response_model=ExplainResponse, openapi_extra=codec.openapi())
        async def explain(request: Request, labels: list[str] | None = Query(
                None, description="labels to explain (repeat for several); default each image's predicted labels")) -> dict:
            """Grad-CAM heatmap of each label's logit per image, as RGBA PNG data URLs to lay over the image."""
            files = codec.uploads(await _http_body(request, codec, max_items=max_items), max_items=max_items)
            return await asyncio.to_thread(_explain, files, labels, predictor=predictor, max_pixels=max_pixels)

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
                "top_k": thresholds.top_k, "min_labels": thresholds.min_labels, "max_labels": thresholds.max_labels,
                "if_empty": thresholds.if_empty,
                "temperatures": predictor.calibration.temperatures if predictor.calibration else None,
                "paths": predictor.hierarchy.paths if predictor.hierarchy is not None else None, **labels_extra}

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


def run_server(artifact: str | Path, settings: ServeSettings | None = None) -> None:
    """Serve an artifact with uvicorn until interrupted.

    Args:
        artifact: run folder or artifact folder.
        settings: where to listen, the runtime, batching and the request limits (ServeSettings defaults).
    Raises:
        ConfigError: a bad runtime.
    """
    settings = settings or ServeSettings()
    predictor = Predictor(artifact, batch_size=settings.batch_size, runtime=settings.runtime)
    app = create_app(predictor, max_upload_bytes=int(settings.max_upload_mb * 1024 * 1024),
                     batch_window_ms=settings.batch_window_ms, max_items=settings.max_items, max_pixels=settings.max_pixels)
    host, port = settings.host, settings.port
    keep_memory_flat()
    print(f"serving {predictor.artifact.path} on http://{host}:{port}/ (runtime {predictor.runtime}; API docs at /docs)")
    uvicorn.run(app, host=host, port=port, log_level="info")
