"""The fastest runtime present for a frozen network's forward pass: ONNX Runtime on the CPU when its outputs match eager
PyTorch to PARITY_TOLERANCE, else eager PyTorch."""

from __future__ import annotations

import importlib.util
import io
import warnings
import weakref
from collections.abc import Callable

import numpy as np
import torch
from torch import nn

from tagnet.inference.feature_cache import encoder_digest

PARITY_TOLERANCE = 1e-4  # max |ONNX Runtime - PyTorch|, relative to the largest output magnitude (at least 1)
OPSET = 17
Forward = Callable[[torch.Tensor], torch.Tensor]

_COMPILED: weakref.WeakKeyDictionary[nn.Module, tuple[str, str, Forward]] = weakref.WeakKeyDictionary()


def fastest_forward(module: nn.Module, sample: torch.Tensor) -> tuple[str, Forward]:
    """(runtime name, forward) for the frozen `module` in inference mode: "onnxruntime" when ONNX Runtime is installed,
    the module exports and its outputs on `sample` (a batch of real inputs) agree with eager PyTorch, else "torch".

    The choice is kept per module object and weights (a sample of them), so a frozen module is exported once per
    process and a module whose weights changed since is exported again.
    """
    weights = encoder_digest(module, "runtime").hexdigest()
    if module in _COMPILED and _COMPILED[module][1] == weights:
        return _COMPILED[module][0], _COMPILED[module][2]
    name, forward = "torch", _eager(module)
    if importlib.util.find_spec("onnxruntime") is not None and not module.training:
        session = _onnx_session(module, sample)
        if session is not None:
            name, forward = "onnxruntime", _ort_forward(session)
    _COMPILED[module] = (name, weights, forward)
    return name, forward


def _eager(module: nn.Module) -> Forward:
    def forward(batch: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            return module(batch).float()
    return forward


def _ort_forward(session) -> Forward:
    name = session.get_inputs()[0].name

    def forward(batch: torch.Tensor) -> torch.Tensor:
        array = np.ascontiguousarray(batch.detach().float().numpy())
        return torch.from_numpy(session.run(None, {name: array})[0])
    return forward


def _onnx_session(module: nn.Module, sample: torch.Tensor):
    """An ONNX Runtime session of `module` with a dynamic batch axis, or None when export, loading or the parity check
    on `sample` fails (said in a warning: eager PyTorch is then used, only slower)."""
    import onnxruntime

    sample = sample.contiguous()
    buffer = io.BytesIO()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(module, (sample,), buffer, input_names=["input"], output_names=["output"],
                              dynamic_axes={"input": {0: "batch"}, "output": {0: "batch"}}, opset_version=OPSET,
                              dynamo=False)
        options = onnxruntime.SessionOptions()
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")  # share the CPU with decoding
        session = onnxruntime.InferenceSession(buffer.getvalue(), options, providers=["CPUExecutionProvider"])
        # the sample, and its first input mirrored as a batch of one: a traced graph that froze a value or the batch
        # size fails the second
        checks = [sample, sample[:1].flip(-1).contiguous()]
        differences = [_difference(module, session, batch) for batch in checks]
    except Exception as exc:  # any exporter or runtime failure: the eager path is always right
        warnings.warn(f"ONNX Runtime not used for {type(module).__name__} ({type(exc).__name__}: {exc}); "
                      "running eager PyTorch", stacklevel=3)
        return None
    if not max(differences) <= PARITY_TOLERANCE:
        warnings.warn(f"ONNX Runtime output of {type(module).__name__} differs from PyTorch by {max(differences):.2g} "
                      f"(more than {PARITY_TOLERANCE:g}); running eager PyTorch", stacklevel=3)
        return None
    return session


def _difference(module: nn.Module, session, batch: torch.Tensor) -> float:
    """max |ONNX Runtime - PyTorch| on `batch`, relative to the largest output magnitude (at least 1); inf when the
    shapes differ."""
    got = session.run(None, {"input": batch.numpy()})[0]
    with torch.inference_mode():
        want = module(batch).float().numpy()
    if got.shape != want.shape:
        return float("inf")
    return float(np.abs(got - want).max()) / max(1.0, float(np.abs(want).max()))
