"""Request codecs: how a served request (an HTTP body, an Open Inference Protocol v2 tensor) becomes a model's inputs.

The server (tagnet.serve) reads requests and answers them; a modality's codec decodes what they carry and says what its
requests look like. Every decoding error is a RequestError whose status is the HTTP answer's (400, 413, 415).
"""

from __future__ import annotations

import base64
import binascii
import io
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image, UnidentifiedImageError

from tagnet.config.settings import MAX_REQUEST_TEXT_CHARS, MAX_TEXT_CHARS
from tagnet.data.images import to_model_size
from tagnet.errors import RequestError
from tagnet.modalities.specs import ModalitySpec

if TYPE_CHECKING:
    from tagnet.inference.predictor import Predictor

JSON = "application/json"
MULTIPART = "multipart/form-data"
CORRUPT_IMAGE_ERRORS = (OSError, ValueError, SyntaxError, EOFError)  # what Pillow raises for damaged files
OIP_PIXELS = "pixels"  # the Open Inference Protocol input of already normalised images
NO_IMAGE = "no image in the request; expected multipart file field(s) 'files' or JSON 'images'"

Sourced = tuple[list[str], list]  # (sources, items): each input's name in the answer, and the inputs


@dataclass(frozen=True)
class HttpBody:
    """A POST body as the server read it: its parsed JSON or its uploaded files ((file name as sent or None, bytes) of
    a multipart body)."""

    json: Any = None
    files: list[tuple[str | None, bytes]] | None = None


def _json_openapi(key: str, example: list) -> dict[str, Any]:
    """The OpenAPI request body and error answers of a JSON-only POST /predict {key: [...]}."""
    return {"requestBody": {"required": True, "content": {JSON: {
        "schema": {"type": "object", "required": [key], "properties": {key: {"type": "array"}}},
        "example": {key: example}}}},
        "responses": {"400": {"description": "a bad body or input"}, "413": {"description": "body over the limit"},
                      "415": {"description": "a body that is not JSON"}}}


class RequestCodec:
    """What a served model takes, for one modality: POST /predict bodies, Open Inference Protocol input tensors, and
    what GET /labels and the OpenAPI docs say about them. Subclasses fill in the methods marked "per modality"."""

    media_types: tuple[str, ...] = (JSON,)  # the content types POST /predict takes

    def __init__(self, spec: ModalitySpec) -> None:
        self.spec = spec

    def check_content_type(self, content_type: str) -> None:
        """RequestError 415 unless POST /predict takes `content_type` (lower case, without parameters)."""
        if content_type not in self.media_types:
            raise RequestError(415, f"content type {content_type or 'none'!r}; expected {self.expected_body()}")

    def expected_body(self) -> str:
        """The bodies POST /predict takes, as its 415 answer names them."""
        return f'application/json ({{"{self.spec.request_key}": [...]}})'

    def items(self, body: HttpBody, predictor: Predictor, *, max_items: int, max_pixels: int) -> Sourced:
        """(sources, inputs) of a POST /predict body of a content type check_content_type took."""
        return self.json_items(body.json, predictor, max_items=max_items, max_pixels=max_pixels)

    def json_items(self, body: Any, predictor: Predictor, *, max_items: int, max_pixels: int) -> Sourced:
        """(sources, inputs) of a parsed JSON body {request_key: [...]} (per modality)."""
        raise NotImplementedError

    def json_list(self, body: Any, *, one: str, max_items: int) -> list:
        """The non-empty list body[request_key] of at most `max_items` inputs (`one`: what one is called);
        raises RequestError 400."""
        key = self.spec.request_key
        values = body.get(key) if isinstance(body, dict) else None
        if not isinstance(values, list) or not values:
            raise RequestError(400, f'a {self.spec.name} model needs a JSON body {{"{key}": [...]}} with at least '
                                    f'one {one}')
        if len(values) > max_items:
            raise RequestError(400, f"{len(values)} items in one request; at most {max_items}")
        return values

    def openapi(self) -> dict[str, Any]:
        """The OpenAPI description of POST /predict's body and error answers (per modality)."""
        raise NotImplementedError

    def labels_info(self, predictor: Predictor) -> dict[str, Any]:
        """What GET /labels says about the inputs beside the labels and thresholds."""
        return {"modality": self.spec.name}

    def oip_inputs(self, predictor: Predictor) -> list[dict[str, Any]]:
        """The Open Inference Protocol input tensors the model takes: {name, datatype, shape} (-1 = any), per
        modality."""
        raise NotImplementedError

    def oip_items(self, name: str, array: np.ndarray, predictor: Predictor, *, max_pixels: int) -> Sourced:
        """(sources, inputs) of one OIP input tensor `name`, of the datatype and shape oip_inputs declares (BYTES: an
        object array of bytes, or of str from JSON), per modality."""
        raise NotImplementedError

    def uploads(self, body: HttpBody, *, max_items: int) -> list[tuple[str, bytes]]:
        """(name, bytes) of each file a request carries (modalities that take files: POST /predict and /explain)."""
        raise NotImplementedError

    def explain_inputs(self, files: list[tuple[str, bytes]], predictor: Predictor, *, max_pixels: int,
                       max_total_pixels: int) -> tuple[list[np.ndarray], list[tuple[int, int]]]:
        """(decoded inputs, the (width, height) of each heatmap overlay) of uploaded files to explain (explainable
        modalities: ModalitySpec.explainable)."""
        raise NotImplementedError


