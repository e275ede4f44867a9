"""The training engine: the Lightning adapter (the training module, one training phase and its loggers, seeding, ranks
and precision; nothing else imports Lightning), the fast head loop sharing its step math (steps.py), and the
throughput probe; the only place optimisers are built."""

from tagnet.engine.fit import PhaseResult, default_precision, is_main_process, run_phase, seed_everything
from tagnet.engine.loggers import RunLoggers
from tagnet.engine.module import MultiLabelModule
from tagnet.engine.probe import measure_throughput

__all__ = ["MultiLabelModule", "PhaseResult", "RunLoggers", "default_precision", "is_main_process", "measure_throughput",
           "run_phase", "seed_everything"]
