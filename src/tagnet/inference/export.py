"""ONNX export of an image, text or tabular artifact: probabilities out, labels and preprocessing inside, checked against PyTorch."""

from __future__ import annotations

import contextlib
import json
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

import tagnet
from tagnet.inference.artifact import Artifact, load_artifact
from tagnet.config.settings import ExportSettings
from tagnet.errors import ConfigError, ModelError
from tagnet.evaluation.evaluate import evaluate
from tagnet.files import atomic_write
from tagnet.modalities.onnx_specs import OnnxGraph
from tagnet.inference.predictor import (ONNX_FILE, ONNX_OUTPUT, QUANTIZATION_KEY, WEIGHTS_DIGEST_KEY, Predictor,
                                       weights_sha256)

try:
    import onnx
    import onnxruntime
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from onnxruntime.quantization.shape_inference import quant_pre_process
except ImportError as exc:  # the optional "serve" extra is not installed
    raise ConfigError(f"ONNX export needs onnx, onnxruntime and onnxscript ({exc}); "
                      "expected them installed: pip install 'tagnet[serve]'") from exc

FORMATS = ("onnx",)
DEFAULT_OPSET = ExportSettings().opset
PARITY_TOLERANCE = 1e-4
INT8_SUFFIX = ".int8.onnx"
OUTPUT_DESCRIPTION = "float32 {name} (batch, {labels}): sigmoid of each label's logit, in label_names order"
JSON_METADATA = ("label_names", "thresholds", "calibration", "preprocess", "model", "feature_names", "hierarchy")


@dataclass
class ExportReport:
    """What an export wrote and measured.

    Attributes:
        onnx_path: the float32 ONNX model.
        size_bytes: its size.
        parity_max_abs_diff: max |ONNX Runtime - PyTorch| over the probabilities of the sample inputs.
        parity_samples: how many sample inputs (in batches of PARITY_BATCH_SIZES) were compared.
        tokenizer_path: text models: the tokenizer file written beside the model (tokenizers library format).
        int8_path, int8_size_bytes, int8_max_abs_diff: the same for the int8 model (--quantize).
        val_map: {"onnx": mAP, "int8": mAP, "change": int8 - onnx} on validation data, when given.
    """

    onnx_path: Path
    size_bytes: int
    parity_max_abs_diff: float
    parity_samples: int
    tokenizer_path: Path | None = None
    int8_path: Path | None = None
    int8_size_bytes: int | None = None
    int8_max_abs_diff: float | None = None
    val_map: dict[str, float | None] | None = None

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict."""
        return {key: str(value) if isinstance(value, Path) else value for key, value in self.__dict__.items()}


def onnx_metadata(artifact: Artifact, **extra: str) -> dict[str, str]:
    """The metadata_props every export writes: modality, label names, thresholds, model, weights digest (JSON strings)."""
    return {
        "tagnet_version": tagnet.__version__,
        "modality": artifact.modality,
        "label_names": json.dumps(artifact.label_names),
        "thresholds": json.dumps(artifact.thresholds.to_dict()),
        "model": json.dumps(artifact.meta["model"]),
        WEIGHTS_DIGEST_KEY: weights_sha256(artifact),
        "output": OUTPUT_DESCRIPTION.format(name=ONNX_OUTPUT, labels=len(artifact.label_names)),
        **_calibration_metadata(artifact),
        **_hierarchy_metadata(artifact),
        **extra,
    }


def _calibration_metadata(artifact: Artifact) -> dict[str, str]:
    """The artifact's temperature scaling, which the graph's probabilities do not include, and how to apply it."""
    if artifact.calibration is None:
        return {}
    return {"calibration": json.dumps(artifact.calibration.to_dict()),
            "calibration_note": f"{ONNX_OUTPUT} are not calibrated: apply p_j = sigmoid(logit(p_j) / temperatures[j]) "
                                "before the thresholds" + (" (then the hierarchy's rule again: p_j = min(p_j, "
                                                           "p_parent(j)), level by level)" if artifact.hierarchy
                                                           else "") + ", as tagnet does"}


def _hierarchy_metadata(artifact: Artifact) -> dict[str, str]:
    """The labels' tree (names, parent indices, paths) and its rule, which the graph's probabilities already follow."""
    tree = artifact.hierarchy
    if tree is None:
        return {}
    return {"hierarchy": json.dumps({**tree.to_dict(), "paths": tree.paths}),
            "hierarchy_note": f"{ONNX_OUTPUT} already follow the hierarchy (no label above its parent); predict a label "
                              "only when it passes its threshold and so does every ancestor, as tagnet does"}


def read_onnx_metadata(path: str | Path) -> dict[str, Any]:
    """An exported model's metadata_props; the JSON-valued ones (label_names, thresholds, ...) decoded."""
    props = {prop.key: prop.value for prop in onnx.load(str(path), load_external_data=False).metadata_props}
    for key in JSON_METADATA:
        if key in props:
            props[key] = json.loads(props[key])
    return props


def _with_metadata(proto: onnx.ModelProto, metadata: dict[str, str]) -> onnx.ModelProto:
    del proto.metadata_props[:]
    onnx.helper.set_model_props(proto, metadata)
    proto.doc_string = f"tagnet multi-label model; input {metadata['input']}; output {metadata['output']}"
    onnx.checker.check_model(proto, full_check=True)
    return proto


