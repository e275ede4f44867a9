"""Per-label class-activation maps: Grad-CAM on each label's logit, as arrays and as PNG overlays."""

from __future__ import annotations

import base64
import copy
import difflib
import io
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from PIL import Image
from torch import nn

from tagnet.data.images import load_image, normalize_batch
from tagnet.errors import ConfigError, DataError, ModelError
from tagnet.modalities.image import prepare_image
from tagnet.models import TagnetModel
from tagnet.models.fused import FusedBackbone
from tagnet.inference.predictor import Predictor

# Layers that reduce a feature map rather than compute one: never a Grad-CAM target.
POOLING = (nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d, nn.LPPool2d)
HEATMAP_COLORMAP = "jet"
HEATMAP_MAX_ALPHA = 0.6

ImageInput = str | Path | Image.Image | np.ndarray


@dataclass
class Explanation:
    """One image's Grad-CAM maps.

    Attributes:
        source: the file path, or the name given to an in-memory image.
        image: the image as the model saw it, uint8 (size, size, 3).
        probabilities: every label's probability.
        labels: the labels predicted with the artifact's thresholds.
        heatmaps: label -> float32 (size, size) map in [0, 1] (1 = strongest evidence for that label).
    """

    source: str
    image: np.ndarray
    probabilities: dict[str, float]
    labels: list[str]
    heatmaps: dict[str, np.ndarray]

    def to_dict(self, *, overlay_size: tuple[int, int] | None = None) -> dict:
        """JSON-able: source, predicted labels, probabilities, and each heatmap as a PNG data URL ready to lay
        over the image (see heatmap_png; `overlay_size` (width, height) e.g. the original image's aspect)."""
        urls = {label: "data:image/png;base64," + base64.b64encode(heatmap_png(heatmap, size=overlay_size)).decode("ascii")
                for label, heatmap in self.heatmaps.items()}
        return {"source": self.source, "labels": self.labels, "probabilities": self.probabilities, "heatmaps": urls}


def _contains_pooling(module: nn.Module) -> bool:
    return any(isinstance(m, POOLING) or type(m).__name__ == "SelectAdaptivePool2d" for m in module.modules())


def find_target_layers(model: TagnetModel) -> list[nn.Module]:
    """The layers Grad-CAM looks at: per backbone (each member of a fused one), the last module that outputs a
    (B, C, H, W) map and pools nothing.

    For seed_cnn that is the second convolution's ReLU; for timm CNNs the last block or norm before global
    pooling (efficientnet: bn2, resnet: layer4). Found by tracing one forward pass of a blank image.

    Raises:
        ModelError: a backbone has no such layer or is not a channels-first CNN (ViT, Swin...).
    """
    backbones = list(model.backbone.members) if isinstance(model.backbone, FusedBackbone) else [model.backbone]
    size = model.preprocess.image_size
    blank = torch.zeros(1, 3, size, size, device=next(model.parameters()).device)
    return [_last_map_layer(backbone, model.name, blank) for backbone in backbones]


def _last_map_layer(backbone: nn.Module, name: str, blank: torch.Tensor) -> nn.Module:
    layout = getattr(backbone, "output_fmt", "NCHW")
    if str(layout) not in ("NCHW", "Format.NCHW"):
        raise ModelError(f"model {name!r} keeps its feature maps as {layout}; Grad-CAM needs a CNN with (B, C, H, W) maps")
    trace: list[tuple[nn.Module, int]] = []
    handles = [m.register_forward_hook(lambda mod, _in, out: trace.append((mod, getattr(out, "ndim", 0))))
               for m in backbone.modules() if m is not backbone]
    try:
        with torch.no_grad():
            backbone(blank)
    finally:
        for handle in handles:
            handle.remove()
    last = next((i for i in reversed(range(len(trace))) if trace[i][1] == 4 and not _contains_pooling(trace[i][0])), None)
    if last is None or any(ndim == 3 for _, ndim in trace[last:]):  # 3-D: tokens, as in vision transformers
        raise ModelError(f"model {name!r} has no convolutional feature map before its pooling; "
                         "Grad-CAM needs a CNN backbone (seed_cnn, efficientnet, resnet, ...)")
    return trace[last][0]


def _check_labels(labels: Sequence[str], label_names: Sequence[str]) -> list[str]:
    for label in labels:
        if label not in label_names:
            close = difflib.get_close_matches(label, label_names, n=3)
            hint = f" (did you mean {', '.join(close)}?)" if close else ""
            raise DataError(f"label {label!r} is not one of the model's labels{hint}; expected one of {', '.join(label_names)}")
    return list(dict.fromkeys(labels))


