"""Open Inference Protocol v2 (KServe / Triton REST) routes over the same Predictor and MicroBatcher as /predict."""

from __future__ import annotations

import asyncio
import json
import math
import struct
from typing import Any

import numpy as np
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

import tagnet
from tagnet.inference.artifact import RUN_SUBDIR
from tagnet.errors import DataError, RequestError
from tagnet.inference.predictor import Predictor
from tagnet.serve.batching import MicroBatcher

PLATFORM = "tagnet"
HEADER_LENGTH = "inference-header-content-length"  # the binary tensor data extension's header
NUMERIC = {"FP32": np.dtype("<f4")}


def model_name(predictor: Predictor) -> str:
    """The served model's name: its run folder's name (the artifact folder's own for a bare artifact)."""
    path = predictor.artifact.path.resolve()
    return path.parent.name if path.name == RUN_SUBDIR else path.name


def output_specs(predictor: Predictor) -> list[dict[str, Any]]:
    """probabilities FP32 (N, labels) and labels BYTES (N,): each item's predicted label set as a JSON array."""
    return [{"name": "probabilities", "datatype": "FP32", "shape": [-1, len(predictor.label_names)]},
            {"name": "labels", "datatype": "BYTES", "shape": [-1]}]


def _deserialize_bytes(data: bytes, *, name: str) -> list[bytes]:
    """Binary BYTES tensor data (each element a little-endian uint32 length, then its bytes) -> the elements."""
    items, offset = [], 0
    while offset < len(data):
        if offset + 4 > len(data):
            raise RequestError(400, f"input {name!r}: binary BYTES data ends inside an element's 4-byte length")
        (size,) = struct.unpack_from("<I", data, offset)
        offset += 4
        if offset + size > len(data):
            raise RequestError(400, f"input {name!r}: a binary BYTES element of {size} bytes runs past the data")
        items.append(data[offset:offset + size])
        offset += size
    return items


def _serialize_bytes(items: list[bytes]) -> bytes:
    return b"".join(struct.pack("<I", len(item)) + item for item in items)


def _tensor(spec: dict[str, Any], given: dict[str, Any], raw: bytes | None) -> np.ndarray:
    """The array of one request input (`raw`: its binary data, else its JSON "data"), checked against `spec`."""
    name, shape = spec["name"], given.get("shape")
    if given.get("datatype") != spec["datatype"]:
        raise RequestError(400, f"input {name!r} has datatype {given.get('datatype')!r}; expected {spec['datatype']}")
    if not (isinstance(shape, list) and all(isinstance(n, int) and n >= 0 for n in shape) and len(shape) == len(spec["shape"])
            and all(want in (-1, n) for want, n in zip(spec["shape"], shape))):
        raise RequestError(400, f"input {name!r} has shape {shape!r}; expected {spec['shape']} (-1 = any)")
    count = math.prod(shape)
    if spec["datatype"] == "BYTES":
        values = _deserialize_bytes(raw, name=name) if raw is not None else given.get("data")
        if raw is None:
            values = np.asarray(values, dtype=object).reshape(-1).tolist() if isinstance(values, list) else None
            if values is None or not all(isinstance(v, str) for v in values):
                raise RequestError(400, f"input {name!r}: JSON data must be a list of strings")
        array = np.empty(len(values), dtype=object)
        array[:] = values
    elif raw is not None:
        if len(raw) % NUMERIC[spec["datatype"]].itemsize:
            raise RequestError(400, f"input {name!r}: {len(raw)} bytes of binary data is not a whole number of "
                                    f"{spec['datatype']} values")
        array = np.frombuffer(raw, dtype=NUMERIC[spec["datatype"]])
    else:
        try:
            array = np.asarray(given.get("data"), dtype=NUMERIC[spec["datatype"]]).reshape(-1)
        except (TypeError, ValueError):
            raise RequestError(400, f"input {name!r}: JSON data must be a (flat or nested) list of numbers, null "
                                    "for a missing value") from None
    if array.size != count:
        raise RequestError(400, f"input {name!r} holds {array.size} values; its shape {shape} needs {count}")
    return array.reshape(shape)


def _split_body(body: bytes, header_length: str | None) -> tuple[dict[str, Any], bytes]:
    """(the JSON inference header, the binary data after it) of a request body."""
    end = len(body)
    if header_length is not None:
        if not header_length.isdigit() or int(header_length) > len(body):
            raise RequestError(400, f"Inference-Header-Content-Length is {header_length!r}; expected the byte length "
                                    f"of the JSON header, at most the body's {len(body)}")
        end = int(header_length)
    try:
        header = json.loads(body[:end])
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as exc:
        raise RequestError(400, f"inference request is not valid JSON ({exc})") from None
    if not isinstance(header, dict):
        raise RequestError(400, "inference request must be a JSON object with \"inputs\"")
    return header, body[end:]


def _request_input(header: dict[str, Any], binary: bytes, specs: list[dict[str, Any]]) -> tuple[str, np.ndarray]:
    """(name, array) of the request's one input tensor."""
    inputs = header.get("inputs")
    wanted = " or ".join(f"{s['name']} ({s['datatype']} {s['shape']})" for s in specs)
    if not isinstance(inputs, list) or len(inputs) != 1 or not isinstance(inputs[0], dict):
        raise RequestError(400, f"inference request needs \"inputs\" with exactly one tensor: {wanted}")
    given = inputs[0]
    spec = next((s for s in specs if s["name"] == given.get("name")), None)
    if spec is None:
        raise RequestError(400, f"input {given.get('name')!r} is not an input of this model; expected {wanted}")
    size = (given.get("parameters") or {}).get("binary_data_size")
    if size is not None and (not isinstance(size, int) or size < 0 or size > len(binary)):
        raise RequestError(400, f"input {spec['name']!r}: binary_data_size {size!r}; expected at most the "
                                f"{len(binary)} bytes after the JSON header")
    return spec["name"], _tensor(spec, given, None if size is None else binary[:size])