class ImageCodec(RequestCodec):
    """Image files: multipart uploads or base64 in JSON, decoded and resized as the Predictor prepares files; OIP
    BYTES (encoded files) or FP32 pixels already normalised."""

    media_types = (MULTIPART, JSON)

    def expected_body(self) -> str:
        return "multipart/form-data (image files) or application/json (base64 images)"

    def uploads(self, body: HttpBody, *, max_items: int) -> list[tuple[str, bytes]]:
        """Multipart files (any field name), or JSON {"images": [base64 | data: URL | {name, data}, ...]}."""
        if body.files is not None:
            if not body.files:
                raise RequestError(400, NO_IMAGE)
            return [(name or f"image_{i}", data) for i, (name, data) in enumerate(body.files)]
        items = body.json.get(self.spec.request_key) if isinstance(body.json, dict) else None
        if not isinstance(items, list):
            raise RequestError(400, 'JSON body needs "images": a list of base64 strings or {name, data} objects')
        if len(items) > max_items:
            raise RequestError(400, f"{len(items)} images in one request; expected at most {max_items}")
        if not items:
            raise RequestError(400, NO_IMAGE)
        return [from_base64(i, item) for i, item in enumerate(items)]

    def items(self, body, predictor, *, max_items, max_pixels) -> Sourced:
        """The uploaded images, decoded (see decode_upload)."""
        return self.decoded(self.uploads(body, max_items=max_items), predictor, max_pixels=max_pixels)

    @staticmethod
    def decoded(files: list[tuple[str, bytes]], predictor: Predictor, *, max_pixels: int) -> Sourced:
        """(names, prepared uint8 arrays) of uploaded image files."""
        size = predictor.artifact.preprocess.image_size
        return [name for name, _ in files], [decode_upload(name, data, size=size, max_pixels=max_pixels)[0]
                                             for name, data in files]

    def explain_inputs(self, files, predictor, *, max_pixels, max_total_pixels):
        """Decoded images, each overlay shaped like its original image with the longest side the model's input size;
        RequestError 413 when the images hold more than `max_total_pixels` in all."""
        pixels = 0
        for name, data in files:
            with open_upload(name, data) as image:
                pixels += image.size[0] * image.size[1]
        if pixels > max_total_pixels:
            raise RequestError(413, f"{len(files)} images of {pixels} pixels in all; at most {max_total_pixels} "
                                    "per /explain request")
        arrays, sizes = [], []
        image_size = predictor.artifact.preprocess.image_size
        for name, data in files:
            array, size = decode_upload(name, data, size=image_size, max_pixels=max_pixels)
            arrays.append(array)
            scale = image_size / max(size)
            sizes.append(tuple(max(1, round(side * scale)) for side in size))
        return arrays, sizes

    def openapi(self) -> dict[str, Any]:
        return IMAGE_OPENAPI

    def labels_info(self, predictor) -> dict[str, Any]:
        return {"image_size": predictor.artifact.preprocess.image_size}

    def oip_inputs(self, predictor) -> list[dict[str, Any]]:
        """BYTES "images" (N,): encoded image files (base64 strings in JSON); or FP32 "pixels" (N, 3, size, size):
        images normalised as the model takes them (the ONNX model's input, tagnet.modalities.onnx_specs)."""
        size = predictor.artifact.preprocess.image_size
        return [{"name": self.spec.request_key, "datatype": "BYTES", "shape": [-1]},
                {"name": OIP_PIXELS, "datatype": "FP32", "shape": [-1, 3, size, size]}]

    def oip_items(self, name, array, predictor, *, max_pixels) -> Sourced:
        if name == OIP_PIXELS:
            return [f"{OIP_PIXELS}_{i}" for i in range(len(array))], list(array.astype(np.float32))
        files = [from_base64(i, value) if isinstance(value, str) else (f"image_{i}", bytes(value))
                 for i, value in enumerate(array)]
        return self.decoded(files, predictor, max_pixels=max_pixels)


