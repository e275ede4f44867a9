"""Where and how inference runs: the device (inference_device), and the fastest runtime for a frozen network's forward
pass: on a GPU bf16/channels-last or fp32 agreeing with CPU PyTorch to GPU_TOLERANCE, on the CPU the first of OpenVINO
and ONNX Runtime (cpu_runtimes) whose outputs on the exported ONNX graph match eager PyTorch to PARITY_TOLERANCE, else
eager PyTorch; and, by the same rule, the runtimes a Predictor runs an artifact's exported graph on (graph_runtimes)."""

from __future__ import annotations

import copy
import functools
import hashlib
import importlib
import importlib.util
import io
import itertools
import os
import threading
import warnings
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from tagnet.config.settings import RUNTIMES
from tagnet.errors import ConfigError
from tagnet.files import atomic_write
from tagnet.inference.feature_cache import encoder_digest

PARITY_TOLERANCE = 1e-4  # max |OpenVINO or ONNX Runtime - PyTorch|, relative to the largest output magnitude (at least 1)
GPU_TOLERANCE = 1e-3  # the same measure for a GPU (or bf16) forward against fp32 PyTorch on the CPU
OPSET = 17
DEVICE_ENV = "TAGNET_DEVICE"  # auto (a GPU when CUDA is available), cpu, cuda or cuda:N
CACHE_ENV = "TAGNET_CACHE_DIR"  # the user's cache folder (default $XDG_CACHE_HOME/tagnet or ~/.cache/tagnet)
# auto, openvino, onnxruntime or torch: the runtime of frozen forwards on the CPU, and of a Predictor's runtime auto
RUNTIME_ENV = "TAGNET_RUNTIME"
# CPU runtimes of a frozen module's exported graph (TorchScript's), fastest first (lite0/lite2 at 2 threads: OpenVINO
# 0.71-0.80x ONNX Runtime's time)
GRAPH_RUNTIMES = ("openvino", "onnxruntime")
# the same for the graph `tagnet export` writes (torch.export's: 105 nodes for Lite0 against TorchScript's 596, which
# ONNX Runtime runs faster and OpenVINO about as fast): through the Predictor OpenVINO took 0.8-1.6x ONNX Runtime's
# time, median 1.2x (benchmarks/predictor_runtimes.py, benchmarks/RESULTS.md), so ONNX Runtime comes first
EXPORTED_RUNTIMES = ("onnxruntime", "openvino")
# OpenVINO in fp32 (no bf16 on CPUs that have it), for one batch at a time, its threads not pinned to cores (the CPU is
# shared with image decoding, other processes of a spread, other programs)
OPENVINO_CONFIG = {"INFERENCE_PRECISION_HINT": "f32", "PERFORMANCE_HINT": "LATENCY", "ENABLE_CPU_PINNING": False}
Forward = Callable[[torch.Tensor], torch.Tensor]
STRATEGIES = ("ddp",)  # launched as one script per process (Lightning's subprocess launcher), as `tagnet train` is

_COMPILED: weakref.WeakKeyDictionary[nn.Module, tuple[str, str, Forward]] = weakref.WeakKeyDictionary()


def choose_device(requested: str | None, *, cuda_count: int, source: str = DEVICE_ENV) -> torch.device:
    """The device `requested` names ("auto" or None: the first GPU when `cuda_count` > 0, else the CPU; "cpu"; "cuda",
    "gpu" or "cuda:N"), given how many CUDA devices there are.

    Raises ConfigError naming `source` for an unknown name or a GPU that is not there."""
    value = (requested or "auto").strip().lower()
    if value == "auto":
        return torch.device("cuda:0" if cuda_count > 0 else "cpu")
    if value == "cpu":
        return torch.device("cpu")
    index = "0" if value in ("cuda", "gpu") else value.removeprefix("cuda:") if value.startswith("cuda:") else None
    if index is None or not index.isdigit():
        raise ConfigError(f"{source} is {requested!r}; expected auto, cpu, cuda or cuda:N")
    if int(index) >= cuda_count:
        raise ConfigError(f"{source} is {requested!r} but torch sees {cuda_count} CUDA device(s); expected auto, cpu"
                          + (f" or cuda:0..{cuda_count - 1}" if cuda_count else ""))
    return torch.device(f"cuda:{int(index)}")


