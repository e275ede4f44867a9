"""ONNX export of an artifact: probabilities out, labels and preprocessing inside, checked against PyTorch."""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

import tagnet
from tagnet.artifact import Artifact, _atomic_write, load_artifact
from tagnet.errors import ConfigError, ModelError
from tagnet.evaluate import evaluate
from tagnet.predict import ONNX_FILE, ONNX_INPUT, ONNX_OUTPUT, WEIGHTS_DIGEST_KEY, Predictor, weights_sha256

try:
    import onnx
    import onnxruntime
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from onnxruntime.quantization.shape_inference import quant_pre_process
except ImportError as exc:  # the optional "serve" extra is not installed
    raise ConfigError(f"ONNX export needs onnx, onnxruntime and onnxscript ({exc}); "
                      "expected them installed: pip install 'tagnet[serve]'") from exc

FORMATS = ("onnx",)
DEFAULT_OPSET = 18
PARITY_TOLERANCE = 1e-4
PARITY_BATCH_SIZES = (1, 4)
INT8_SUFFIX = ".int8.onnx"
INPUT_DESCRIPTION = ("float32 {name} (batch, 3, {size}, {size}): RGB resized (bilinear) to {size}x{size}, "
                     "scaled to [0, 1] by x/255, then (x - mean) / std per channel")
OUTPUT_DESCRIPTION = "float32 {name} (batch, {labels}): sigmoid of each label's logit, in label_names order"


class _WithSigmoid(nn.Module):
    """Wraps a TagnetModel so that the exported graph outputs probabilities, not logits."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.model(images))


@dataclass
class ExportReport:
    """What an export wrote and measured.

    Attributes:
        onnx_path: the float32 ONNX model.
        size_bytes: its size.
        parity_max_abs_diff: max |ONNX Runtime - PyTorch| over the probabilities of the sample inputs.
        parity_samples: how many sample images (in batches of PARITY_BATCH_SIZES) were compared.
        int8_path, int8_size_bytes, int8_max_abs_diff: the same for the int8 model (--quantize).
        val_map: {"onnx": mAP, "int8": mAP, "change": int8 - onnx} on validation data, when given.
    """

    onnx_path: Path
    size_bytes: int
    parity_max_abs_diff: float
    parity_samples: int
    int8_path: Path | None = None
    int8_size_bytes: int | None = None
    int8_max_abs_diff: float | None = None
    val_map: dict[str, float | None] | None = None

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict."""
        return {key: str(value) if isinstance(value, Path) else value for key, value in self.__dict__.items()}


def onnx_metadata(artifact: Artifact, **extra: str) -> dict[str, str]:
    """The metadata_props written into an exported model: label names, thresholds, preprocessing (JSON strings)."""
    size = artifact.preprocess.image_size
    return {
        "tagnet_version": tagnet.__version__,
        "label_names": json.dumps(artifact.label_names),
        "thresholds": json.dumps(artifact.thresholds.to_dict()),
        "preprocess": json.dumps(artifact.preprocess.to_dict()),
        "model": json.dumps(artifact.meta["model"]),
        WEIGHTS_DIGEST_KEY: weights_sha256(artifact),
        "input": INPUT_DESCRIPTION.format(name=ONNX_INPUT, size=size),
        "output": OUTPUT_DESCRIPTION.format(name=ONNX_OUTPUT, labels=len(artifact.label_names)),
        **extra,
    }


def read_onnx_metadata(path: str | Path) -> dict[str, Any]:
    """An exported model's metadata_props; the JSON-valued ones (label_names, thresholds, ...) decoded."""
    props = {prop.key: prop.value for prop in onnx.load(str(path), load_external_data=False).metadata_props}
    for key in ("label_names", "thresholds", "preprocess", "model"):
        if key in props:
            props[key] = json.loads(props[key])
    return props


