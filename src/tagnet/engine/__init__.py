"""The Lightning adapter: the training module, one training phase and its loggers, seeding, ranks and precision;
nothing else imports Lightning."""

from tagnet.engine.fit import PhaseResult, default_precision, is_main_process, run_phase, seed_everything
from tagnet.engine.loggers import RunLoggers
from tagnet.engine.module import MultiLabelModule

__all__ = ["MultiLabelModule", "PhaseResult", "RunLoggers", "default_precision", "is_main_process", "run_phase", "seed_everything"]
