"""ONNX specs: what each modality's exported graph takes (input, dynamic axes, sample batches, metadata) and writes beside it."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import torch
from torch import nn

from tagnet.data.images import normalize_batch
from tagnet.files import atomic_write
from tagnet.models.base import ProbabilityGraph
from tagnet.models.trees import ForestHead, forest_graph

if TYPE_CHECKING:
    from tagnet.inference.predictor import Predictor

IMAGE_SAMPLES = (1, 4)  # sizes of the sample batches of random images
IMAGE_INPUT = ("float32 {name} (batch, 3, {size}, {size}): RGB resized (bilinear) to {size}x{size}, "
               "scaled to [0, 1] by x/255, then (x - mean) / std per channel")
TEXT_INPUT = ("int64 {name} (batch, tokens): WordPiece ids from the tokenizer in {tokenizer} (tokenizers.Tokenizer"
              ".from_file: [CLS] text [SEP], at most {max_tokens} tokens, padded on the right with id {pad_id})")
SAMPLE_TEXTS = (("Thanks, you made my day!",), ("ok", "I can't believe they cancelled the show again, this is so "
                "frustrating and sad.", "What time does the game start tomorrow?", "lol"))
TOKENIZER_SUFFIX = ".tokenizer.json"
TABULAR_INPUT = ("{dtype} {name} (batch, {count}): raw feature values in feature_names order, NaN for a missing "
                 "value; the training standardisation is inside the graph")


@dataclass
class OnnxGraph:
    """What one modality exports: the module (graph inputs -> probabilities), its input name and dynamic axes, and
    sample batches both as the predictor takes them (`samples`) and as the graph does (`graph_inputs`); `build`, for a
    module torch.onnx cannot export (a forest head), makes the ONNX model itself (opset, output name) -> ModelProto."""

    module: nn.Module
    input_name: str
    dynamic_axes: dict[int, Any]
    samples: list[Any]
    graph_inputs: list[torch.Tensor]
    metadata: dict[str, str]
    build: Callable[[int, str], Any] | None = None


def _probabilities(predictor: Predictor, **standardize: Any) -> ProbabilityGraph:
    """The graph's module: the predictor's model with the sigmoid, and its hierarchy's consistency rule if any."""
    tree = predictor.hierarchy
    rule = {} if tree is None else {"up": tree.up, "steps": tree.levels - 1}
    return ProbabilityGraph(predictor.model, **standardize, **rule)


class OnnxSpec:
    """How one modality's model is exported to ONNX (tagnet.inference.export runs it and checks the parity)."""

    input_name: ClassVar[str]
    symbolic_shapes: ClassVar[bool] = True  # ONNX Runtime's symbolic shape inference can follow the graph (int8)

    def graph(self, predictor: Predictor, *, out: Path) -> OnnxGraph:
        """The module, input and sample batches of the export of `predictor`'s model to `out` (per modality)."""
        raise NotImplementedError

    def write_beside(self, predictor: Predictor, out: Path) -> Path | None:
        """Write the file the exported model at `out` needs beside it, if any; returns its path (None: none)."""
        return None


class ImageOnnx(OnnxSpec):
    """Normalised float images in; random RGB images are the samples."""

    input_name = "images"

    def graph(self, predictor, *, out) -> OnnxGraph:
        pre = predictor.artifact.preprocess
        pixels = np.random.default_rng(0).integers(0, 256, (sum(IMAGE_SAMPLES), pre.image_size, pre.image_size, 3),
                                                   dtype=np.uint8)
        samples = [pixels[:IMAGE_SAMPLES[0]], pixels[IMAGE_SAMPLES[0]:]]
        inputs = [normalize_batch(torch.from_numpy(s).permute(0, 3, 1, 2), pre.mean, pre.std).contiguous() for s in samples]
        return OnnxGraph(_probabilities(predictor), self.input_name, {0: torch.export.Dim("batch")}, samples,
                         inputs, {"preprocess": json.dumps(pre.to_dict()),
                                  "input": IMAGE_INPUT.format(name=self.input_name, size=pre.image_size)})


def tokenizer_path(onnx_path: Path) -> Path:
    """Where the tokenizer of an exported text model goes: MODEL.tokenizer.json beside MODEL.onnx."""
    return onnx_path.with_name(onnx_path.name.removesuffix(".onnx") + TOKENIZER_SUFFIX)


class TextOnnx(OnnxSpec):
    """Token ids in (the encoder, its mean pooling and the head inside); a few fixed sentences are the samples; the
    tokenizer that makes the ids is written beside the model (tokenizer_path)."""

    input_name = "input_ids"
    symbolic_shapes = False  # ORT's symbolic shape inference cannot follow the transformer's dynamic token axis

    def graph(self, predictor, *, out) -> OnnxGraph:
        encoder = predictor.model.backbone
        samples = [list(texts) for texts in SAMPLE_TEXTS]
        axes = {0: torch.export.Dim("batch"), 1: torch.export.Dim("tokens", max=encoder.max_tokens)}
        tokenizer = tokenizer_path(out).name
        return OnnxGraph(_probabilities(predictor), self.input_name, axes, samples,
                         [encoder.pad(encoder.tokenize(texts)) for texts in samples],
                         {"input": TEXT_INPUT.format(name=self.input_name, tokenizer=tokenizer,
                                                     max_tokens=encoder.max_tokens, pad_id=encoder.pad_id),
                          "tokenizer": tokenizer, "max_tokens": str(encoder.max_tokens), "pad_token_id": str(encoder.pad_id)})

    def write_beside(self, predictor, out) -> Path:
        """The encoder's fast tokenizer as one tokenizers-library file, set to truncate and pad as tagnet does."""
        from tokenizers import Tokenizer

        encoder, path = predictor.model.backbone, tokenizer_path(out)
        tokenizer = Tokenizer.from_str(encoder.tokenizer.backend_tokenizer.to_str())
        tokenizer.enable_truncation(encoder.max_tokens)
        tokenizer.enable_padding(pad_id=encoder.pad_id, pad_token=encoder.tokenizer.pad_token)
        atomic_write(path, lambda temp: tokenizer.save(str(temp)))
        return path


class TableOnnx(OnnxSpec):
    """Raw feature rows in (standardisation inside); rows drawn around the training mean, one value missing. A forest
    head's graph is the standardisation followed by its ONNX-ML trees (tagnet.models.trees.forest_graph)."""

    input_name = "features"

    def graph(self, predictor, *, out) -> OnnxGraph:
        state = predictor.artifact.state
        mean, std = np.asarray(state["mean"]), np.asarray(state["std"])
        rows = (mean + std * np.random.default_rng(0).standard_normal((5, len(mean)))).astype(np.float32)
        rows[-1, 0] = np.nan
        samples = [rows[:1], rows[1:]]
        head = predictor.model.head
        forest = isinstance(head, ForestHead)  # float64 in: standardised exactly as in training (forest_graph)
        build = None if not forest else lambda opset, output: forest_graph(
            head, mean=mean, std=std, opset=opset, input_name=self.input_name, output_name=output)
        return OnnxGraph(_probabilities(predictor, mean=mean, std=std), self.input_name,
                         {0: torch.export.Dim("batch")}, [list(s) for s in samples],
                         [torch.from_numpy(s.astype(np.float64) if forest else s) for s in samples],
                         {"feature_names": json.dumps(state["feature_names"]),
                          "input": TABULAR_INPUT.format(dtype="float64" if forest else "float32",
                                                        name=self.input_name, count=len(mean))}, build)