class TextCodec(RequestCodec):
    """Texts: JSON {"texts": [...]}, OIP BYTES of UTF-8 strings."""

    def json_items(self, body, predictor, *, max_items, max_pixels) -> Sourced:
        """JSON {"texts": ["...", ...]}, within the characters a request and a text may hold."""
        texts = self.json_list(body, one="text", max_items=max_items)
        if not all(isinstance(t, str) for t in texts):
            raise RequestError(400, 'every entry of "texts" must be a string')
        total = sum(len(text) for text in texts)
        if total > MAX_REQUEST_TEXT_CHARS:
            raise RequestError(413, f"{total} characters of text in one request; at most {MAX_REQUEST_TEXT_CHARS}")
        for i, text in enumerate(texts):
            if len(text) > MAX_TEXT_CHARS:
                raise RequestError(413, f"texts[{i}] has {len(text)} characters; at most {MAX_TEXT_CHARS} per text")
            try:
                text.encode("utf-8")
            except UnicodeEncodeError as exc:
                raise RequestError(400, f"texts[{i}] is not valid Unicode (a lone surrogate {text[exc.start]!r} at "
                                        f"character {exc.start}); expected UTF-8 text") from None
        return list(texts), list(texts)

    def openapi(self) -> dict[str, Any]:
        return _json_openapi(self.spec.request_key, ["thanks, you made my day"])

    def oip_inputs(self, predictor) -> list[dict[str, Any]]:
        """BYTES "texts" (N,): UTF-8 strings."""
        return [{"name": self.spec.request_key, "datatype": "BYTES", "shape": [-1]}]

    def oip_items(self, name, array, predictor, *, max_pixels) -> Sourced:
        texts = [bytes_text(value, what=f"texts[{i}]") for i, value in enumerate(array)]
        return texts, texts