def inference_device(requested: str | torch.device | None = None) -> torch.device:
    """The one place that decides where inference runs: `requested` (the Predictor's `device`), else the TAGNET_DEVICE
    environment variable, else auto (a GPU when CUDA is available, else the CPU)."""
    if isinstance(requested, torch.device):
        return requested
    source = "device" if requested is not None else DEVICE_ENV
    requested = requested if requested is not None else os.environ.get(DEVICE_ENV)
    return choose_device(requested, cuda_count=torch.cuda.device_count() if torch.cuda.is_available() else 0,
                         source=source)


@dataclass(frozen=True)
class Spread:
    """How inference is spread: Lightning's devices (a count or auto), strategy ("auto": one process, the plain path;
    "ddp": processes) and num_nodes, as `tagnet train` takes them, and the accelerator (None: "gpu" when
    inference_device() is a GPU, else "cpu")."""

    devices: str = "auto"
    strategy: str = "auto"
    num_nodes: int = 1
    accelerator: str | None = None

    @property
    def lightning_accelerator(self) -> str:
        """The accelerator the processes run on: the one given, else where inference_device() says inference runs."""
        return self.accelerator or ("cpu" if inference_device().type == "cpu" else "gpu")

    @property
    def active(self) -> bool:
        """True when inference runs in several processes (strategy ddp); raises ConfigError for another strategy."""
        if self.strategy not in ("auto", *STRATEGIES):
            raise ConfigError(f"--strategy {self.strategy!r} for inference (predict, frozen features); expected auto "
                              f"or {', '.join(STRATEGIES)}")
        return self.strategy in STRATEGIES or self.num_nodes > 1

    @classmethod
    def of(cls, settings) -> Spread:
        """The Spread of any settings object with devices, strategy and num_nodes (and maybe accelerator)."""
        return cls(str(settings.devices), settings.strategy, int(settings.num_nodes),
                   getattr(settings, "accelerator", None))


def installed(package: str) -> bool:
    """True when the Python package `package` can be imported."""
    return importlib.util.find_spec(package) is not None


def cpu_runtimes(requested: str | None = None, *, order: tuple[str, ...] = GRAPH_RUNTIMES) -> tuple[str, ...]:
    """The runtimes to try, in order, for a frozen forward on the CPU: `requested` (default the TAGNET_RUNTIME
    environment variable, else auto). auto: those of `order` installed (for frozen graphs OpenVINO, then ONNX Runtime),
    then "torch"; a named runtime: it, then "torch" (eager PyTorch, when its output does not match).

    Raises ConfigError for an unknown name or a named runtime that is not installed."""
    source = RUNTIME_ENV if requested is None else "runtime"
    raw = requested if requested is not None else os.environ.get(RUNTIME_ENV) or "auto"
    value = raw.strip().lower()
    if value == "auto":
        return (*(name for name in order if installed(name)), "torch")
    if value == "torch":
        return ("torch",)
    if value not in GRAPH_RUNTIMES:
        raise ConfigError(f"{source} is {raw!r}; expected auto, "
                          f"{', '.join(GRAPH_RUNTIMES)} or torch")
    if not installed(value):
        raise ConfigError(f"{source} is {value!r} but {value} is not installed (pip install "
                          f"'tagnet[{'speed' if value == 'openvino' else 'serve'}]'); expected auto or torch")
    return (value, "torch")


def graph_runtimes(requested: str) -> tuple[str, ...]:
    """The runtimes a Predictor runs an artifact's exported graph (model.onnx) on, in the order tried, for its runtime
    setting `requested` (one of tagnet.config.settings.RUNTIMES): "torch": none (eager PyTorch); "onnx": ONNX Runtime;
    "openvino": OpenVINO, then ONNX Runtime; "auto": cpu_runtimes() in EXPORTED_RUNTIMES' order up to ONNX Runtime
    (TAGNET_RUNTIME's runtime, else ONNX Runtime), or none when that is torch or ONNX Runtime is not installed. ONNX
    Runtime ends every list that has one: it loads the graph, tells the weights it came from and is what a runtime
    before it must agree with.

    Raises ConfigError for an unknown name (`requested`'s or TAGNET_RUNTIME's) or a runtime asked for (OpenVINO, or
    ONNX Runtime for "onnx" and "openvino") that is not installed."""
    if requested not in RUNTIMES:
        raise ConfigError(f"runtime is {requested!r}; expected one of {', '.join(RUNTIMES)}")
    if requested == "torch":
        return ()
    chosen = ("onnxruntime",) if requested == "onnx" else cpu_runtimes(None if requested == "auto" else requested,
                                                                       order=EXPORTED_RUNTIMES)
    if not installed("onnxruntime") and requested != "auto":
        raise ConfigError(f"runtime is {requested!r} but onnxruntime is not installed (pip install 'tagnet[serve]'); "
                          "expected auto or torch")
    if chosen == ("torch",) or not installed("onnxruntime"):
        return ()
    return (*itertools.takewhile(lambda name: name not in ("onnxruntime", "torch"), chosen), "onnxruntime")


