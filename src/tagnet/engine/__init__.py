"""The training engine: the Lightning adapter (fit.py: one training phase; module.py: the training module; loggers.py;
distributed.py; nothing else imports Lightning, and only where a Lightning phase runs, since its import alone takes
seconds), what a process needs without it (process.py: rank, seeds, threads, precision, a phase's result), the fast
head loop sharing its step math (steps.py), and the throughput probe; the only place optimisers are built."""

from tagnet.engine.probe import measure_throughput
from tagnet.engine.process import PhaseResult, default_precision, is_main_process, seed_everything

__all__ = ["PhaseResult", "default_precision", "is_main_process", "measure_throughput", "seed_everything"]