class TableCodec(RequestCodec):
    """Feature rows: JSON {"rows": [[x0, x1, ...], ...]} (null = missing), OIP FP32 (N, features) with NaN."""

    def json_items(self, body, predictor, *, max_items, max_pixels) -> Sourced:
        """JSON {"rows": [[x0, x1, ...], ...]} in the model's feature order, null for a missing value."""
        rows = self.json_list(body, one="row", max_items=max_items)
        try:
            array = np.asarray(rows, dtype=np.float64)
        except (ValueError, TypeError) as exc:
            raise RequestError(400, f'"rows" must be lists of numbers (null = missing) of equal length ({exc})') from None
        width = len(predictor.artifact.state["feature_names"])
        if array.ndim != 2 or array.shape[1] != width:
            raise RequestError(400, f"rows of shape {array.shape}; the model expects (rows, {width})")
        huge = np.argwhere(np.abs(array) > np.finfo(np.float32).max)  # inf (1e400 parses as inf) or beyond float32
        if len(huge):
            row, column = huge[0]
            raise RequestError(400, f"rows[{row}][{column}] is {array[row, column]!r}; expected a finite number within "
                                    f"+-{np.finfo(np.float32).max:.3g} (null = missing)")
        return [str(i + 1) for i in range(len(array))], list(array)

    def openapi(self) -> dict[str, Any]:
        return _json_openapi(self.spec.request_key, [[0.1, 2.0, None]])

    def oip_inputs(self, predictor) -> list[dict[str, Any]]:
        """FP32 "rows" (N, features): raw values in feature_names order, NaN (null in JSON) for a missing value."""
        return [{"name": self.spec.request_key, "datatype": "FP32",
                 "shape": [-1, len(predictor.artifact.state["feature_names"])]}]

    def oip_items(self, name, array, predictor, *, max_pixels) -> Sourced:
        return [str(i + 1) for i in range(len(array))], list(array.astype(np.float64))


IMAGE_OPENAPI = {
    "requestBody": {
        "required": True,
        "content": {
            MULTIPART: {"schema": {
                "type": "object", "required": ["files"],
                "properties": {"files": {"type": "array", "items": {"type": "string", "format": "binary"},
                                         "description": "one or more image files (any field name is accepted)"}}}},
            JSON: {"schema": {
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


def open_upload(name: str, data: bytes) -> Image.Image:
    """Image bytes opened lazily (only the header is read); RequestError 415 / 413 / 400 as decode_upload."""
    try:
        return Image.open(io.BytesIO(data))
    except UnidentifiedImageError:
        raise RequestError(415, f"{name}: not an image; expected a JPEG, PNG, GIF, BMP, TIFF or WebP file") from None
    except Image.DecompressionBombError as exc:
        raise RequestError(413, f"{name}: {exc}") from None
    except CORRUPT_IMAGE_ERRORS as exc:
        raise RequestError(400, f"{name}: corrupt image ({exc})") from None


def decode_upload(name: str, data: bytes, *, size: int, max_pixels: int) -> tuple[np.ndarray, tuple[int, int]]:
    """Image bytes -> (uint8 (size, size, 3) as the Predictor prepares files, the image's own (width, height)).

    Raises RequestError: 415 when no image format is recognised, 413 over `max_pixels`, 400 when a recognised
    image cannot be decoded (truncated or damaged).
    """
    with open_upload(name, data) as image:
        width, height = image.size
        if width * height > max_pixels:
            raise RequestError(413, f"{name}: {width}x{height} is {width * height} pixels; expected at most {max_pixels}")
        try:
            image.draft("RGB", (size, size))
            return to_model_size(image, size), (width, height)
        except CORRUPT_IMAGE_ERRORS as exc:
            raise RequestError(400, f"{name}: corrupt {image.format} image ({exc})") from None


def from_base64(index: int, item: Any) -> tuple[str, bytes]:
    """One item of a JSON body's "images" (base64, a data: URL or {name, data}) -> (name, bytes)."""
    name, text = f"image_{index}", item
    if isinstance(item, dict):
        name, text = str(item.get("name", name)), item.get("data")
    if not isinstance(text, str):
        raise RequestError(400, f"images[{index}] is {type(item).__name__} {str(item)[:60]!r}; expected a base64 "
                                "string, a data: URL or an object {name, data}")
    if text.startswith("data:"):
        text = text.partition(",")[2]
    try:
        return name, base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise RequestError(400, f"images[{index}] ({name}) is not valid base64") from None


def bytes_text(value: bytes | str, *, what: str) -> str:
    """One element of a BYTES tensor as text (UTF-8); raises RequestError 400."""
    if isinstance(value, str):
        return value
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        raise RequestError(400, f"{what} is not UTF-8 text") from None