def _with_metadata(proto: onnx.ModelProto, metadata: dict[str, str]) -> onnx.ModelProto:
    del proto.metadata_props[:]
    onnx.helper.set_model_props(proto, metadata)
    proto.doc_string = f"tagnet multi-label model; input {metadata['input']}; output {metadata['output']}"
    onnx.checker.check_model(proto, full_check=True)
    return proto


def _sample_inputs(artifact: Artifact, *, count: int, seed: int = 0) -> torch.Tensor:
    """Random RGB images normalised exactly as the Predictor does: float (count, 3, size, size)."""
    pre = artifact.preprocess
    pixels = np.random.default_rng(seed).integers(0, 256, (count, 3, pre.image_size, pre.image_size), dtype=np.uint8)
    mean = torch.tensor(pre.mean).view(1, 3, 1, 1)
    std = torch.tensor(pre.std).view(1, 3, 1, 1)
    return (torch.from_numpy(pixels).float() / 255.0 - mean) / std


def _max_abs_diff(proto: onnx.ModelProto, samples: torch.Tensor, expected: np.ndarray) -> float:
    """Run `proto` on ONNX Runtime in batches of PARITY_BATCH_SIZES; the largest difference from `expected`."""
    session = onnxruntime.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    worst, start = 0.0, 0
    for size in PARITY_BATCH_SIZES:
        batch = samples[start:start + size].numpy()
        got = session.run([ONNX_OUTPUT], {ONNX_INPUT: batch})[0]
        worst = max(worst, float(np.abs(got - expected[start:start + size]).max()))
        start += size
    return worst


def _export_proto(model: nn.Module, example: torch.Tensor, *, opset: int) -> onnx.ModelProto:
    """torch.export-based ONNX export with a dynamic batch dimension; returns the in-memory model."""
    program = torch.onnx.export(
        _WithSigmoid(model).eval(), (example,), None, input_names=[ONNX_INPUT], output_names=[ONNX_OUTPUT],
        opset_version=opset, dynamo=True, verbose=False,
        dynamic_shapes={"images": {0: torch.export.Dim("batch")}},
    )
    return program.model_proto


def _quantize(proto: onnx.ModelProto, metadata: dict[str, str]) -> onnx.ModelProto:
    """int8 dynamic quantisation (weights int8, activations quantised at run time) after ORT's pre-processing."""
    with tempfile.TemporaryDirectory(prefix="tagnet-quantize-") as tmp:
        source, prepared, quantized = Path(tmp, "float.onnx"), Path(tmp, "prepared.onnx"), Path(tmp, "int8.onnx")
        onnx.save(proto, source)
        quant_pre_process(str(source), str(prepared))
        quantize_dynamic(prepared, quantized, weight_type=QuantType.QInt8)
        return _with_metadata(onnx.load(str(quantized)), {**metadata, "quantization": "int8 dynamic (onnxruntime)"})


