"""VectorPredictor: a text or tabular artifact applied to new texts or feature rows, and its evaluation on labelled files."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from tagnet.artifact import Artifact, load_artifact
from tagnet.data.labels import given_options
from tagnet.data.tabular import TABULAR_OPTIONS, read_feature_rows, standardize
from tagnet.data.text import read_text_lines
from tagnet.errors import ArtifactError, DataError, TagnetError
from tagnet.metrics import MetricsReport, evaluate_probabilities
from tagnet.predict import ONNX_INPUTS, ONNX_OUTPUT, ArtifactPredictor, PredictionResults, open_onnx_session
from tagnet.thresholds import decision_thresholds
from tagnet.train_vectors import read_vector_data


class VectorPredictor(ArtifactPredictor):
    """Applies a text or tabular artifact with the same encoder or standardisation as training and its thresholds.

    Args:
        artifact: an Artifact or a path to an artifact / run folder whose extra.modality is "text" or "tabular".
        batch_size: texts or rows per forward pass.
        runtime, onnx_file: as for tagnet.predict.Predictor: "auto" runs a current model.onnx from
            `tagnet export` on ONNX Runtime (the tokenizer still runs in Python), else PyTorch.
    Raises:
        ArtifactError: the artifact is of another modality or lacks what its modality needs, or runtime
            "onnx" without a usable ONNX model. ConfigError: unknown runtime.
    """

    def __init__(self, artifact: Artifact | str | Path, *, batch_size: int = 64, runtime: str = "auto",
                 onnx_file: str | Path | None = None) -> None:
        self.artifact = artifact if isinstance(artifact, Artifact) else load_artifact(artifact)
        self.batch_size = batch_size
        self.model = self.artifact.model.eval()
        self.extra: dict[str, Any] = self.artifact.meta.get("extra", {})
        self.modality = self.artifact.modality
        needed = {"text": ("text_column",), "tabular": ("feature_names", "standardize")}.get(self.modality)
        if needed is None:
            raise ArtifactError(f"{self.artifact.path}: modality {self.modality!r}; VectorPredictor takes text or tabular models")
        missing = [key for key in needed if key not in self.extra]
        if missing:
            raise ArtifactError(f"{self.artifact.path}: the {self.modality} model's extra lacks {', '.join(missing)}")
        if self.modality == "tabular":
            self.feature_names: list[str] = list(self.extra["feature_names"])
            self.mean = np.asarray(self.extra["standardize"]["mean"], dtype=np.float64)
            self.std = np.asarray(self.extra["standardize"]["std"], dtype=np.float64)
            if not len(self.mean) == len(self.std) == len(self.feature_names) == self.model.num_features:
                raise ArtifactError(f"{self.artifact.path}: {len(self.feature_names)} feature names, {len(self.mean)} means "
                                    f"and {len(self.std)} stds for a model of {self.model.num_features} inputs")
        self.session = open_onnx_session(self.artifact, runtime=runtime, onnx_file=onnx_file)
        self.runtime = "torch" if self.session is None else "onnx"

    def _check(self, modality: str) -> None:
        if self.modality != modality:
            raise DataError(f"{self.artifact.path} is a {self.modality} model; it cannot take {modality} inputs")

    def _probabilities(self, inputs: torch.Tensor) -> np.ndarray:
        """One batch of model inputs (token ids, or standardised rows) -> probabilities, on PyTorch or ONNX Runtime.

        The ONNX graph of a tabular model standardises itself, so it is given the raw rows (see predict_proba_rows).
        """
        if self.session is None:
            return torch.sigmoid(self.model(inputs).float()).numpy()
        return self.session.run([ONNX_OUTPUT], {ONNX_INPUTS[self.modality]: inputs.numpy()})[0]

    @torch.inference_mode()
    def predict_proba_texts(self, texts: Sequence[str]) -> np.ndarray:
        """Texts -> (N, n_labels) float32 probabilities."""
        self._check("text")
        probs = np.zeros((len(texts), len(self.label_names)), np.float32)
        for rows, ids in self.model.backbone.length_batches(texts, self.batch_size):
            probs[rows] = self._probabilities(ids)
        return probs

    @torch.inference_mode()
    def predict_proba_rows(self, rows: np.ndarray) -> np.ndarray:
        """Raw feature rows (N, n_features) in the training column order (NaN = missing) -> (N, n_labels) probabilities."""
        self._check("tabular")
        rows = np.asarray(rows, dtype=np.float64)
        if rows.ndim != 2 or rows.shape[1] != len(self.feature_names):
            raise DataError(f"feature rows of shape {rows.shape}; the model expects (rows, {len(self.feature_names)}) "
                            f"with columns {', '.join(self.feature_names[:5])}...")
        inputs = torch.from_numpy(standardize(rows, self.mean, self.std) if self.session is None
                                  else rows.astype(np.float32))
        out = [self._probabilities(inputs[start:start + self.batch_size]) for start in range(0, len(inputs), self.batch_size)]
        return np.concatenate(out) if out else np.zeros((0, len(self.label_names)), np.float32)

    def predict_texts(self, texts: Sequence[str], *, sources: Sequence[str] | None = None) -> PredictionResults:
        """Predict texts; each result's source is the text itself unless `sources` are given."""
        texts = list(texts)
        return self.results(self.predict_proba_texts(texts), sources=list(sources) if sources is not None else texts)

    def predict_rows(self, rows: np.ndarray, *, sources: Sequence[str] | None = None) -> PredictionResults:
        """Predict raw feature rows; sources default to row numbers from 1."""
        probs = self.predict_proba_rows(rows)
        return self.results(probs, sources=list(sources) if sources is not None else [str(i + 1) for i in range(len(probs))])

    def predict_paths(self, paths: Sequence[str | Path]) -> PredictionResults:
        """Predict every text (one per line) of text files, or every row of feature tables (ARFF, CSV).

        Sources are "FILE:LINE" (texts) or "FILE:ITEM" (rows); a file that cannot be read is reported in
        `errors` and skipped.
        """
        sources: list[str] = []
        probs, errors = [], {}
        for path in paths:
            try:
                if self.modality == "text":
                    texts = read_text_lines(path)
                    probs.append(self.predict_proba_texts(texts))
                    sources += [f"{path}:{n}" for n in range(1, len(texts) + 1)]
                else:
                    items, rows = read_feature_rows(path, feature_names=self.feature_names,
                                                    id_column=self.extra.get("id_column"))
                    probs.append(self.predict_proba_rows(rows))
                    sources += [f"{path}:{item}" for item in items]
            except TagnetError as exc:
                errors[str(path)] = str(exc)
        stacked = np.concatenate(probs) if probs else np.zeros((0, len(self.label_names)), np.float32)
        return self.results(stacked, sources=sources, errors=errors)