def _max_abs_diff(proto: onnx.ModelProto, graph: OnnxGraph, expected: list[np.ndarray]) -> float:
    """Run `proto` on ONNX Runtime on the graph's sample batches; the largest difference from PyTorch's probabilities."""
    session = onnxruntime.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    return max(float(np.abs(session.run([ONNX_OUTPUT], {graph.input_name: batch.numpy()})[0] - want).max())
               for batch, want in zip(graph.graph_inputs, expected))


def _export_proto(graph: OnnxGraph, *, opset: int) -> onnx.ModelProto:
    """torch.export-based ONNX export with dynamic axes (batch; tokens for text), or the graph's own `build`; returns
    the in-memory model."""
    if graph.build is not None:
        return graph.build(opset, ONNX_OUTPUT)
    program = torch.onnx.export(
        graph.module.eval(), (graph.graph_inputs[-1],), None, input_names=[graph.input_name], output_names=[ONNX_OUTPUT],
        opset_version=opset, dynamo=True, verbose=False, dynamic_shapes=(graph.dynamic_axes,),
    )
    return program.model_proto


def _quantize(proto: onnx.ModelProto, metadata: dict[str, str], *, symbolic_shapes: bool) -> onnx.ModelProto:
    """int8 dynamic quantisation (weights int8, activations quantised at run time) after ORT's pre-processing."""
    with tempfile.TemporaryDirectory(prefix="tagnet-quantize-") as tmp, contextlib.chdir(tmp):
        # in tmp as the working folder: ORT's shape inference leaves files in it when it fails
        source, prepared, quantized = Path(tmp, "float.onnx"), Path(tmp, "prepared.onnx"), Path(tmp, "int8.onnx")
        onnx.save(proto, source)
        # where ORT's symbolic shape inference cannot follow the graph (OnnxSpec.symbolic_shapes), ONNX's own shape
        # inference (kept) is enough for dynamic quantisation
        quant_pre_process(str(source), str(prepared), skip_symbolic_shape=not symbolic_shapes)
        quantize_dynamic(prepared, quantized, weight_type=QuantType.QInt8)
        return _with_metadata(onnx.load(str(quantized)), {**metadata, QUANTIZATION_KEY: "int8 dynamic (onnxruntime)"})


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

    The graph outputs "probabilities" (sigmoid inside) for any batch size. Its input depends on the model:
    normalised float "images" (batch, 3, H, W); int64 token ids "input_ids" (batch, tokens) for text models,
    whose tokenizer is written beside the model (MODEL.tokenizer.json); raw float "features" (batch, n) for
    tabular models, standardised inside the graph. Label names, thresholds and what the input is go into
    metadata_props. Before writing, onnx.checker must pass and ONNX Runtime must agree with PyTorch within
    `tolerance` on sample inputs.

    Args:
        artifact: an Artifact, an artifact folder or a run folder.
        out: the .onnx file to write; the default, ARTIFACT/model.onnx, is what the predictors pick up.
        format: only "onnx".
        opset: ONNX opset version.
        quantize: also write an int8 dynamically quantised model next to it (model.int8.onnx).
        val_labels, images_dir, read_options: validation labels (and their images folder and
            read_labels options) on which to report the mAP of the ONNX model(s).
        tolerance: the largest allowed probability difference between ONNX Runtime and PyTorch.
    Returns:
        ExportReport with the paths, sizes, parity differences and validation mAPs.
    Raises:
        ConfigError: an unknown format or an output name not ending in .onnx.
        ModelError: the exported model disagrees with PyTorch by more than `tolerance`.
    """
    if format not in FORMATS:
        raise ConfigError(f"export format is {format!r}; expected one of {', '.join(FORMATS)}")
    artifact = artifact if isinstance(artifact, Artifact) else load_artifact(artifact)
    out = Path(out) if out is not None else artifact.path / ONNX_FILE
    if out.suffix != ".onnx":
        raise ConfigError(f"export output {out} must end in .onnx")
    out.parent.mkdir(parents=True, exist_ok=True)
    on_torch = Predictor(artifact, runtime="torch", calibrated=False, device="cpu")  # the graph's own probabilities
    spec = on_torch.modality.onnx
    graph = spec.graph(on_torch, out=out)
    expected = [on_torch.predict_proba(samples) for samples in graph.samples]  # the whole PyTorch path, as predicted
    metadata = onnx_metadata(artifact, **graph.metadata)
    proto = _with_metadata(_export_proto(graph, opset=opset), metadata)
    diff = _max_abs_diff(proto, graph, expected)
    if not diff <= tolerance:
        raise ModelError(f"ONNX export of {artifact.path}: ONNX Runtime and PyTorch probabilities differ by up to "
                         f"{diff:.2e} on sample inputs; expected at most {tolerance:.0e}. Nothing was written")
    atomic_write(out, lambda temp: onnx.save(proto, str(temp)))
    report = ExportReport(onnx_path=out, size_bytes=out.stat().st_size, parity_max_abs_diff=diff,
                          parity_samples=sum(len(batch) for batch in graph.graph_inputs))
    report.tokenizer_path = spec.write_beside(on_torch, out)
    if quantize:
        int8 = _quantize(proto, metadata, symbolic_shapes=spec.symbolic_shapes)
        report.int8_path = out.with_name(out.name.removesuffix(".onnx") + INT8_SUFFIX)
        report.int8_max_abs_diff = _max_abs_diff(int8, graph, expected)
        atomic_write(report.int8_path, lambda temp: onnx.save(int8, str(temp)))
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
