"""Where inference runs and how: the device chosen, OpenVINO or ONNX Runtime when it matches eager PyTorch (each installed
one exercised, forced through TAGNET_RUNTIME), bf16 only where it agrees with fp32, inference spread over processes with
outputs in input order."""

import copy

import numpy as np
import pytest
import torch
from torch import nn

from tagnet.errors import ConfigError
from tagnet.inference import runtime
from tagnet.inference.runtime import (CACHE_ENV, DEVICE_ENV, GPU_TOLERANCE, GRAPH_RUNTIMES, PARITY_TOLERANCE,
                                     RUNTIME_ENV, Spread, choose_device, chosen_runtime, cpu_runtimes, device_forward,
                                     fastest_forward, graph_path, graph_runtimes, inference_device, installed)

INSTALLED = [name for name in GRAPH_RUNTIMES if installed(name)]  # the serve/trees extras bring onnxruntime, speed openvino


def small_cnn() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten()).eval()


@pytest.fixture(params=INSTALLED)
def graph_runtime(request, monkeypatch) -> str:
    """Each installed graph runtime in turn, forced through TAGNET_RUNTIME."""
    monkeypatch.setenv(RUNTIME_ENV, request.param)
    return request.param


def test_the_fastest_installed_runtime_is_chosen_by_default(monkeypatch):
    monkeypatch.delenv(RUNTIME_ENV, raising=False)
    assert cpu_runtimes() == (*INSTALLED, "torch")
    module, batch = small_cnn(), torch.randn(2, 3, 16, 16)
    assert fastest_forward(module, batch)[0] == INSTALLED[0] == chosen_runtime(module)
    monkeypatch.setattr(runtime, "installed", lambda package: package == "onnxruntime")  # as without the speed extra
    assert cpu_runtimes() == ("onnxruntime", "torch")
    assert fastest_forward(copy.deepcopy(module), batch)[0] == "onnxruntime"


def test_a_runtime_can_be_forced_and_a_bad_one_is_refused(monkeypatch):
    assert cpu_runtimes("torch") == ("torch",) and cpu_runtimes(" OpenVINO ")[0] == "openvino"
    monkeypatch.setenv(RUNTIME_ENV, "torch")
    module = small_cnn()
    assert fastest_forward(module, torch.randn(2, 3, 16, 16))[0] == "torch" == chosen_runtime(module)
    assert chosen_runtime(small_cnn()) is None
    monkeypatch.setenv(RUNTIME_ENV, "tensorrt")
    with pytest.raises(ConfigError, match="TAGNET_RUNTIME is 'tensorrt'; expected auto, openvino, onnxruntime or torch"):
        fastest_forward(module, torch.randn(2, 3, 16, 16))
    monkeypatch.setattr(runtime, "installed", lambda package: False)
    with pytest.raises(ConfigError, match=r"runtime is 'openvino' but openvino is not installed \(pip install 'tagnet\[speed"):
        cpu_runtimes("openvino")
    assert cpu_runtimes("auto") == ("torch",)


def test_a_runtime_that_does_not_match_gives_way_to_the_next(monkeypatch):
    monkeypatch.delenv(RUNTIME_ENV, raising=False)
    monkeypatch.setattr(runtime, "installed", lambda package: package in GRAPH_RUNTIMES)

    def off(graph):
        return lambda batch: torch.zeros(len(batch), 8)  # a runtime that gets the wrong answer

    monkeypatch.setitem(runtime.RUNNERS, "openvino", off)
    module, batch = small_cnn(), torch.randn(3, 3, 16, 16)
    with pytest.warns(UserWarning, match=r"OpenVINO output differs from PyTorch by .* running ONNX Runtime"):
        name, forward = fastest_forward(module, batch)
    with torch.inference_mode():
        want = module(batch)
    assert name == "onnxruntime" and float((forward(batch) - want).abs().max()) <= PARITY_TOLERANCE


