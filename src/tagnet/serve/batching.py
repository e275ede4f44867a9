"""Micro-batching: inputs from requests that arrive together go through the model in one call."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence

import numpy as np


class MicroBatcher:
    """Queues prediction jobs and runs them in batches on a worker thread, one batch at a time.

    After the first waiting job, the worker collects more for up to `window_ms` or until `max_batch`
    inputs are queued, runs `predict` once on all of them and hands each job its rows.

    Args:
        predict: a list of N prepared inputs (items, texts, rows) -> (N, n_labels) probabilities; runs in a worker thread.
        max_batch: inputs per batch at most (a single larger job still runs whole).
        window_ms: how long to wait for more jobs after the first one.
        on_batch: called with the size of each batch that ran (for metrics).
    """

    def __init__(self, predict: Callable[[list], np.ndarray], *, max_batch: int, window_ms: float,
                 on_batch: Callable[[int], None] = lambda size: None) -> None:
        self.predict_fn, self.max_batch, self.window_s, self.on_batch = predict, max_batch, window_ms / 1000.0, on_batch
        self._queue: asyncio.Queue[tuple[list, asyncio.Future]] | None = None
        self._worker: asyncio.Task | None = None

    def start(self) -> None:
        """Start the worker on the running event loop."""
        self._queue = asyncio.Queue()
        self._worker = asyncio.create_task(self._run(), name="tagnet-batcher")

    async def stop(self) -> None:
        """Stop the worker; jobs still waiting are cancelled."""
        if self._worker is not None:
            self._worker.cancel()
            await asyncio.gather(self._worker, return_exceptions=True)
        while self._queue is not None and not self._queue.empty():
            self._queue.get_nowait()[1].cancel()

    async def predict(self, items: Sequence) -> np.ndarray:
        """Queue N prepared inputs and wait for their probabilities (N, n_labels)."""
        if self._worker is None:  # an app used without its lifespan (a plain test client): one call per request
            probs = await asyncio.to_thread(self.predict_fn, list(items))
            self.on_batch(len(items))
            return probs
        future = asyncio.get_running_loop().create_future()
        await self._queue.put((items, future))
        return await future

    async def _collect(self) -> list[tuple[Sequence, asyncio.Future]]:
        jobs = [await self._queue.get()]
        count = len(jobs[0][0])
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.window_s
        while count < self.max_batch:
            try:
                job = self._queue.get_nowait() if loop.time() >= deadline else \
                    await asyncio.wait_for(self._queue.get(), deadline - loop.time())
            except (asyncio.QueueEmpty, TimeoutError):
                break
            jobs.append(job)
            count += len(job[0])
        return [(items, future) for items, future in jobs if not future.cancelled()]

    async def _run(self) -> None:
        while True:
            jobs = await self._collect()
            if not jobs:
                continue
            batch = [item for items, _ in jobs for item in items]
            try:
                probs = await asyncio.to_thread(self.predict_fn, batch)
            except Exception as exc:  # the worker must outlive any failure: each waiting request gets the error
                for _, future in jobs:
                    if not future.done():
                        future.set_exception(exc)
                continue
            self.on_batch(len(batch))
            start = 0
            for items, future in jobs:
                if not future.done():
                    future.set_result(probs[start:start + len(items)])
                start += len(items)
