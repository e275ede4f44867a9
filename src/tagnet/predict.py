"""Predictor: an artifact applied to new images, with results as dicts, JSON, CSV or a DataFrame."""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import torch
from PIL import Image

from tagnet.artifact import Artifact, load_artifact
from tagnet.data.images import load_image, normalize_batch
from tagnet.errors import DataError
from tagnet.thresholds import apply_thresholds


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
        """Write CSV (source, labels, one column per label) or JSON, chosen by the file suffix."""
        path = Path(path)
        if path.suffix.lower() == ".json":
            path.write_text(self.to_json(indent=2))
        elif path.suffix.lower() in (".csv", ".tsv"):
            with path.open("w", newline="") as handle:
                writer = csv.writer(handle, delimiter="\t" if path.suffix.lower() == ".tsv" else ",")
                writer.writerow(["source", "labels"] + self.label_names)
                for p in self.predictions:
                    writer.writerow([p.source, " ".join(p.labels)] + [f"{p.probabilities[n]:.6f}" for n in self.label_names])
        else:
            raise DataError(f"{path}: output must end in .csv, .tsv or .json")
        return path


class Predictor:
    """Applies a saved artifact to images: same resize and normalisation as training, thresholds from the artifact.

    Args:
        artifact: an Artifact or a path to an artifact / run folder.
        batch_size: images per forward pass.
    """

    def __init__(self, artifact: Artifact | str | Path, *, batch_size: int = 32) -> None:
        self.artifact = artifact if isinstance(artifact, Artifact) else load_artifact(artifact)
        self.batch_size = batch_size
        self.model = self.artifact.model.eval()

    @property
    def label_names(self) -> list[str]:
        return self.artifact.label_names

    @property
    def image_size(self) -> int:
        return self.artifact.preprocess.image_size

    def prepare(self, image: Image.Image | np.ndarray) -> np.ndarray:
        """A PIL image or HxWx3 array -> uint8 (size, size, 3) exactly as the training cache stores it."""
        if isinstance(image, np.ndarray):
            image = Image.fromarray(image)
        return np.asarray(image.convert("RGB").resize((self.image_size, self.image_size), Image.BILINEAR), dtype=np.uint8)

    @torch.inference_mode()
    def predict_proba(self, images: np.ndarray) -> np.ndarray:
        """uint8 (N, size, size, 3) -> (N, n_labels) float32 probabilities."""
        out = []
        pre = self.artifact.preprocess
        for start in range(0, len(images), self.batch_size):
            batch = torch.from_numpy(np.ascontiguousarray(images[start:start + self.batch_size])).permute(0, 3, 1, 2)
            out.append(torch.sigmoid(self.model(normalize_batch(batch, pre.mean, pre.std)).float()).numpy())
        return np.concatenate(out) if out else np.zeros((0, len(self.label_names)), np.float32)

    def _results(self, sources: Sequence[str], probs: np.ndarray, errors: dict[str, str]) -> PredictionResults:
        chosen = apply_thresholds(probs, self.artifact.thresholds) if len(probs) else np.zeros_like(probs, bool)
        predictions = [
            Prediction(src, {n: float(p) for n, p in zip(self.label_names, row)},
                       [n for n, on in zip(self.label_names, picked) if on])
            for src, row, picked in zip(sources, probs, chosen)]
        return PredictionResults(predictions, list(self.label_names), errors)

    def predict_images(self, images: Iterable[Image.Image | np.ndarray], *, sources: Sequence[str] | None = None) -> PredictionResults:
        """Predict in-memory images (PIL or arrays)."""
        arrays = [self.prepare(image) for image in images]
        names = list(sources) if sources is not None else [f"image_{i}" for i in range(len(arrays))]
        stack = np.stack(arrays) if arrays else np.zeros((0, self.image_size, self.image_size, 3), np.uint8)
        return self._results(names, self.predict_proba(stack), {})

    def predict_paths(self, paths: Sequence[str | Path]) -> PredictionResults:
        """Predict image files batch by batch; unreadable files are reported in `errors` and skipped."""
        sources, probs, errors = [], [], {}
        for start in range(0, len(paths), self.batch_size):
            arrays = []
            for path in paths[start:start + self.batch_size]:
                try:
                    arrays.append(load_image(path, self.image_size))
                    sources.append(str(path))
                except DataError as exc:
                    errors[str(path)] = str(exc)
            if arrays:
                probs.append(self.predict_proba(np.stack(arrays)))
        stacked = np.concatenate(probs) if probs else np.zeros((0, len(self.label_names)), np.float32)
        return self._results(sources, stacked, errors)