def fastest_forward(module: nn.Module, sample: torch.Tensor,
                    device: str | torch.device | None = None) -> tuple[str, Forward]:
    """(runtime name, forward) for the frozen `module` in inference mode, taking and returning CPU tensors.

    On a GPU (`device`, default inference_device()): a copy of the module there, in bf16/channels-last or fp32 as
    device_forward chooses on `sample` (a batch of real inputs). On the CPU (or when no GPU precision agrees): the first
    of cpu_runtimes() ("openvino", "onnxruntime") that runs the module's exported ONNX graph with outputs on `sample`
    agreeing with eager PyTorch, else "torch". The choice is kept per module object, device, runtimes asked for and
    weights, so a frozen module is exported or copied once per process and again when its weights change.
    """
    device = inference_device(device)
    runtimes = cpu_runtimes()
    weights = f"{device}:{','.join(runtimes)}:{encoder_digest(module, 'runtime').hexdigest()}"
    if module in _COMPILED and _COMPILED[module][1] == weights:
        return _COMPILED[module][0], _COMPILED[module][2]
    chosen = None if device.type == "cpu" or module.training else device_forward(module, sample, device)
    if chosen is None and len(runtimes) > 1 and not module.training:
        chosen = _graph_forward(module, sample, runtimes[:-1])
    name, forward = chosen or ("torch", _eager(module))
    _COMPILED[module] = (name, weights, forward)
    return name, forward


def chosen_runtime(module: nn.Module) -> str | None:
    """The runtime fastest_forward last chose for `module` in this process (None: not asked for it here)."""
    return _COMPILED[module][0] if module in _COMPILED else None


def device_forward(module: nn.Module, sample: torch.Tensor, device: torch.device, *,
                   in_place: bool = False) -> tuple[str, Forward] | None:
    """(name, forward) running `module` (in place, else a copy) on `device`: the first of bf16 autocast with
    channels-last inputs, fp32, and (on CUDA) fp32 without TF32 whose outputs on `sample` agree with fp32 PyTorch on the
    CPU to GPU_TOLERANCE; None (said in a warning) when none does. The forward takes and returns CPU tensors."""
    with torch.inference_mode(False), torch.no_grad():  # weights stay usable outside inference mode (Grad-CAM)
        want = module.to("cpu")(sample).float()
        placed = (module if in_place else copy.deepcopy(module)).to(device)
        if sample.ndim == 4:  # image batches run channels-last
            placed.to(memory_format=torch.channels_last)
    candidates = [("bf16", True, False), ("fp32", False, False)] + ([("fp32-strict", False, True)]
                                                                     if device.type == "cuda" else [])
    differences = []
    for precision, bf16, strict in candidates:
        forward = _on_device(placed, device, bf16=bf16, strict=strict)
        got = forward(sample)
        differences.append(relative_difference(got.numpy(), want.numpy()))
        if differences[-1] <= GPU_TOLERANCE:
            return f"{device.type}-{precision}", forward
    if in_place:
        with torch.inference_mode(False), torch.no_grad():
            module.to("cpu")
    warnings.warn(f"{type(module).__name__} on {device} differs from CPU PyTorch by {min(differences):.2g} in every "
                  f"precision (more than {GPU_TOLERANCE:g}); running on the CPU", stacklevel=3)
    return None


