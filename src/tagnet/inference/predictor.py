"""Predictor: an artifact of any modality applied to new inputs, with results as dicts, JSON, CSV or a DataFrame."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import threading
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import torch

from tagnet import modalities
from tagnet.inference.artifact import WEIGHTS_FILE, Artifact, load_artifact
from tagnet.inference.runtime import (NAMES, RUNNERS, Forward, agreeing_runtime, device_forward, failure_note,
                                     graph_runtimes, inference_device, ort_session_options, session_forward)
from tagnet.errors import ArtifactError, DataError
from tagnet.decisions.chain import calibrated_probabilities, decided, model_probabilities

ONNX_FILE = "model.onnx"
ONNX_OUTPUT = "probabilities"
WEIGHTS_DIGEST_KEY = "weights_sha256"
QUANTIZATION_KEY = "quantization"  # in the metadata of a quantised export: how (its numbers are ONNX Runtime's)
OUTPUT_SUFFIXES = (".csv", ".tsv", ".json", ".jsonl")


@dataclass
class Prediction:
    """One input's result: every label's probability and the predicted label set."""

    source: str
    probabilities: dict[str, float]
    labels: list[str]

    def to_dict(self) -> dict:
        return {"source": self.source, "labels": self.labels, "probabilities": self.probabilities}


@dataclass
class PredictionResults:
    """Predictions for many inputs plus the inputs that could not be read (source -> reason)."""

    predictions: list[Prediction]
    label_names: list[str]
    errors: dict[str, str] = field(default_factory=dict)
    # (N, labels) probabilities of `predictions` in label order when a Predictor made them (CSV rows are written from
    # it in blocks); None for results put together by hand
    probs: np.ndarray | None = field(default=None, repr=False, compare=False)

    def __iter__(self):
        return iter(self.predictions)

    def __len__(self) -> int:
        return len(self.predictions)

    def to_dicts(self) -> list[dict]:
        return [p.to_dict() for p in self.predictions]

    def to_json(self, **kwargs) -> str:
        return json.dumps({"predictions": self.to_dicts(), "errors": self.errors}, **kwargs)

    def to_dataframe(self):
        """A pandas DataFrame: source, labels (space-separated), one probability column per label."""
        import pandas as pd

        return pd.DataFrame([{"source": p.source, "labels": " ".join(p.labels), **p.probabilities} for p in self.predictions])

    def write(self, path: str | Path) -> Path:
        """Write CSV (source, labels, one column per label), JSON, or JSON Lines (one prediction per line), chosen by the
        file suffix."""
        path = check_output(path)
        if path.suffix.lower() == ".json":
            path.write_text(self.to_json(indent=2))
        elif path.suffix.lower() == ".jsonl":
            path.write_text("".join(json.dumps(p.to_dict()) + "\n" for p in self.predictions), encoding="utf-8")
        elif path.suffix.lower() in (".csv", ".tsv"):
            delimiter = "\t" if path.suffix.lower() == ".tsv" else ","
            with path.open("w", newline="") as handle:
                csv.writer(handle, delimiter=delimiter).writerow(["source", "labels"] + self.label_names)
                handle.writelines(csv_rows(self, delimiter))
        return path


CSV_BLOCK_CELLS = 1 << 20  # probabilities formatted into one string at once


def csv_rows(results: PredictionResults, delimiter: str = ",") -> Iterator[str]:
    """The CSV rows of `results` as csv.writer writes them ("\\r\\n" after each), a block of rows per string: source,
    space-separated labels, each label's probability to 6 decimals. The probabilities are formatted by one %-format
    per row (C formatting, no Python step per cell)."""
    if not results.predictions:
        return
    probs = results.probs if results.probs is not None else np.array(
        [[p.probabilities[n] for n in results.label_names] for p in results.predictions], dtype=np.float64)
    prefix = io.StringIO()
    csv.writer(prefix, delimiter=delimiter).writerows([p.source, " ".join(p.labels)] for p in results.predictions)
    heads = _split_rows(prefix.getvalue(), len(results.predictions))
    row_format = delimiter.join(["%.6f"] * probs.shape[1])
    step = max(1, CSV_BLOCK_CELLS // max(probs.shape[1], 1))
    for start in range(0, len(probs), step):
        block = probs[start:start + step].tolist()  # Python floats: the values f"{p:.6f}" formatted before
        yield "".join(f"{head}{delimiter}{row_format % tuple(row)}\r\n"
                      for head, row in zip(heads[start:start + step], block))


def _split_rows(text: str, count: int) -> list[str]:
    """The `count` rows csv.writer wrote into `text` (two fields each), without their "\\r\\n" (a quoted field may hold
    one: rows are split where a line ends outside quotes)."""
    lines = text.split("\r\n")[:-1]
    if len(lines) == count:
        return lines
    rows, current = [], None
    for line in lines:  # only when a source or label holds a line break: join the pieces inside quotes
        current = line if current is None else current + "\r\n" + line
        if current.count('"') % 2 == 0:
            rows.append(current)
            current = None
    return rows


def check_output(path: str | Path) -> Path:
    """`path` as a Path when it ends in one of OUTPUT_SUFFIXES (checked before predicting); raises DataError."""
    path = Path(path)
    if path.suffix.lower() not in OUTPUT_SUFFIXES:
        raise DataError(f"--output {path}: suffix {path.suffix or 'none'!r}; expected one of {', '.join(OUTPUT_SUFFIXES)}")
    return path


def weights_sha256(artifact: Artifact) -> str:
    """SHA-256 of the artifact's weights file: ties an exported ONNX model to the weights it came from."""
    digest = hashlib.sha256()
    with open(artifact.path / WEIGHTS_FILE, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def onnx_path(artifact: Artifact, onnx_file: str | Path | None) -> Path:
    """The ONNX model a Predictor runs: `onnx_file` (a path, or a file name inside the artifact folder), default
    model.onnx in the artifact folder."""
    path = Path(onnx_file) if onnx_file is not None else artifact.path / ONNX_FILE
    if onnx_file is not None and not path.is_absolute() and not path.exists():
        path = artifact.path / path
    return path


def open_onnx_session(artifact: Artifact, *, runtime: str, onnx_file: str | Path | None):
    """An ONNX Runtime session for `runtime` "onnx" or "openvino" (OpenVINO is checked against it), or "auto" when a
    current model.onnx exists; else None (also where graph_runtimes gives none: TAGNET_RUNTIME torch, no ONNX Runtime).

    Raises ConfigError for an unknown runtime or one asked for that is not installed (graph_runtimes), and
    ArtifactError when "onnx" or "openvino" is asked for and the file is missing, unreadable or from other weights.
    """
    path = onnx_path(artifact, onnx_file)
    if not graph_runtimes(runtime) or (runtime == "auto" and not path.is_file()):
        return None
    if not path.is_file():
        raise ArtifactError(f"ONNX model {path} does not exist; run `tagnet export {artifact.path}` first, "
                            "or use runtime torch")
    import onnxruntime
    from onnxruntime.capi.onnxruntime_pybind11_state import Fail, InvalidArgument, InvalidGraph, InvalidProtobuf

    try:
        session = onnxruntime.InferenceSession(str(path), ort_session_options(), providers=["CPUExecutionProvider"])
    except (Fail, InvalidArgument, InvalidGraph, InvalidProtobuf) as exc:
        raise ArtifactError(f"ONNX model {path} cannot be loaded by ONNX Runtime: {exc}") from exc
    exported_from = session.get_modelmeta().custom_metadata_map.get(WEIGHTS_DIGEST_KEY)
    if exported_from != weights_sha256(artifact):
        message = (f"ONNX model {path} was exported from other weights than {artifact.path / WEIGHTS_FILE} "
                   f"({WEIGHTS_DIGEST_KEY} {exported_from!r} differs); re-run `tagnet export {artifact.path}`")
        if runtime != "auto":
            raise ArtifactError(message)
        warnings.warn(message + "; using PyTorch meanwhile", stacklevel=3)
        return None
    return session


class GraphRun:
    """An artifact's exported graph run on the first of its runtimes (tagnet.inference.runtime.graph_runtimes) that
    agrees with ONNX Runtime: one before it (OpenVINO) is compiled at once and checked on the first batch (and its
    first input alone) against ONNX Runtime's session to PARITY_TOLERANCE; one that cannot load the graph, a
    quantised graph (its numbers are ONNX Runtime's) or one that disagrees gives way to ONNX Runtime, said in a
    one-line warning. Graph inputs (N, ...) -> (N, labels) probabilities."""

    def __init__(self, session, path: Path, runtimes: tuple[str, ...]) -> None:
        self.session, self.path = session, path
        self.runtime = "onnx"  # the Predictor's name of ONNX Runtime
        self._on_session: Forward = session_forward(session, ONNX_OUTPUT)
        self._forward: Forward = self._on_session
        self._unchecked: tuple[str, Forward] | None = None  # a faster runtime, checked on the first batch
        self._lock = threading.Lock()
        faster = runtimes[:-1]  # those tried before ONNX Runtime
        if faster and QUANTIZATION_KEY in session.get_modelmeta().custom_metadata_map:
            self._warn(f"{NAMES[faster[0]]} not used for a quantised graph (its numbers are ONNX Runtime's)")
            faster = ()
        for name in faster:
            try:
                self._unchecked, self.runtime = (name, RUNNERS[name](str(path), ONNX_OUTPUT)), name
                break
            except Exception as exc:  # an operation the runtime lacks (a forest's ONNX-ML trees), a file it cannot read
                self._warn(failure_note(name, exc))

    def __call__(self, inputs: torch.Tensor) -> np.ndarray:
        """(N, labels) probabilities of a batch of graph inputs; the first batch also settles the runtime."""
        if self._unchecked is not None:
            with self._lock:
                if self._unchecked is not None:
                    self._settle(inputs)
        return self._forward(inputs.contiguous()).numpy()

    def _settle(self, inputs: torch.Tensor) -> None:
        name, forward = self._unchecked
        checks = [inputs.contiguous(), inputs[:1].contiguous()]
        chosen, _, notes = agreeing_runtime(self._on_session, {name: lambda: forward}, checks, against="ONNX Runtime")
        if chosen is None:
            self._warn("; ".join(notes))
            self.runtime = "onnx"
        else:
            self._forward = forward
        self._unchecked = None

    def _warn(self, note: str) -> None:
        warnings.warn(f"{self.path.name}: {note}; running ONNX Runtime", stacklevel=4)


class Predictor:
    """Applies a saved artifact of any modality to new inputs, with the same preprocessing and thresholds as training.

    Args:
        artifact: an Artifact or a path to an artifact / run folder.
        batch_size: inputs per forward pass.
        runtime: "auto" (ONNX Runtime when the artifact folder holds a model.onnx exported from its weights, else
            PyTorch; TAGNET_RUNTIME may name another, as for frozen outputs), "torch", "onnx" (ONNX Runtime) or
            "openvino" (OpenVINO, giving way to ONNX Runtime where it does not agree on the first batch); the order is
            tagnet.inference.runtime.graph_runtimes'. The attribute `runtime` says which runs: "torch", "onnx" or
            "openvino".
        onnx_file: the ONNX model to run (a path, or a file name inside the artifact folder such as
            model.int8.onnx); default model.onnx in the artifact folder.
        calibrated: apply the artifact's temperature scaling (from `tagnet calibrate`, if any) to the
            probabilities; False gives the model's own (what the ONNX graph outputs).
        device: where the PyTorch model runs: "auto" (a GPU when CUDA is available), "cpu", "cuda", "cuda:N" or a
            torch.device; default the TAGNET_DEVICE environment variable, else auto (tagnet.inference.runtime). On a
            GPU, runtime "auto" runs PyTorch there (bf16 when it agrees with the CPU to 1e-3 on the first batch).
    Raises:
        ConfigError: unknown runtime or device, or a runtime asked for that is not installed. ArtifactError: runtime
            "onnx" or "openvino" without a usable ONNX model.
    """

    def __init__(self, artifact: Artifact | str | Path, *, batch_size: int = 32, runtime: str = "auto",
                 onnx_file: str | Path | None = None, calibrated: bool = True,
                 device: str | torch.device | None = None) -> None:
        self.artifact = artifact if isinstance(artifact, Artifact) else load_artifact(artifact)
        self.modality = modalities.get(self.artifact.modality)
        self.batch_size = batch_size
        self.calibration = self.artifact.calibration if calibrated else None
        self.hierarchy = self.artifact.hierarchy
        self.model = self.artifact.model.eval()
        if self.modality.normalization(self.model) is not None:  # image batches arrive channels-last
            self.model = self.model.to(memory_format=torch.channels_last)
        self.device = inference_device(device)
        if runtime == "auto" and self.device.type != "cpu":  # the graph runtimes here run on the CPU only
            runtime = "torch"
        session = open_onnx_session(self.artifact, runtime=runtime, onnx_file=onnx_file)
        self.graph = None if session is None else GraphRun(session, onnx_path(self.artifact, onnx_file),
                                                           graph_runtimes(runtime))
        self._forward: Forward | None = None  # the model on self.device, chosen on the first batch

    def to(self, device: str | torch.device) -> Predictor:
        """Run the PyTorch model on `device` from the next batch on (e.g. a distributed rank's own GPU); returns self."""
        self.device, self._forward = inference_device(device), None
        if self.device.type == "cpu":
            self.model.to("cpu")
        return self

    @property
    def session(self):
        """The ONNX Runtime session of the exported graph (None: PyTorch runs the model)."""
        return None if self.graph is None else self.graph.session

    @property
    def runtime(self) -> str:
        """What runs the model: "torch", or the exported graph's runtime, "onnx" (ONNX Runtime) or "openvino" (from
        the first batch on, where OpenVINO disagrees with ONNX Runtime: "onnx")."""
        return "torch" if self.graph is None else self.graph.runtime

    @property
    def label_names(self) -> list[str]:
        return self.artifact.label_names

    @torch.inference_mode()
    def run(self, inputs: torch.Tensor) -> np.ndarray:
        """One batch of model inputs (normalised images, token ids, feature rows) -> (N, labels) probabilities
        (calibrated when the predictor is; under a hierarchy made consistent last: tagnet.hierarchy.tree.RULE)."""
        if self.graph is None and self.device.type != "cpu" and self._forward is None:
            chosen = device_forward(self.model, inputs, self.device, in_place=True)
            if chosen is None:  # no GPU precision agrees with the CPU (said in a warning)
                self.device = torch.device("cpu")
            else:
                self._forward = chosen[1]
        if self.graph is None:
            logits = self.model(inputs) if self._forward is None else self._forward(inputs)
            # in float64, then rounded: float32 sigmoid rounds a logit by its place in the vectorised loop (its tail),
            # so a label's probability would change with the number of labels (tagnet train --from adds some)
            probs = model_probabilities(torch.sigmoid(logits.double()).float().numpy(), self.hierarchy)
        else:  # the graph applies the hierarchy's rule itself
            probs = self.graph(inputs)
        return calibrated_probabilities(probs, self.calibration, self.hierarchy)

    def decide(self, probs: np.ndarray) -> np.ndarray:
        """(N, labels) bool: the labels predicted from probabilities by the artifact's thresholds (under a hierarchy
        a label only when its parent is too)."""
        return decided(probs, self.artifact.thresholds, self.hierarchy)

    def predict_proba(self, items: Sequence) -> np.ndarray:
        """(N, labels) probabilities of N inputs: image paths, PIL images or uint8 arrays; texts; or feature rows.

        Raises DataError when an input cannot be read (predict() skips unreadable files instead).
        """
        probs, kept, errors = self.modality.probabilities(self, items)
        if errors:
            raise DataError(next(iter(errors.values())))
        return probs

    def predict(self, items: Sequence, *, sources: Sequence[str] | None = None) -> PredictionResults:
        """Predict inputs as the artifact's modality takes them (see predict_proba); unreadable files are reported in
        `errors` and skipped. Sources default to the file paths, the texts, or row numbers from 1."""
        items = list(items)
        names = list(sources) if sources is not None else self.modality.default_sources(items)
        probs, kept, errors = self.modality.probabilities(self, items)
        return self.results(probs, sources=[names[i] for i in kept], errors=errors)

    def predict_paths(self, paths: Sequence[str | Path]) -> PredictionResults:
        """Predict the inputs in files: images (files, folders, globs), text files (one text per line), or feature
        tables; a file that cannot be read is reported in `errors` and skipped."""
        sources, items, errors = self.modality.read_unlabeled(paths, self)
        results = self.predict(items, sources=sources)
        results.errors = {**errors, **results.errors}
        return results

    def results(self, probs: np.ndarray, *, sources: Sequence[str],
                errors: dict[str, str] | None = None) -> PredictionResults:
        """Probabilities (N, labels) of N inputs named by `sources` -> PredictionResults with thresholded label sets."""
        chosen = self.decide(probs)
        names = np.array(self.label_names, dtype=object)
        predictions = [Prediction(src, dict(zip(self.label_names, row)), names[picked].tolist())
                       for src, row, picked in zip(sources, np.asarray(probs).tolist(), chosen)]
        return PredictionResults(predictions, list(self.label_names), dict(errors or {}), probs=np.asarray(probs))