def test_the_graph_runtime_is_chosen_and_matches_pytorch(graph_runtime):
    module, batch = small_cnn(), torch.randn(5, 3, 16, 16)
    name, forward = fastest_forward(module, batch)
    assert name == graph_runtime
    other = torch.randn(3, 3, 16, 16)  # another batch size: the batch axis is dynamic
    with torch.inference_mode():
        want = module(other)
    assert forward(other).shape == (3, 8)
    assert float((forward(other) - want).abs().max()) <= PARITY_TOLERANCE


def test_changed_weights_are_exported_again(graph_runtime):
    module, batch = small_cnn(), torch.randn(2, 3, 16, 16)
    first = fastest_forward(module, batch)[1]
    assert fastest_forward(module, batch)[1] is first  # same weights: the same session
    with torch.no_grad():
        module[0].bias.add_(1.0)
    name, forward = fastest_forward(module, batch)
    with torch.inference_mode():
        want = module(batch)
    assert name == graph_runtime and forward is not first
    assert float((forward(batch) - want).abs().max()) <= PARITY_TOLERANCE


class FrozenByTracing(nn.Module):
    """Its output goes through NumPy, so a traced export freezes the first batch's values."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(x.mean(dim=(2, 3)).numpy() * 2)


def test_a_graph_that_traced_wrong_falls_back_to_pytorch(graph_runtime):
    batch = torch.randn(4, 3, 8, 8)
    with pytest.warns(UserWarning, match="running eager PyTorch"):
        name, forward = fastest_forward(FrozenByTracing().eval(), batch)
    assert name == "torch"
    np.testing.assert_allclose(forward(batch).numpy(), batch.mean(dim=(2, 3)).numpy() * 2, rtol=1e-6)


def test_an_exported_graph_is_kept_and_a_later_process_skips_the_export(graph_runtime, monkeypatch, tmp_path):
    monkeypatch.setenv(CACHE_ENV, str(tmp_path))
    module, batch = small_cnn(), torch.randn(4, 3, 16, 16)
    assert fastest_forward(module, batch)[0] == graph_runtime
    kept = graph_path(module, batch)
    assert kept.parent == tmp_path / "onnx" and kept.is_file()
    assert graph_path(module, torch.randn(1, 3, 16, 16)) == kept  # any batch size: the batch axis is dynamic
    assert graph_path(module, torch.randn(1, 3, 20, 20)) != kept

    def no_export(*args, **kwargs):
        raise AssertionError("exported again")

    monkeypatch.setattr(torch.onnx, "export", no_export)
    again = copy.deepcopy(module)  # another module object with the same weights, as in a later process
    name, forward = fastest_forward(again, batch)
    with torch.inference_mode():
        want = module(batch)
    assert name == graph_runtime and float((forward(batch) - want).abs().max()) <= PARITY_TOLERANCE
    with torch.no_grad():
        again[0].bias.add_(1.0)
    assert graph_path(again, batch) != kept  # other weights: another graph


def test_a_kept_graph_that_fails_to_load_or_to_match_is_exported_again(graph_runtime, monkeypatch, tmp_path):
    monkeypatch.setenv(CACHE_ENV, str(tmp_path))
    module, batch = small_cnn(), torch.randn(3, 3, 16, 16)
    kept = graph_path(module, batch)
    kept.parent.mkdir(parents=True)
    kept.write_bytes(b"not an ONNX graph")
    name, forward = fastest_forward(module, batch)
    with torch.inference_mode():
        want = module(batch)
    assert name == graph_runtime and float((forward(batch) - want).abs().max()) <= PARITY_TOLERANCE
    assert kept.read_bytes()[:4] != b"not "  # replaced by the new export


def test_a_graph_that_fails_the_check_is_not_kept(graph_runtime, monkeypatch, tmp_path):
    monkeypatch.setenv(CACHE_ENV, str(tmp_path))
    with pytest.warns(UserWarning, match="running eager PyTorch"):
        assert fastest_forward(FrozenByTracing().eval(), torch.randn(4, 3, 8, 8))[0] == "torch"
    assert not (tmp_path / "onnx").exists() or not any((tmp_path / "onnx").iterdir())


def test_a_module_in_training_mode_runs_eager():
    module = small_cnn().train()
    assert fastest_forward(module, torch.randn(2, 3, 16, 16))[0] == "torch"


@pytest.mark.parametrize(("requested", "cuda_count", "expected"), [
    (None, 0, "cpu"), ("auto", 0, "cpu"), (None, 2, "cuda:0"), ("AUTO", 1, "cuda:0"), ("cpu", 2, "cpu"),
    ("cuda", 1, "cuda:0"), ("gpu", 1, "cuda:0"), ("cuda:1", 2, "cuda:1"),
])
def test_the_device_is_chosen_from_the_request_and_the_gpus_present(requested, cuda_count, expected):
    assert choose_device(requested, cuda_count=cuda_count) == torch.device(expected)


@pytest.mark.parametrize(("requested", "cuda_count", "message"), [
    ("cuda", 0, "torch sees 0 CUDA device"), ("cuda:2", 2, r"expected auto, cpu or cuda:0\.\.1"),
    ("tpu", 1, "expected auto, cpu, cuda or cuda:N"), ("cuda:x", 1, "expected auto, cpu, cuda or cuda:N"),
])
def test_a_device_that_is_not_there_is_refused(requested, cuda_count, message):
    with pytest.raises(ConfigError, match=message):
        choose_device(requested, cuda_count=cuda_count, source="TAGNET_DEVICE")


def test_the_environment_variable_sets_the_default_device(monkeypatch):
    monkeypatch.setenv(DEVICE_ENV, "cpu")
    assert inference_device() == torch.device("cpu")
    monkeypatch.setenv(DEVICE_ENV, "npu")
    with pytest.raises(ConfigError, match="TAGNET_DEVICE is 'npu'"):
        inference_device()
    assert inference_device("cpu") == torch.device("cpu")  # an explicit request wins


def test_bf16_is_kept_only_where_it_agrees_with_fp32():
    # integer weights and inputs small enough for bf16 to hold exactly: bf16 agrees
    exact = nn.Sequential(nn.Conv2d(3, 4, 3, bias=False), nn.Flatten()).eval()
    with torch.no_grad():
        exact[0].weight.copy_(torch.randint(-2, 3, exact[0].weight.shape).float())
    batch = torch.randint(0, 4, (3, 3, 8, 8)).float()
    name, forward = device_forward(exact, batch, torch.device("cpu"))
    assert name == "cpu-bf16"
    np.testing.assert_array_equal(forward(batch).numpy(), exact(batch).detach().numpy())
    # a random CNN on random inputs: bf16 is off by more than GPU_TOLERANCE, so fp32 runs
    module, batch = small_cnn(), torch.randn(4, 3, 16, 16) * 50
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
        rough = module(batch).float()
    with torch.inference_mode():
        want = module(batch)
    assert float((rough - want).abs().max()) > GPU_TOLERANCE * float(want.abs().max())
    name, forward = device_forward(module, batch, torch.device("cpu"))
    assert name == "cpu-fp32"
    assert float((forward(batch) - want).abs().max()) <= 1e-5


def test_a_device_copy_leaves_the_module_usable_with_gradients():
    module = small_cnn()
    device_forward(module, torch.randn(2, 3, 16, 16), torch.device("cpu"), in_place=True)
    loss = module(torch.randn(2, 3, 16, 16)).sum()  # not inference tensors: Grad-CAM can backpropagate
    loss.backward()
    assert module[0].weight.grad is not None


@pytest.mark.parametrize(("strategy", "num_nodes", "active"), [("auto", 1, False), ("ddp", 1, True),
                                                               ("auto", 2, True)])
def test_inference_is_spread_with_ddp_or_several_machines(strategy, num_nodes, active):
    assert Spread(devices="2", strategy=strategy, num_nodes=num_nodes).active is active


def test_the_processes_run_where_inference_runs(monkeypatch):
    monkeypatch.setenv(DEVICE_ENV, "cpu")
    assert Spread(strategy="ddp").lightning_accelerator == "cpu"
    assert Spread(strategy="ddp", accelerator="gpu").lightning_accelerator == "gpu"  # as given (tagnet train's)


def test_other_strategies_are_refused_for_inference():
    with pytest.raises(ConfigError, match="--strategy 'fsdp' for inference"):
        _ = Spread(strategy="fsdp").active


def test_gathered_batches_come_out_in_input_order_each_once():
    from tagnet.engine.distributed import _InOrder

    emitted = []
    order = _InOrder(lambda indices, rows, errors: emitted.append((indices.tolist(), rows[:, 0].tolist(), errors)))
    # 5 inputs, 2 ranks, batches of 2: the sampler gives rank 0 [0, 2, 4] and rank 1 [1, 3, 0] (padded with input 0)
    rows = lambda indices: np.array([[10.0 * i] for i in indices], np.float32)  # noqa: E731
    order.add([([0, 2], rows([0, 2]), {}), ([1, 3], rows([1, 3]), {"b.png": "unreadable"})])
    order.add([([4], rows([4]), {}), ([0], rows([0]), {})])
    assert emitted == [([0, 1, 2, 3], [0.0, 10.0, 20.0, 30.0], {"b.png": "unreadable"}), ([4], [40.0], {})]
    # a rank ahead of the others: held back until the gap is filled
    emitted.clear()
    late = _InOrder(lambda indices, rows, errors: emitted.append(indices.tolist()))
    late.add([([2, 3], rows([2, 3]), {})])
    assert emitted == []
    late.add([([0, 1], rows([0, 1]), {})])
    assert emitted == [[0, 1, 2, 3]]


class Noisy(nn.Module):
    """Different on every call: no device precision can agree with the CPU reference."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=(2, 3)) + torch.rand(x.shape[0], 3) * 10


