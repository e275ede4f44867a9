"""tagnet: multi-label classification toolkit; the public API is re-exported here."""

from importlib.metadata import PackageNotFoundError, version

from tagnet.data.check import DatasetReport, check_dataset
from tagnet.data.labels import read_labels, write_labels
from tagnet.data.split import split_file, split_table
from tagnet.data.table import LabelTable

try:
    __version__ = version("tagnet")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0+unknown"

__all__ = ["DatasetReport", "LabelTable", "__version__", "check_dataset", "read_labels", "split_file",
           "split_table", "write_labels"]