def evaluate_vectors(predictor: VectorPredictor, labels: str | Path, *,
                     read_options: dict[str, Any] | None = None,
                     threshold: float | None = None) -> tuple[MetricsReport, dict[str, str]]:
    """Score a text or tabular model on a labelled file with the artifact's thresholds.

    Text files are read with `read_options` (read_labels options; "text_column" may override the
    artifact's), or with the training run's options when none is given. Feature tables need no options:
    the label and feature columns are the model's, by name (label_columns etc. still override).

    Labels are predicted with the artifact's thresholds, or with p >= `threshold` for every label when given.

    Returns:
        (report, {}) like tagnet.evaluate.evaluate (no item is ever skipped).
    Raises:
        DataError when the file's labels or columns differ from the model's.
    """
    options = given_options(read_options or {})
    extra = predictor.extra
    if predictor.modality == "text":
        text_column = options.pop("text_column", None) or extra["text_column"]
        data = read_vector_data(labels, modality="text", text_column=text_column,
                                read_options=options or extra.get("read_options", {}))
        table = data.table.aligned_to(predictor.label_names, what=str(labels))
        probs = predictor.predict_proba_texts(data.texts)
    else:
        options = {key: value for key, value in options.items() if key in TABULAR_OPTIONS}
        if not {"label_columns", "label_count", "labels_xml"} & set(options):
            options["label_columns"] = predictor.label_names
        options.setdefault("id_column", extra.get("id_column"))
        data = read_vector_data(labels, modality="tabular", read_options=options, feature_names=predictor.feature_names)
        table = data.table.aligned_to(predictor.label_names, what=str(labels))
        probs = predictor.predict_proba_rows(data.features)
    report = evaluate_probabilities(table.targets, probs, decision_thresholds(predictor.artifact.thresholds, threshold),
                                    label_names=predictor.label_names, known=table.known)
    return report, {}