def _on_device(module: nn.Module, device: torch.device, *, bf16: bool, strict: bool) -> Forward:
    def forward(batch: torch.Tensor) -> torch.Tensor:
        batch = batch.to(device, non_blocking=True)
        if batch.ndim == 4:
            batch = batch.contiguous(memory_format=torch.channels_last)
        tf32 = torch.backends.cudnn.allow_tf32
        torch.backends.cudnn.allow_tf32 = tf32 and not strict
        try:
            with torch.inference_mode(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
                return module(batch).float().cpu()
        finally:
            torch.backends.cudnn.allow_tf32 = tf32
    return forward


def _eager(module: nn.Module) -> Forward:
    def forward(batch: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode():
            return module(batch).float()
    return forward


def _ort_forward(graph: bytes | str, output: int | str = 0) -> Forward:
    """The forward of an ONNX Runtime session of the ONNX `graph` (bytes or a file path) on the CPU, giving its output
    `output` (an index or a name)."""
    import onnxruntime

    session = onnxruntime.InferenceSession(graph, ort_session_options(), providers=["CPUExecutionProvider"])
    return session_forward(session, output)


def session_forward(session, output: int | str = 0) -> Forward:
    """The forward of an open ONNX Runtime `session`, giving its output `output` (an index or a name)."""
    name = session.get_inputs()[0].name
    wanted = None if isinstance(output, int) else [output]

    def forward(batch: torch.Tensor) -> torch.Tensor:
        array = np.ascontiguousarray(batch.detach().numpy())
        return torch.from_numpy(session.run(wanted, {name: array})[0 if wanted else output])
    return forward


@functools.cache
def _openvino_core():
    import openvino

    return openvino.Core()


def _openvino_forward(graph: bytes | str, output: int | str = 0) -> Forward:
    """The forward of the ONNX `graph` (bytes or a file path) compiled by OpenVINO for the CPU (OPENVINO_CONFIG, torch's
    thread count), giving its output `output` (an index or a name)."""
    core = _openvino_core()
    compiled = core.compile_model(core.read_model(graph), "CPU",
                                  {**OPENVINO_CONFIG, "INFERENCE_NUM_THREADS": torch.get_num_threads()})
    lock = threading.Lock()  # a compiled model's own infer request serves one call at a time

    def forward(batch: torch.Tensor) -> torch.Tensor:
        array = np.ascontiguousarray(batch.detach().numpy())
        with lock:  # outputs are copied (share_outputs=False)
            return torch.from_numpy(compiled(array, share_inputs=True)[output])
    return forward


# (graph as bytes or a file path, output index or name) -> forward
RUNNERS: dict[str, Callable[[bytes | str, int | str], Forward]] = {"openvino": _openvino_forward, "onnxruntime": _ort_forward}
NAMES = {"openvino": "OpenVINO", "onnxruntime": "ONNX Runtime"}


def user_cache_dir() -> Path:
    """The user's tagnet cache folder: TAGNET_CACHE_DIR, else $XDG_CACHE_HOME/tagnet, else ~/.cache/tagnet."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache").expanduser() / "tagnet"


def graph_path(module: nn.Module, sample: torch.Tensor) -> Path:
    """Where the exported ONNX graph of `module` for inputs shaped like `sample` (any batch size) is kept: named by a
    SHA-256 of the module's structure, every weight and buffer, the input's shape and dtype, the opset and the torch
    and onnxruntime versions (none when ONNX Runtime is not installed)."""
    ort_version = importlib.import_module("onnxruntime").__version__ if installed("onnxruntime") else ""
    digest = hashlib.sha256(f"{type(module).__qualname__}|{module!r}|{tuple(sample.shape[1:])}|{sample.dtype}|{OPSET}|"
                            f"{torch.__version__}|{ort_version}".encode())
    for name, tensor in module.state_dict().items():
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return user_cache_dir() / "onnx" / f"{digest.hexdigest()[:32]}.onnx"


def _graph_forward(module: nn.Module, sample: torch.Tensor, runtimes: tuple[str, ...]) -> tuple[str, Forward] | None:
    """(runtime, forward) of the first of `runtimes` running `module`'s ONNX graph (a dynamic batch axis) with outputs
    matching eager PyTorch on `sample` (_checked_forward), or None when export fails or none matches (said in a
    warning: eager PyTorch is then used, only slower). The exported graph (data only: an ONNX protobuf, no code) is
    kept in the user's cache folder (graph_path) once it passed the check, so a later run with the same weights skips
    the export; a kept graph is checked again on every load and exported anew when it fails."""
    sample = sample.contiguous()
    path = graph_path(module, sample)
    if path.is_file():
        try:
            chosen = _checked_forward(module, path.read_bytes(), sample, runtimes)
        except OSError:  # an unreadable file: exported again below
            chosen = None
        if chosen is not None:
            return chosen
    buffer = io.BytesIO()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(module, (sample,), buffer, input_names=["input"], output_names=["output"],
                              dynamic_axes={"input": {0: "batch"}, "output": {0: "batch"}}, opset_version=OPSET,
                              dynamo=False)
    except Exception as exc:  # any exporter failure: the eager path is always right
        warnings.warn(f"{' and '.join(NAMES[name] for name in runtimes)} not used for {type(module).__name__} "
                      f"({type(exc).__name__}: {exc}); running eager PyTorch", stacklevel=3)
        return None
    chosen = _checked_forward(module, buffer.getvalue(), sample, runtimes, warn=True)
    if chosen is not None:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write(path, lambda temp: temp.write_bytes(buffer.getvalue()))
        except OSError:  # a read-only or full cache folder: the next run exports again, nothing else is lost
            pass
    return chosen


def _checked_forward(module: nn.Module, graph: bytes, sample: torch.Tensor, runtimes: tuple[str, ...], *,
                     warn: bool = False) -> tuple[str, Forward] | None:
    """(runtime, forward) of the first of `runtimes` whose run of the ONNX `graph` differs from eager PyTorch by at most
    PARITY_TOLERANCE on `sample` and on its first input mirrored as a batch of one (a traced graph that froze a value or
    the batch size fails the second), or None. A runtime passed over for a later one is said in a warning; none
    matching only when `warn`."""
    checks = [sample, sample[:1].flip(-1).contiguous()]
    runners = {name: functools.partial(RUNNERS[name], graph) for name in runtimes}
    name, forward, notes = agreeing_runtime(_eager(module), runners, checks, against="PyTorch")
    if name is not None:
        if notes:
            warnings.warn(f"{type(module).__name__}: {'; '.join(notes)}; running {NAMES[name]}", stacklevel=4)
        return name, forward
    if warn:
        warnings.warn(f"{type(module).__name__}: {'; '.join(notes)}; running eager PyTorch", stacklevel=4)
    return None


def agreeing_runtime(reference: Forward, runners: dict[str, Callable[[], Forward]], checks: list[torch.Tensor], *,
                     against: str) -> tuple[str | None, Forward | None, list[str]]:
    """The first of `runners` (runtime name -> a function making its forward), in order, whose outputs on every batch
    of `checks` differ from those of `reference` (what `against` names) by at most PARITY_TOLERANCE
    (relative_difference): (name, forward, notes), else (None, None, notes); `notes` say why each runtime passed over
    was (its output differs, or it failed to load or run)."""
    with torch.inference_mode():
        wants = [reference(batch).numpy() for batch in checks]
    notes = []
    for name, make in runners.items():
        try:
            forward = make()
            difference = max(relative_difference(forward(batch).numpy(), want) for batch, want in zip(checks, wants))
        except Exception as exc:  # a graph the runtime cannot load or run (an op it lacks, a foreign or damaged file)
            notes.append(failure_note(name, exc))
            continue
        if difference <= PARITY_TOLERANCE:
            return name, forward, notes
        notes.append(f"{NAMES[name]} output differs from {against} by {difference:.2g} (more than {PARITY_TOLERANCE:g})")
    return None, None, notes


def failure_note(name: str, exc: Exception) -> str:
    """One line saying that the runtime `name` failed on a graph with `exc`: its message's last non-empty line (where
    OpenVINO says which operation it lacks; its first names a C++ source file), cut to 200 characters."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()] or [""]
    return f"{NAMES[name]} failed on it ({type(exc).__name__}: {lines[-1][:200]})"


def relative_difference(got: np.ndarray, want: np.ndarray) -> float:
    """max |got - want| relative to the largest magnitude of `want` (at least 1); inf when the shapes differ."""
    if got.shape != want.shape:
        return float("inf")
    return float(np.abs(got - want).max()) / max(1.0, float(np.abs(want).max()))


def ort_session_options():
    """ONNX Runtime session options for every session tagnet opens: idle worker threads sleep instead of spinning
    (on a CPU shared with other work, the server's image decoding or other processes, spinning threads halve
    throughput; on an idle CPU it costs little)."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return options