def test_no_agreeing_precision_means_the_cpu_path():
    module, batch = Noisy().eval(), torch.randn(2, 3, 8, 8)
    with pytest.warns(UserWarning, match="in every precision .more than 0.001.; running on the CPU"):
        assert device_forward(module, batch, torch.device("cpu"), in_place=True) is None


def test_the_predictors_graph_runs_on_onnx_runtime_unless_another_is_named(monkeypatch):
    monkeypatch.delenv(RUNTIME_ENV, raising=False)
    monkeypatch.setattr(runtime, "installed", lambda package: True)
    assert [graph_runtimes(name) for name in ("auto", "torch", "onnx", "openvino")] == [
        ("onnxruntime",), (), ("onnxruntime",), ("openvino", "onnxruntime")]
    for named, expected in [("openvino", ("openvino", "onnxruntime")), ("onnxruntime", ("onnxruntime",)), ("torch", ())]:
        monkeypatch.setenv(RUNTIME_ENV, named)
        assert graph_runtimes("auto") == expected and graph_runtimes("onnx") == ("onnxruntime",)
    monkeypatch.delenv(RUNTIME_ENV)
    monkeypatch.setattr(runtime, "installed", lambda package: package == "openvino")
    assert graph_runtimes("auto") == ()  # no ONNX Runtime: eager PyTorch, as before
    with pytest.raises(ConfigError, match="runtime is 'onnx' but onnxruntime is not installed"):
        graph_runtimes("onnx")
    with pytest.raises(ConfigError, match="runtime is 'gpu'; expected one of auto, torch, onnx, openvino"):
        graph_runtimes("gpu")


@pytest.mark.parametrize("name", INSTALLED)
def test_each_runner_takes_a_graph_as_bytes_or_a_file_and_gives_an_output_by_index_or_name(name, tmp_path):
    module, batch = small_cnn(), torch.randn(3, 3, 16, 16)
    path = tmp_path / "graph.onnx"
    torch.onnx.export(module, (batch,), str(path), input_names=["input"], output_names=["features"],
                      dynamic_axes={"input": {0: "batch"}}, opset_version=runtime.OPSET, dynamo=False)
    with torch.inference_mode():
        want = module(batch)
    for forward in (runtime.RUNNERS[name](path.read_bytes()), runtime.RUNNERS[name](str(path), "features")):
        assert forward(batch).shape == (3, 8) and float((forward(batch) - want).abs().max()) <= PARITY_TOLERANCE
