"""The Lightning loggers a run asks for (TrainConfig.loggers): CSV, TensorBoard, MLflow; one set per training phase."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tagnet.config.settings import TrainConfig
from tagnet.errors import ConfigError
from tagnet.training.run_folder import LOGS_DIR, MLFLOW_DIR

if TYPE_CHECKING:  # imported where a logger is made: a run without loggers never loads Lightning
    from lightning.pytorch.loggers import Logger, MLFlowLogger

EXPERIMENT = "tagnet"
PACKAGES = {"tensorboard": "tensorboard", "mlflow": "mlflow"}
SUMMARY = "summary"  # the pseudo-phase the final report's numbers are logged under


class RunLoggers:
    """The loggers of one training run.

    CSV and TensorBoard write RUN/logs/csv/PHASE and RUN/logs/tensorboard/PHASE; MLflow keeps one run (named after
    the run folder) for every phase, its metrics prefixed "PHASE-", in `mlflow_uri` (default the file store RUN/mlruns).
    """

    def __init__(self, config: TrainConfig, run_dir: Path) -> None:
        self.names = config.logger_names()
        self.config, self.run_dir = config, Path(run_dir)
        self.mlflow_run_id: str | None = None
        if "mlflow" in self.names and config.mlflow_uri is None:
            # MLflow 3 refuses its file store unless asked for it: RUN/mlruns needs no database set-up
            os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
        self.tracking_uri = config.mlflow_uri or (self.run_dir / MLFLOW_DIR).resolve().as_uri()

    def for_phase(self, phase: str) -> list[Logger]:
        """New loggers for one Trainer; each has the resolved settings as hyperparameters."""
        from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger

        loggers: list[Logger] = []
        for name in self.names:
            package = PACKAGES.get(name)
            if package and importlib.util.find_spec(package) is None:
                raise ConfigError(f"logger {name!r} needs the {package} package; install it with "
                                  f"pip install 'tagnet[loggers]'")
            if name == "csv":
                logger: Logger = CSVLogger(self.run_dir / LOGS_DIR, name="csv", version=phase)
            elif name == "tensorboard":
                logger = TensorBoardLogger(self.run_dir / LOGS_DIR, name="tensorboard", version=phase,
                                           default_hp_metric=False)
            else:
                logger = self._mlflow(phase)
            if name != "mlflow" or self.mlflow_run_id is None:  # MLflow params are set once per run
                logger.log_hyperparams(self.config.to_dict())
            if name == "mlflow":
                self.mlflow_run_id = logger.run_id
            loggers.append(logger)
        return loggers

    def _mlflow(self, phase: str) -> MLFlowLogger:
        from lightning.pytorch.loggers import MLFlowLogger

        try:
            logger = MLFlowLogger(experiment_name=EXPERIMENT, run_name=self.run_dir.name, tracking_uri=self.tracking_uri,
                                  run_id=self.mlflow_run_id, prefix="" if phase == SUMMARY else phase)
            logger.experiment  # noqa: B018 -- creates the experiment and run now, so a bad URI fails here
        except Exception as exc:  # mlflow raises its own exception types for every bad store
            raise ConfigError(f"mlflow_uri {self.tracking_uri!r} cannot be used: {str(exc).splitlines()[0]}") from None
        return logger

    def finish(self, summary: dict[str, Any]) -> None:
        """Log the final report's numbers (None left out) under the phase "summary" and close every logger."""
        values = {f"final_{key}": float(value) for key, value in summary.items() if value is not None}
        for logger in self.for_phase(SUMMARY) if self.names else []:
            logger.log_metrics(values, step=0)
            logger.finalize("success")
