"""--loss auto: plain or imbalance-aware loss, whichever a probe of heads on the frozen encoder validates best."""

from __future__ import annotations

import dataclasses
import time
from typing import Any

import numpy as np

from tagnet.engine import seed_everything
from tagnet.engine.headfit import fit_head
from tagnet.engine.steps import head_score
from tagnet.models.base import make_head
from tagnet.training.losses import AUTO_CANDIDATES
from tagnet.files import write_json
from tagnet.training.run_folder import CHECKPOINTS_DIR, read_json_file

# A recipe that fine-tunes from the start has no frozen outputs: the probe embeds at most these many training and
# early-stopping rows (drawn at random), about 15 s of MiniLM on two quiet cores; the time comes out of fine-tuning,
# which gains the most per minute (benchmarks/RESULTS.md), so the sample stays small.
PROBE_TRAIN_ROWS = 2_000
PROBE_STOP_ROWS = 1_000
# Each probe head trains at most this many epochs: on GoEmotions (5,000 texts) heads of 5, 15 and 30 epochs scored
# mAP 0.305, 0.295, 0.303 on held-out texts (benchmarks/RESULTS.md), so more epochs only cost the probe time.
PROBE_EPOCHS = 5


def probe_rows(n_train: int, n_stop: int) -> int:
    """How many inputs a probe without frozen outputs embeds (what the recipe sets aside time for)."""
    return min(n_train, PROBE_TRAIN_ROWS) + min(n_stop, PROBE_STOP_ROWS)


def choose_loss(run: Any) -> None:
    """With --loss auto, the loss of every phase of `run` (tagnet.training.stages.Run): each of AUTO_CANDIDATES trains a
    head on the frozen encoder's outputs (the fast head loop, at most PROBE_EPOCHS epochs, early stopping on the
    early-stopping rows) and the best validation mAP on those rows wins (ties: the earlier candidate, plain BCE first).
    Said in one line, kept in RUN/checkpoints/loss.json (a resumed run follows it) and recorded in metrics.json and the
    artifact as `loss_choice`."""
    config = run.plan.config
    if config.loss != "auto":
        return
    path = run.run_dir / CHECKPOINTS_DIR / "loss.json"
    if run.resume and path.is_file():
        choice = read_json_file(path, required=True)  # ArtifactError (one line) for a damaged file
    else:
        choice = probe_losses(run)
        if run.main:
            path.parent.mkdir(parents=True, exist_ok=True)
            write_json(path, choice)  # atomically: an interrupted write leaves no half file for --resume
    run.loss_choice = choice
    run.plan = run.plan.with_config(dataclasses.replace(config, loss=choice["chosen"]))
    scores = ", ".join(f"{name} {score:.4f}" for name, score in choice["scores"].items())
    run.console.print(f"loss: {choice['chosen']} ({choice['how']}: validation mAP {scores or 'not probed'})",
                      soft_wrap=True)
    seed_everything(config.seed)  # the model trains the same whether or not (and however long) the probe ran


def probe_losses(run: Any) -> dict[str, Any]:
    """{"chosen", "scores" (candidate: validation mAP on the early-stopping rows), "how", "rows", "seconds"} of the
    probe; plain BCE unprobed when the network has no frozen encoder to probe on."""
    kind, config = run.plan.kind, run.plan.config
    if not kind.frozen(config):
        return {"chosen": "bce", "scores": {}, "how": "no frozen encoder to probe on", "rows": [0, 0], "seconds": 0.0}
    started = time.perf_counter()
    x, targets, known, train, stop = _probe_inputs(run)
    scores = {}
    for name in AUTO_CANDIDATES:
        head = make_head(x.shape[1], targets.shape[1], dropout=config.dropout, head_hidden=config.head_hidden)
        tried = dataclasses.replace(config, loss=name, ensemble=1, epochs=min(config.epochs, PROBE_EPOCHS))
        probs, _ = fit_head(head, x, targets, known, train, stop, config=tried, seed=config.seed)
        scores[name] = round(float(head_score(targets[stop], probs, known[stop])), 6)
    chosen = max(scores, key=scores.get)
    how = (f"the best of {len(scores)} heads on the frozen encoder, trained on {len(train)} rows and scored on "
           f"{len(stop)} early-stopping rows")
    return {"chosen": chosen, "scores": scores, "how": how, "rows": [len(train), len(stop)],
            "seconds": round(time.perf_counter() - started, 1)}


def _probe_inputs(run: Any) -> tuple[Any, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(features, targets, known, training rows, early-stopping rows) of the probe: the run's frozen outputs when it
    has them, else the frozen encoder's outputs of a random sample of the rows (PROBE_TRAIN_ROWS, PROBE_STOP_ROWS)."""
    train, val = run.splits[0]
    stop = val if run.slices is None else np.intersect1d(val, run.slices[0])
    table = run.data.table
    if run.head_inputs is not None:
        return run.head_inputs.values, table.targets, table.known, train, stop
    rng = np.random.default_rng(run.plan.config.seed)
    train = np.sort(rng.choice(train, size=min(len(train), PROBE_TRAIN_ROWS), replace=False))
    stop = np.sort(rng.choice(stop, size=min(len(stop), PROBE_STOP_ROWS), replace=False))
    rows = np.concatenate([train, stop])
    x = run.plan.kind.head_inputs(run.model, run.data.subset(rows), run.state, cache_dir=run.cache_dir,
                                  progress=run.progress).values
    return x, table.targets[rows], table.known[rows], np.arange(len(train)), len(train) + np.arange(len(stop))