def export_onnx(
    artifact: Artifact | str | Path,
    *,
    out: str | Path | None = None,
    format: str = "onnx",
    opset: int = DEFAULT_OPSET,
    quantize: bool = False,
    val_labels: str | Path | None = None,
    images_dir: str | Path | None = None,
    read_options: dict | None = None,
    tolerance: float = PARITY_TOLERANCE,
) -> ExportReport:
    """Export an artifact to ONNX, check it, and write it atomically (default: ARTIFACT/model.onnx).

    The graph takes normalised float images "images" (batch, 3, H, W) with any batch size and outputs
    "probabilities" (sigmoid inside). Label names, thresholds and preprocessing go into metadata_props.
    Before writing, onnx.checker must pass and ONNX Runtime must agree with PyTorch within `tolerance`
    on random sample images.

    Args:
        artifact: an Artifact, an artifact folder or a run folder.
        out: the .onnx file to write; the default, ARTIFACT/model.onnx, is what Predictor picks up.
        format: only "onnx".
        opset: ONNX opset version.
        quantize: also write an int8 dynamically quantised model next to it (model.int8.onnx).
        val_labels, images_dir, read_options: validation labels (and their images folder and
            read_labels options) on which to report the mAP of the ONNX model(s).
        tolerance: the largest allowed probability difference between ONNX Runtime and PyTorch.
    Returns:
        ExportReport with the paths, sizes, parity differences and validation mAPs.
    Raises:
        ConfigError: an unknown format, an output name not ending in .onnx, or not an image model.
        ModelError: the exported model disagrees with PyTorch by more than `tolerance`.
    """
    if format not in FORMATS:
        raise ConfigError(f"export format is {format!r}; expected one of {', '.join(FORMATS)}")
    artifact = artifact if isinstance(artifact, Artifact) else load_artifact(artifact)
    modality = artifact.meta.get("extra", {}).get("modality", "image")
    if modality != "image":
        raise ConfigError(f"{artifact.path} is a {modality} model; ONNX export supports image models only")
    out = Path(out) if out is not None else artifact.path / ONNX_FILE
    if out.suffix != ".onnx":
        raise ConfigError(f"export output {out} must end in .onnx")
    out.parent.mkdir(parents=True, exist_ok=True)
    metadata = onnx_metadata(artifact)
    samples = _sample_inputs(artifact, count=sum(PARITY_BATCH_SIZES))
    with torch.inference_mode():
        expected = torch.sigmoid(artifact.model(samples)).numpy()
    proto = _with_metadata(_export_proto(artifact.model, samples[:2], opset=opset), metadata)
    diff = _max_abs_diff(proto, samples, expected)
    if not diff <= tolerance:
        raise ModelError(f"ONNX export of {artifact.path}: ONNX Runtime and PyTorch probabilities differ by up to "
                         f"{diff:.2e} on sample images; expected at most {tolerance:.0e}. Nothing was written")
    _atomic_write(out, lambda temp: onnx.save(proto, str(temp)))
    report = ExportReport(onnx_path=out, size_bytes=out.stat().st_size, parity_max_abs_diff=diff,
                          parity_samples=len(samples))
    if quantize:
        int8 = _quantize(proto, metadata)
        report.int8_path = out.with_name(out.name.removesuffix(".onnx") + INT8_SUFFIX)
        report.int8_max_abs_diff = _max_abs_diff(int8, samples, expected)
        _atomic_write(report.int8_path, lambda temp: onnx.save(int8, str(temp)))
        report.int8_size_bytes = report.int8_path.stat().st_size
    if val_labels is not None:
        models = {"onnx": out, **({"int8": report.int8_path} if quantize else {})}
        report.val_map = {
            name: evaluate(Predictor(artifact, runtime="onnx", onnx_file=path), val_labels, images_dir=images_dir,
                           read_options=read_options)[0].mAP
            for name, path in models.items()}
        if quantize and None not in report.val_map.values():
            report.val_map["change"] = report.val_map["int8"] - report.val_map["onnx"]
    return report


def render_export(report: ExportReport, console) -> None:
    """Print what an export wrote and its checks, one line each."""
    console.print(f"wrote {report.onnx_path} ({report.size_bytes / 1e6:.1f} MB); onnx.checker passed; parity with "
                  f"PyTorch on {report.parity_samples} sample images: max |diff| {report.parity_max_abs_diff:.1e} "
                  f"(limit {PARITY_TOLERANCE:.0e})")
    if report.int8_path is not None:
        console.print(f"wrote {report.int8_path} ({report.int8_size_bytes / 1e6:.1f} MB, int8 dynamic); "
                      f"max |diff| from PyTorch {report.int8_max_abs_diff:.1e}")
    if report.val_map is not None:
        shown = {name: "n/a" if value is None else f"{value:+.4f}" if name == "change" else f"{value:.4f}"
                 for name, value in report.val_map.items()}
        console.print("validation mAP: " + ", ".join(f"{name} {value}" for name, value in shown.items()))
    elif report.int8_path is not None:
        console.print("mAP change from quantisation not measured: pass --val LABELS --images DIR")
