"""The run folder: config.json/.yaml, run.json, metrics.json, metrics.csv and val_predictions.csv, written and read here only."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from tagnet.inference.artifact import META_FILE
from tagnet.config.settings import TrainConfig, load_config
from tagnet.errors import ArtifactError, ConfigError, DataError
from tagnet.files import write_json, write_yaml

ARTIFACT_DIR = "artifact"
CONFIG_FILE = "config.json"
CONFIG_YAML_FILE = "config.yaml"  # the same settings, for --config FILE.yaml and for reading
RUN_FILE = "run.json"
METRICS_FILE = "metrics.json"
EPOCHS_FILE = "metrics.csv"
PREDICTIONS_FILE = "val_predictions.csv"
CHECKPOINTS_DIR = "checkpoints"
LOGS_DIR = "logs"  # the csv and tensorboard loggers' folders (--logger)
MLFLOW_DIR = "mlruns"  # the MLflow file store of --logger mlflow without mlflow_uri


def start_run(out_dir: str | Path, *, resume: bool, main: bool, force: bool = False) -> Path:
    """Create the run folder; a fresh run (not `resume`) clears old per-epoch metrics, checkpoints and logger files
    (the MLflow store keeps every run), and with `force` the artifact of a finished run.

    Raises ConfigError when `out_dir` is a file, or holds a finished run and neither `resume` nor `force` is given.
    """
    run_dir = Path(out_dir)
    finished = run_dir / ARTIFACT_DIR / META_FILE
    if not resume and not force and finished.is_file():
        raise ConfigError(f"--out {run_dir} already holds a finished run ({finished}); use --force to replace it, "
                          "or another --out")
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise ConfigError(f"--out {run_dir}: a file of that name (or above it) exists; expected a folder for the run") from None
    if main and not resume:
        (run_dir / EPOCHS_FILE).unlink(missing_ok=True)
        shutil.rmtree(run_dir / CHECKPOINTS_DIR, ignore_errors=True)
        if force:
            shutil.rmtree(run_dir / ARTIFACT_DIR, ignore_errors=True)
        shutil.rmtree(run_dir / LOGS_DIR, ignore_errors=True)
    return run_dir


def _plain(value: Any) -> Any:
    return str(Path(value).resolve()) if isinstance(value, Path) else value


def write_run_start(run_dir: Path, *, config: TrainConfig, labels: str | Path, modality: str,
                    val_labels: str | Path | None, images_dir: str | Path | None, text_column: str | int | None,
                    read_options: dict[str, Any], parent: dict[str, Any] | None = None) -> None:
    """config.json and config.yaml (every resolved setting) and run.json (what was trained on, so --resume can start
    it again; with `parent`, the run it was grown from by `tagnet train --from`)."""
    write_json(run_dir / CONFIG_FILE, config.to_dict())
    write_yaml(run_dir / CONFIG_YAML_FILE, config.to_dict())
    write_json(run_dir / RUN_FILE, {
        "labels": str(Path(labels).resolve()), "val_labels": str(Path(val_labels).resolve()) if val_labels else None,
        "images_dir": str(Path(images_dir).resolve()) if images_dir else None, "text_column": text_column,
        "modality": modality, "read_options": {key: _plain(value) for key, value in read_options.items()},
        **({"parent": parent} if parent else {})})


def read_run_start(run_dir: str | Path) -> tuple[dict[str, Any], TrainConfig]:
    """(run.json, config.json) of a run folder; raises DataError when it is not one."""
    run_dir = Path(run_dir)
    try:
        run = json.loads((run_dir / RUN_FILE).read_text())
    except FileNotFoundError:
        raise DataError(f"{run_dir}: not a run folder to resume (no {RUN_FILE}); start it with tagnet train") from None
    except json.JSONDecodeError as exc:
        raise DataError(f"{run_dir / RUN_FILE}: not valid JSON ({exc.msg})") from None
    return run, load_config(run_dir / CONFIG_FILE)


def write_run_end(run_dir: Path, *, report_dict: dict, best_epoch: int, seconds: float, skipped: dict[str, str],
                  items: list[str], label_names: list[str], validation: dict[str, np.ndarray],
                  extra: dict[str, Any] | None = None) -> None:
    """metrics.json (the full validation report and how the run went) and val_predictions.csv."""
    write_json(run_dir / METRICS_FILE, {"validation": report_dict, "best_epoch": best_epoch, "seconds": round(seconds, 1),
                                        "skipped": skipped, **(extra or {})})
    with (run_dir / PREDICTIONS_FILE).open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["item"] + [f"true_{n}" for n in label_names] + [f"prob_{n}" for n in label_names])
        for item, t, k, p in zip(items, validation["targets"], validation["known"], validation["probs"]):
            truth = [int(v) if known else -1 for v, known in zip(t, k)]
            writer.writerow([item] + truth + [f"{x:.6f}" for x in p])


def read_json_file(path: Path, *, required: bool) -> dict[str, Any]:
    """A run file's JSON object ({} when it is absent and not `required`); raises ArtifactError."""
    if not path.is_file():
        if required:
            raise ArtifactError(f"{path} not found; expected a run folder written by `tagnet train`")
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ArtifactError(f"{path}: not valid JSON ({exc.msg} at line {exc.lineno})") from None
    if not isinstance(data, dict):
        raise ArtifactError(f"{path}: expected a JSON object, got {type(data).__name__}")
    return data


def read_validation_predictions(path: Path) -> tuple[list[str], list[str], np.ndarray, np.ndarray]:
    """val_predictions.csv -> (label names, items, truths (-1 unknown), probabilities)."""
    if not path.is_file():
        raise ArtifactError(f"{path} not found; expected a run folder written by `tagnet train`")
    with path.open(newline="", encoding="utf-8") as handle:
        rows = list(csv.reader(handle))
    header = rows[0] if rows else []
    names = [h[len("true_"):] for h in header if h.startswith("true_")]
    if not names or header[1:] != [f"true_{n}" for n in names] + [f"prob_{n}" for n in names]:
        raise ArtifactError(f"{path}: expected columns item, true_<label>..., prob_<label>..., got {header[:4]}...")
    body = rows[1:]
    count = len(names)
    try:
        truths = np.array([[int(v) for v in r[1:1 + count]] for r in body], dtype=np.int64).reshape(-1, count)
        probs = np.array([[float(v) for v in r[1 + count:1 + 2 * count]] for r in body], dtype=np.float64).reshape(-1, count)
    except (ValueError, IndexError):
        raise ArtifactError(f"{path}: a row has a missing or non-numeric value; expected 0/1/-1 truths and probabilities") from None
    return names, [r[0] for r in body], truths, probs


def read_epochs(run_dir: Path) -> list[dict[str, Any]]:
    """metrics.csv as one dict per epoch row ([] when absent)."""
    path = Path(run_dir) / EPOCHS_FILE
    if not path.is_file():
        return []
    with path.open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))