def _response(header: dict[str, Any], name: str, results, probs: np.ndarray) -> Response:
    """The inference response, outputs as binary data where the request asked for it."""
    label_sets = [json.dumps(p.labels).encode("utf-8") for p in results.predictions]
    tensors = {"probabilities": ("FP32", [len(probs), probs.shape[1]], np.asarray(probs, "<f4")),
               "labels": ("BYTES", [len(label_sets)], label_sets)}
    asked = header.get("outputs")
    if asked is None:
        asked = [{"name": key} for key in tensors]
    if not isinstance(asked, list) or not all(isinstance(o, dict) and o.get("name") in tensors for o in asked):
        raise RequestError(400, f"\"outputs\" must name outputs of this model: {', '.join(tensors)}")
    all_binary = bool((header.get("parameters") or {}).get("binary_data_output", False))
    outputs, chunks = [], []
    for out in asked:
        datatype, shape, data = tensors[out["name"]]
        tensor: dict[str, Any] = {"name": out["name"], "datatype": datatype, "shape": shape}
        if (out.get("parameters") or {}).get("binary_data", all_binary):
            chunk = _serialize_bytes(data) if datatype == "BYTES" else data.tobytes()
            tensor["parameters"] = {"binary_data_size": len(chunk)}
            chunks.append(chunk)
        else:
            tensor["data"] = [v.decode("utf-8") for v in data] if datatype == "BYTES" else data.reshape(-1).tolist()
        outputs.append(tensor)
    body = {"model_name": name, "model_version": "1", "outputs": outputs}
    if "id" in header:
        body["id"] = header["id"]
    if not chunks:
        return JSONResponse(body)
    text = json.dumps(body).encode("utf-8")
    return Response(text + b"".join(chunks), media_type="application/octet-stream",
                    headers={"Inference-Header-Content-Length": str(len(text))})


def add_oip_routes(app: FastAPI, predictor: Predictor, *, batcher: MicroBatcher, max_items: int, max_pixels: int) -> None:
    """GET /v2, /v2/health/live, /v2/health/ready, /v2/models/NAME, /v2/models/NAME/ready and
    POST /v2/models/NAME/infer; errors answer {"error": message} as the protocol says."""
    name = model_name(predictor)
    modality, codec = predictor.modality, predictor.modality.codec
    specs = codec.oip_inputs(predictor)

    def error(exc: RequestError) -> JSONResponse:
        return JSONResponse({"error": str(exc)}, status_code=exc.status)

    def check_name(asked: str) -> None:
        if asked != name:
            raise RequestError(404, f"model {asked!r} is not served here; this server serves {name!r}")

    @app.get("/v2", tags=["Open Inference Protocol"])
    async def server_metadata() -> dict:
        """Server name, version and protocol extensions."""
        return {"name": "tagnet", "version": tagnet.__version__, "extensions": ["binary_tensor_data"]}

    @app.get("/v2/health/live", tags=["Open Inference Protocol"])
    async def live() -> dict:
        """Liveness."""
        return {"live": True}

    @app.get("/v2/health/ready", tags=["Open Inference Protocol"])
    async def ready() -> dict:
        """Readiness: the model is loaded when the server answers."""
        return {"ready": True}

    @app.get("/v2/models/{model}", tags=["Open Inference Protocol"])
    async def metadata(model: str) -> Any:
        """Inputs, outputs, and in parameters the labels, their thresholds and the decision mode."""
        try:
            check_name(model)
        except RequestError as exc:
            return error(exc)
        thresholds = predictor.artifact.thresholds
        return {"name": name, "versions": ["1"], "platform": PLATFORM, "inputs": specs, "outputs": output_specs(predictor),
                "parameters": {"modality": modality.name, "labels": predictor.label_names,
                               "thresholds": thresholds.values, "threshold_mode": thresholds.mode,
                               "top_k": thresholds.top_k, "labels_output": "JSON array per item"}}

    @app.get("/v2/models/{model}/ready", tags=["Open Inference Protocol"])
    async def model_ready(model: str) -> Any:
        """Readiness of the model."""
        try:
            check_name(model)
        except RequestError as exc:
            return error(exc)
        return {"name": name, "ready": True}

    @app.post("/v2/models/{model}/infer", tags=["Open Inference Protocol"])
    async def infer(model: str, request: Request) -> Response:
        """One input tensor (see the metadata's inputs) in; probabilities and label sets out."""
        try:
            check_name(model)
            header, binary = _split_body(await request.body(), request.headers.get(HEADER_LENGTH))
            input_name, array = _request_input(header, binary, specs)
            if not 0 < len(array) <= max_items:
                raise RequestError(400, f"{len(array)} items in one request; expected 1 to {max_items}")
            sources, items = await asyncio.to_thread(codec.oip_items, input_name, array, predictor,
                                                     max_pixels=max_pixels)
            try:
                probs = await batcher.predict(items)
            except (DataError, ValueError, TypeError) as exc:
                raise RequestError(400, str(exc)) from None
            return _response(header, name, predictor.results(probs, sources=sources), probs)
        except RequestError as exc:
            return error(exc)
