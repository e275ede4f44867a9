"""tagnet: multi-label classification toolkit; the public API is re-exported here.

Light parts import at once; the torch-based parts (train, evaluate, Predictor, ...) on first use,
so `tagnet --help` stays fast.
"""

import os

# Idle OpenMP threads sleep instead of spinning. PyTorch's default (spinning) makes small per-image ops and
# tiny heads 10-100x slower whenever another process shares the cores (measured: uint8 augmentation 30 vs
# 1,900 images/s on 2 busy cores). Read by OpenMP when torch loads, so it must be set before torch is imported;
# a value the user set wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from importlib import import_module  # noqa: E402
from importlib.metadata import PackageNotFoundError, version  # noqa: E402

from tagnet.config.settings import TrainConfig, load_config  # noqa: E402
from tagnet.data.check import DatasetReport, check_dataset  # noqa: E402
from tagnet.data.labels import read_labels, write_labels  # noqa: E402
from tagnet.data.split import split_file, split_table  # noqa: E402
from tagnet.data.label_table import LabelTable  # noqa: E402

try:
    __version__ = version("tagnet")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0+unknown"

_LAZY = {
    "train": "tagnet.training.trainer", "resume_training": "tagnet.training.trainer", "TrainResult": "tagnet.training.trainer",
    "evaluate": "tagnet.evaluation.evaluate", "evaluate_probabilities": "tagnet.evaluation.metrics", "MetricsReport": "tagnet.evaluation.metrics",
    "Predictor": "tagnet.inference.predictor", "PredictionResults": "tagnet.inference.predictor",
    "export_onnx": "tagnet.inference.export", "tune": "tagnet.tuning.search", "create_app": "tagnet.serve",
    "load_artifact": "tagnet.inference.artifact", "create_model": "tagnet.models", "list_models": "tagnet.models",
    "fit_thresholds": "tagnet.decisions.thresholds", "Thresholds": "tagnet.decisions.thresholds", "make_loss": "tagnet.training.losses",
    "run_demo": "tagnet.demo", "write_synthetic_dataset": "tagnet.data.synthetic",
    "calibrate": "tagnet.decisions.refit",
}


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'tagnet' has no attribute {name!r}")


__all__ = ["DatasetReport", "LabelTable", "TrainConfig", "__version__", "check_dataset", "load_config", "read_labels",
           "split_file", "split_table", "write_labels", *_LAZY]