def _prepare(predictor: Predictor, image: ImageInput, index: int) -> tuple[str, np.ndarray]:
    size = predictor.artifact.preprocess.image_size
    if isinstance(image, (str, Path)):
        return str(image), load_image(image, size)
    if not isinstance(image, (np.ndarray, Image.Image)):
        raise DataError(f"image #{index} is a {type(image).__name__}; expected a path, a PIL image or a uint8 array")
    try:
        return f"image_{index}", prepare_image(image, size)
    except DataError as exc:
        raise DataError(f"image #{index} is {exc}") from None


def _grad_cam(model: TagnetModel, batch: torch.Tensor, label_indices: Sequence[int], *, batch_size: int) -> np.ndarray:
    """Grad-CAM of row i of `batch` for logit label_indices[i]: float32 (N, H, W) in [0, 1]."""
    try:
        from pytorch_grad_cam import GradCAM
        from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
    except ImportError as exc:
        raise ConfigError(f"heatmaps need the grad-cam package ({exc}); expected it installed: "
                          "pip install 'tagnet[explain]'") from exc

    # A private copy: the hooks added here must not see predictions running on the shared model meanwhile.
    model = copy.deepcopy(model).eval().requires_grad_(False)
    layers = find_target_layers(model)
    # Backpropagate from the logits down to the target layers only: their outputs start a fresh graph. With several
    # (a fused backbone) GradCAM averages their maps.
    start_graph = [layer.register_forward_hook(lambda _module, _args, output: output.detach().requires_grad_(True).clone())
                   for layer in layers]
    cam = GradCAM(model=model, target_layers=layers)
    maps = []
    try:
        with torch.enable_grad():
            for start in range(0, len(batch), batch_size):
                targets = [ClassifierOutputTarget(int(i)) for i in label_indices[start:start + batch_size]]
                maps.append(cam(input_tensor=batch[start:start + batch_size], targets=targets))
    finally:
        cam.activations_and_grads.release()
        for handle in start_graph:
            handle.remove()
    return np.clip(np.concatenate(maps), 0.0, 1.0).astype(np.float32)


def explain_images(predictor: Predictor, images: Sequence[ImageInput], *, labels: Sequence[str] | None = None,
                   sources: Sequence[str] | None = None, max_maps: int | None = None) -> list[Explanation]:
    """Grad-CAM heatmaps of each image for the given labels, computed on the labels' logits.

    Args:
        predictor: the image Predictor of an artifact with a CNN backbone.
        images: file paths, PIL images or uint8 (height, width, 3) arrays.
        labels: the labels to explain in every image; default each image's predicted labels.
        sources: names for the images (default: the path, or image_<i> for in-memory images).
        max_maps: most heatmaps (images x labels) to compute; more is a DataError.
    Returns:
        One Explanation per image, in order.
    Raises:
        DataError: an unreadable image, an unknown label, or over `max_maps` heatmaps.
        ModelError: not an image model, or a backbone without convolutional feature maps.
        ConfigError: the grad-cam package is not installed.
    """
    _check_explainable(predictor)
    names = list(predictor.label_names)
    wanted = _check_labels(labels, names) if labels is not None else None
    prepared = [_prepare(predictor, image, i) for i, image in enumerate(images)]
    if sources is not None:
        if len(sources) != len(prepared):
            raise DataError(f"{len(sources)} sources given for {len(prepared)} images; expected one per image")
        prepared = [(str(source), array) for source, (_, array) in zip(sources, prepared)]
    if not prepared:
        return []
    arrays = np.stack([array for _, array in prepared])
    probs = predictor.predict_proba(arrays)
    chosen = predictor.decide(probs)
    per_image = [wanted if wanted is not None else [n for n, on in zip(names, row) if on] for row in chosen]
    pairs = [(i, names.index(label)) for i, image_labels in enumerate(per_image) for label in image_labels]
    if max_maps is not None and len(pairs) > max_maps:
        raise DataError(f"{len(pairs)} heatmaps (images x labels) asked for; at most {max_maps}: explain fewer images "
                        "or choose the labels")
    pre = predictor.artifact.preprocess
    batch = normalize_batch(torch.from_numpy(arrays).permute(0, 3, 1, 2), pre.mean, pre.std)
    heatmaps: list[dict[str, np.ndarray]] = [{} for _ in prepared]
    if pairs:
        maps = _grad_cam(predictor.model, batch[[i for i, _ in pairs]], [j for _, j in pairs], batch_size=predictor.batch_size)
        for (i, j), heatmap in zip(pairs, maps):
            heatmaps[i][names[j]] = heatmap
    return [Explanation(source, array, {n: float(p) for n, p in zip(names, row)},
                        [n for n, on in zip(names, picked) if on], heatmaps[i])
            for i, ((source, array), row, picked) in enumerate(zip(prepared, probs, chosen))]


