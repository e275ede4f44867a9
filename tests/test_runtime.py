"""The fastest runtime for frozen forwards: ONNX Runtime when it matches eager PyTorch, else PyTorch."""

import numpy as np
import pytest
import torch
from torch import nn

from tagnet.inference.runtime import PARITY_TOLERANCE, fastest_forward


def small_cnn() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten()).eval()


def test_onnx_runtime_is_chosen_and_matches_pytorch():
    module, batch = small_cnn(), torch.randn(5, 3, 16, 16)
    name, forward = fastest_forward(module, batch)
    assert name == "onnxruntime"
    other = torch.randn(3, 3, 16, 16)  # another batch size: the batch axis is dynamic
    with torch.inference_mode():
        want = module(other)
    assert forward(other).shape == (3, 8)
    assert float((forward(other) - want).abs().max()) <= PARITY_TOLERANCE


def test_changed_weights_are_exported_again():
    module, batch = small_cnn(), torch.randn(2, 3, 16, 16)
    first = fastest_forward(module, batch)[1]
    assert fastest_forward(module, batch)[1] is first  # same weights: the same session
    with torch.no_grad():
        module[0].bias.add_(1.0)
    name, forward = fastest_forward(module, batch)
    with torch.inference_mode():
        want = module(batch)
    assert name == "onnxruntime" and forward is not first
    assert float((forward(batch) - want).abs().max()) <= PARITY_TOLERANCE


class FrozenByTracing(nn.Module):
    """Its output goes through NumPy, so a traced export freezes the first batch's values."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(x.mean(dim=(2, 3)).numpy() * 2)


def test_a_graph_that_traced_wrong_falls_back_to_pytorch():
    batch = torch.randn(4, 3, 8, 8)
    with pytest.warns(UserWarning, match="running eager PyTorch"):
        name, forward = fastest_forward(FrozenByTracing().eval(), batch)
    assert name == "torch"
    np.testing.assert_allclose(forward(batch).numpy(), batch.mean(dim=(2, 3)).numpy() * 2, rtol=1e-6)


def test_a_module_in_training_mode_runs_eager():
    module = small_cnn().train()
    assert fastest_forward(module, torch.randn(2, 3, 16, 16))[0] == "torch"
