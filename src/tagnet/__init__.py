"""tagnet: multi-label classification toolkit; the public API is re-exported here.

Light parts import at once; the torch-based parts (train, evaluate, Predictor, ...) on first use,
so `tagnet --help` stays fast.
"""

from importlib import import_module
from importlib.metadata import PackageNotFoundError, version

from tagnet.config import TrainConfig, load_config
from tagnet.data.check import DatasetReport, check_dataset
from tagnet.data.labels import read_labels, write_labels
from tagnet.data.split import split_file, split_table
from tagnet.data.table import LabelTable

try:
    __version__ = version("tagnet")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0+unknown"

_LAZY = {
    "train": "tagnet.train", "resume_training": "tagnet.train", "TrainResult": "tagnet.train",
    "evaluate": "tagnet.evaluate", "evaluate_probabilities": "tagnet.metrics", "MetricsReport": "tagnet.metrics",
    "Predictor": "tagnet.predict", "load_predictor": "tagnet.predict", "PredictionResults": "tagnet.predict",
    "load_artifact": "tagnet.artifact", "create_model": "tagnet.models", "list_models": "tagnet.models",
    "fit_thresholds": "tagnet.thresholds", "Thresholds": "tagnet.thresholds", "make_loss": "tagnet.losses",
    "run_demo": "tagnet.demo", "write_synthetic_dataset": "tagnet.data.synthetic",
}


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'tagnet' has no attribute {name!r}")


__all__ = ["DatasetReport", "LabelTable", "TrainConfig", "__version__", "check_dataset", "load_config", "read_labels",
           "split_file", "split_table", "write_labels", *_LAZY]