def heatmap_rgba(heatmap: np.ndarray, *, max_alpha: float = HEATMAP_MAX_ALPHA) -> np.ndarray:
    """A heatmap in [0, 1] as an overlay: uint8 (H, W, 4), jet colours, opacity growing with the value."""
    from matplotlib import colormaps

    rgba = colormaps[HEATMAP_COLORMAP](np.clip(heatmap, 0.0, 1.0))
    rgba[..., 3] = max_alpha * np.clip(heatmap, 0.0, 1.0)
    return (rgba * 255).round().astype(np.uint8)


def heatmap_png(heatmap: np.ndarray, *, size: tuple[int, int] | None = None) -> bytes:
    """The overlay of `heatmap_rgba` as PNG bytes, resized to `size` (width, height) when given."""
    image = Image.fromarray(heatmap_rgba(heatmap))
    if size is not None:
        image = image.resize(size, Image.BILINEAR)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def _file_part(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("._") or "x"


def save_explanations(explanations: Sequence[Explanation], out_dir: str | Path) -> list[Path]:
    """Write one PNG per image and explained label: the heatmap over the image, label and probability in the title.

    Files are named <image stem>__<label>.png (characters unsafe in file names become "_"; a repeated
    stem gets _2, _3... appended). Returns the paths written.
    """
    return _save(explanations, Path(out_dir), set())


def _save(explanations: Sequence[Explanation], out: Path, stems: set[str]) -> list[Path]:
    from matplotlib.figure import Figure

    out.mkdir(parents=True, exist_ok=True)
    written = []
    for explanation in explanations:
        base = stem = _file_part(Path(explanation.source).stem)
        copies = 1
        while stem in stems:
            copies += 1
            stem = f"{base}_{copies}"
        stems.add(stem)
        for label, heatmap in explanation.heatmaps.items():
            figure = Figure(figsize=(4, 4.4))
            axes = figure.add_subplot()
            axes.imshow(explanation.image)
            axes.imshow(heatmap, cmap=HEATMAP_COLORMAP, alpha=0.45, vmin=0.0, vmax=1.0, interpolation="bilinear")
            predicted = "predicted" if label in explanation.labels else "not predicted"
            axes.set_title(f"{label}: p = {explanation.probabilities[label]:.3f} ({predicted})",
                           parse_math=False)  # a label like $\x$ is text, not mathtext
            axes.set_axis_off()
            path = out / f"{stem}__{_file_part(label)}.png"
            figure.savefig(path, dpi=100, bbox_inches="tight")
            written.append(path)
    return written


@dataclass
class ExplainedFiles:
    """What explain_paths did: PNGs written, files skipped (path -> reason), images with no label to explain."""

    written: list[Path]
    skipped: dict[str, str]
    without_labels: list[str]


def _check_explainable(predictor: Predictor) -> None:
    """ModelError unless the predictor's modality has heatmaps (ModalitySpec.explainable: images)."""
    if not predictor.modality.spec.explainable:
        raise ModelError(f"{predictor.artifact.path} is a {predictor.modality.name} model; heatmaps explain image "
                         "models only")


def explain_paths(predictor: Predictor, paths: Sequence[str | Path], *, out_dir: str | Path,
                  labels: Sequence[str] | None = None) -> ExplainedFiles:
    """Explain image files batch by batch and save the overlays (see save_explanations); unreadable files are skipped.

    Args:
        predictor: the image Predictor of an artifact with a CNN backbone.
        paths: image files.
        out_dir: folder for the PNGs.
        labels: labels to explain in every image; default each image's predicted labels.
    Raises:
        DataError: an unknown label. ModelError: not an image model or no convolutional feature map.
    """
    _check_explainable(predictor)
    if labels is not None:
        _check_labels(labels, predictor.label_names)
    result = ExplainedFiles([], {}, [])
    stems: set[str] = set()
    for start in range(0, len(paths), predictor.batch_size):
        sources, arrays = [], []
        for path in paths[start:start + predictor.batch_size]:
            try:
                arrays.append(load_image(path, predictor.artifact.preprocess.image_size))
                sources.append(str(path))
            except DataError as exc:
                result.skipped[str(path)] = str(exc)
        explanations = explain_images(predictor, arrays, labels=labels, sources=sources)
        result.without_labels += [e.source for e in explanations if not e.heatmaps]
        result.written += _save(explanations, Path(out_dir), stems)
    return result
