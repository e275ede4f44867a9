"""Inference spread over processes and machines through Lightning DDP: a map over N inputs whose outputs come back in
input order (on rank 0, or on every rank), the same as one process computes them."""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence

import lightning as L
import numpy as np
import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, DistributedSampler

from tagnet.engine.process import close_process_group_at_exit
from tagnet.inference.runtime import Spread

# step(indices, device) -> (outputs (len(indices), ...) float32, {source: reason} of inputs that could not be read)
Step = Callable[[list[int], torch.device], tuple[np.ndarray, dict[str, str]]]
# emit(indices, outputs, errors): a run of consecutive inputs, in order, each exactly once
Emit = Callable[[np.ndarray, np.ndarray, dict[str, str]], None]
_NOISE = r".*(does not have many workers|LeafSpec|predict returned None).*"


class _InOrder:
    """Outputs of gathered batches released in input order, each index once (a DistributedSampler repeats the first
    inputs to even out the ranks): memory holds at most what arrived ahead of the next index."""

    def __init__(self, emit: Emit) -> None:
        self.emit, self.next = emit, 0
        self.indices, self.outputs = np.zeros(0, np.int64), None

    def add(self, parts: list[tuple[list[int], np.ndarray, dict[str, str]]]) -> None:
        indices = np.concatenate([self.indices] + [np.asarray(p[0], np.int64) for p in parts])
        outputs = np.concatenate(([] if self.outputs is None else [self.outputs]) + [p[1] for p in parts])
        indices, first = np.unique(indices, return_index=True)  # sorted, duplicates dropped
        keep = indices >= self.next
        indices, outputs = indices[keep], outputs[first[keep]]
        ready = int(np.argmin(np.append(indices - self.next == np.arange(len(indices)), False)))
        errors = {k: v for p in parts for k, v in p[2].items()}
        if ready or errors:
            self.emit(indices[:ready], outputs[:ready], errors)
        self.next += ready
        self.indices, self.outputs = indices[ready:], outputs[ready:]


def _spread_out() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


class _MapModule(L.LightningModule):
    """predict_step runs `step` on this rank's share of the inputs and gathers every rank's outputs in order."""

    def __init__(self, step: Step, todo: Callable[[], Sequence[int]], batch_size: int, emit: Emit,
                 everywhere: bool) -> None:
        super().__init__()
        self.step, self.todo, self.batch_size, self.everywhere = step, todo, batch_size, everywhere
        self.indices = np.zeros(0, np.int64)
        self.order = _InOrder(lambda positions, outputs, errors: emit(self.indices[positions], outputs, errors))

    def predict_dataloader(self) -> DataLoader:
        chosen = [np.asarray(self.todo(), np.int64) if self.trainer.is_global_zero else None]
        if _spread_out():  # rank 0 chose (e.g. what a resumed output still lacks): every rank takes its choice
            dist.broadcast_object_list(chosen, src=0)
        self.indices = chosen[0]
        positions = range(len(self.indices))
        # padded to the same length on every rank, so each rank runs the same number of gathers
        sampler = DistributedSampler(positions, num_replicas=self.trainer.world_size, rank=self.trainer.global_rank,
                                     shuffle=False)
        return DataLoader(positions, batch_size=self.batch_size, sampler=sampler, collate_fn=list)

    def predict_step(self, batch: list[int], batch_idx: int) -> None:
        outputs, errors = self.step(self.indices[batch].tolist(), self.device)
        parts = [(batch, np.asarray(outputs, np.float32), errors)]
        if _spread_out():
            parts = parts * dist.get_world_size()
            dist.all_gather_object(parts, parts[0])
        if self.everywhere or self.trainer.is_global_zero:
            self.order.add(parts)


def map_in_order(step: Step, todo: Callable[[], Sequence[int]], *, batch_size: int, spread: Spread, emit: Emit,
                 everywhere: bool = False) -> bool:
    """Run `step` over the input indices `todo()` returns (called once, on rank 0) in batches of `batch_size`, each
    process of `spread` taking its share (a DistributedSampler), and call `emit` with the gathered outputs in the
    order of `todo()` on rank 0 (with `everywhere`, on every rank). Every process of the launch runs the same script
    (the first launches the others, as in training), so all of them call this with the same arguments.

    Returns True on the process that writes files and logs (global rank 0)."""
    trainer = L.Trainer(accelerator=spread.lightning_accelerator, devices=spread.devices, strategy="ddp",
                        num_nodes=spread.num_nodes, logger=False, enable_checkpointing=False,
                        enable_model_summary=False, enable_progress_bar=False, use_distributed_sampler=False)
    close_process_group_at_exit()
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=_NOISE)
        module = _MapModule(step, todo, batch_size, emit, everywhere)
        trainer.predict(module, return_predictions=False)
    assert not (everywhere or trainer.is_global_zero) or module.order.next == len(module.indices)
    return trainer.is_global_zero
