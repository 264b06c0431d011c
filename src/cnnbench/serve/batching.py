"""Micro-batching: concurrent single-image requests answered by one model call.

A request puts its preprocessed image on an asyncio queue and awaits a future. One collector
task takes the first waiting image, waits ``max_wait_s`` for more (never longer), takes up
to ``max_batch`` in all, and hands the stacked batch to the thread pool; it then collects
the next batch while that one runs, holding at most ``concurrency`` batches in flight (one
per pool thread) so the queue, not the pool, absorbs a burst. A lone request pays
``max_wait_s`` of extra latency; under load, one call over B images costs less CPU than B
calls (fewer Python and runtime round trips), which is what raises the throughput.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass

import numpy as np


@dataclass
class BatchResult:
    probs: np.ndarray  # (classes,) of this request's image
    inference_s: float  # the whole batch's model call
    batch_size: int


class MicroBatcher:
    """Collects up to ``max_batch`` images or ``max_wait_s`` seconds into one model call."""

    def __init__(
        self,
        predict: Callable[[np.ndarray], np.ndarray],
        executor: Executor,
        *,
        max_batch: int,
        max_wait_s: float,
        concurrency: int,
        on_batch: Callable[[int, float], None] | None = None,
    ) -> None:
        self._predict = predict
        self._executor = executor
        self.max_batch = max(1, max_batch)
        self.max_wait_s = max(0.0, max_wait_s)
        self._concurrency = max(1, concurrency)
        self._on_batch = on_batch
        self._queue: asyncio.Queue[tuple[np.ndarray, asyncio.Future[BatchResult]]] | None = None
        self._task: asyncio.Task[None] | None = None
        self._slots: asyncio.Semaphore | None = None
        self._running: set[asyncio.Task[None]] = set()

    async def submit(self, x: np.ndarray) -> BatchResult:
        """Probabilities of one (C, H, W) image, computed in some batch; raises what it raised."""
        if self._task is None or self._task.done():
            # Started lazily inside the serving event loop (ASGI test clients send no lifespan).
            self._queue = asyncio.Queue()
            self._slots = asyncio.Semaphore(self._concurrency)
            self._task = asyncio.get_running_loop().create_task(self._collect())
        assert self._queue is not None
        future: asyncio.Future[BatchResult] = asyncio.get_running_loop().create_future()
        await self._queue.put((x, future))
        return await future

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, *self._running, return_exceptions=True)
            self._task = None

    async def _collect(self) -> None:
        assert self._queue is not None and self._slots is not None
        queue = self._queue
        while True:
            first = await queue.get()
            await self._slots.acquire()
            batch = [first]
            if self.max_wait_s > 0 and queue.qsize() < self.max_batch - 1:
                await asyncio.sleep(self.max_wait_s)
            while len(batch) < self.max_batch and not queue.empty():
                batch.append(queue.get_nowait())
            # Requests whose client went away no longer need an answer.
            batch = [item for item in batch if not item[1].done()]
            if not batch:
                self._slots.release()
                continue
            task = asyncio.get_running_loop().create_task(self._run(batch))
            self._running.add(task)
            task.add_done_callback(self._running.discard)

    async def _run(self, batch: list[tuple[np.ndarray, asyncio.Future[BatchResult]]]) -> None:
        assert self._slots is not None
        try:
            x = np.stack([item[0] for item in batch])
            loop = asyncio.get_running_loop()
            t0 = time.perf_counter()
            probs = await loop.run_in_executor(self._executor, self._predict, x)
            seconds = time.perf_counter() - t0
            if self._on_batch is not None:
                self._on_batch(len(batch), seconds)
            for (_, future), row in zip(batch, probs, strict=True):
                if not future.done():
                    future.set_result(BatchResult(row, seconds, len(batch)))
        except Exception as e:
            for _, future in batch:
                if not future.done():
                    future.set_exception(e)
        finally:
            self._slots.release()
