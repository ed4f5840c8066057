"""Predictions off the event loop, gathered into adaptive micro-batches.

A :class:`Lane` serves one release in one worker. Requests join its queue; the lane hands them to a
thread pool (the event loop never runs a model) as batches:

* when nothing of the lane is running, a request is dispatched at once (no added latency when idle);
* while a batch runs, arrivals queue and go together as the next batch when it finishes, at most
  ``max_batch`` rows (a single request larger than that goes alone): the busier the release, the
  larger its batches, with one ``predict`` call at a time;
* a second batch starts beside a running one only when that one *stalls*: it has run longer than
  ``STALL_FACTOR`` times the lane's usual batch time (a moving average) and at least ``max_wait_ms``.
  Up to ``concurrency`` batches run at once, so one slow or hung prediction leaves the others served.

Rows of the batch are concatenated into one ``predict`` call and the predictions split back by row
count, so each caller gets exactly its own rows. When the batched call raises, or returns the wrong
number of predictions, each request is retried alone: a bad request fails alone wherever the model
allows it. Without batching every request is its own ``predict`` call, in the same pool.

A caller waits at most ``timeout_s``; then it gets :class:`TimeoutError` (the app answers 504) and
its rows are dropped if they have not started. The lane reports how long its oldest running batch
has run (:meth:`Lane.stuck_s`), which is how the worker tells the supervisor it is hung.

Shadow (mirrored) copies use their own lanes on their own one-thread pool with a bounded queue
(:meth:`Lane.offer` drops what does not fit), so a slow mirror never slows or queues callers.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

BatchHook = Callable[[int], None]

STALL_FACTOR = 4.0
"""A running batch older than this many times the lane's average batch time has stalled."""
EWMA_ALPHA = 0.2


@dataclass
class _Item:
    rows: Any
    n: int
    future: asyncio.Future[Any]
    queued_at: float = field(default_factory=time.monotonic)


class Lane:
    """The queue and running batches of one release in one worker (see the module docstring)."""

    def __init__(
        self,
        predict: Callable[[Any], Any],
        pool: ThreadPoolExecutor,
        *,
        batching: bool,
        max_batch: int = 64,
        max_wait_ms: float = 2.0,
        concurrency: int = 2,
        capacity: int | None = None,
        on_batch: BatchHook | None = None,
    ) -> None:
        self.predict = predict
        self.pool = pool
        self.batching = batching
        self.max_batch = max(1, max_batch) if batching else 1
        self.max_wait_s = max_wait_ms / 1000.0 if batching else 0.0
        self.concurrency = concurrency
        self.capacity = capacity
        self.on_batch = on_batch
        self.pending: deque[_Item] = deque()
        self.pending_rows = 0
        self.running: dict[int, float] = {}
        self.usual_s = 0.0
        """Moving average of this lane's batch durations."""
        self._next = 0
        self._timer: asyncio.TimerHandle | None = None

    # -- callers ----------------------------------------------------------------------------
    async def submit(self, rows: Any, n: int, timeout_s: float) -> Any:
        """The predictions for ``rows`` (``n`` of them); raises TimeoutError after ``timeout_s``."""
        loop = asyncio.get_running_loop()
        item = _Item(rows, n, loop.create_future())
        self._enqueue(item)
        return await asyncio.wait_for(item.future, timeout_s)

    def offer(self, rows: Any, n: int) -> asyncio.Future[Any] | None:
        """Queue ``rows`` unless the lane's queue is full (then None: the copy is dropped)."""
        if self.capacity is not None and self.pending_rows + n > self.capacity:
            return None
        item = _Item(rows, n, asyncio.get_running_loop().create_future())
        self._enqueue(item)
        return item.future

    def stuck_s(self, now: float | None = None) -> float:
        """Seconds the oldest running batch has run (0 when none runs)."""
        if not self.running:
            return 0.0
        return (time.monotonic() if now is None else now) - min(self.running.values())

    # -- dispatching ------------------------------------------------------------------------
    def _enqueue(self, item: _Item) -> None:
        self.pending.append(item)
        self.pending_rows += item.n
        self._dispatch()

    def _dispatch(self) -> None:
        while self.pending and len(self.running) < self.concurrency:
            if self.running:
                age = time.monotonic() - min(self.running.values())
                limit = max(self.max_wait_s, STALL_FACTOR * self.usual_s)
                if age < limit:  # the running batch is not stalled: the queue waits for it
                    if self._timer is None:
                        self._timer = asyncio.get_running_loop().call_later(limit - age, self._on_timer)
                    return
            batch = self._take()
            if batch:
                self._start(batch)

    def _on_timer(self) -> None:
        self._timer = None
        self._dispatch()

    def _take(self) -> list[_Item]:
        batch: list[_Item] = []
        rows = 0
        while self.pending:
            item = self.pending[0]
            if item.future.done():  # timed out while queued
                self.pending.popleft()
                self.pending_rows -= item.n
                continue
            if batch and rows + item.n > self.max_batch:
                break
            self.pending.popleft()
            self.pending_rows -= item.n
            batch.append(item)
            rows += item.n
        return batch

    def _start(self, batch: list[_Item]) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        key = self._next
        self._next += 1
        self.running[key] = time.monotonic()
        if self.on_batch is not None:
            self.on_batch(sum(i.n for i in batch))
        loop = asyncio.get_running_loop()
        work = loop.run_in_executor(self.pool, _run, self.predict, [i.rows for i in batch], [i.n for i in batch])
        work.add_done_callback(lambda done: self._finish(key, batch, done))

    def _finish(self, key: int, batch: list[_Item], done: asyncio.Future[list[Any]]) -> None:
        started = self.running.pop(key, None)
        if started is not None:
            took = time.monotonic() - started
            self.usual_s = took if self.usual_s == 0 else self.usual_s + EWMA_ALPHA * (took - self.usual_s)
        results: list[Any]
        try:
            results = done.result()
        except BaseException as e:  # the pool itself failed (shut down): every caller gets the error
            results = [e] * len(batch)
        for item, result in zip(batch, results, strict=True):
            if item.future.done():
                continue
            if isinstance(result, BaseException):
                item.future.set_exception(result)
            else:
                item.future.set_result(result)
        self._dispatch()


def _run(predict: Callable[[Any], Any], parts: list[Any], counts: list[int]) -> list[Any]:
    """In a pool thread: one ``predict`` over all parts, split back; each part alone if that fails."""
    if len(parts) == 1:
        return [_one(predict, parts[0], counts[0])]
    import numpy as np

    try:
        joined = np.concatenate(parts) if isinstance(parts[0], np.ndarray) else [r for p in parts for r in p]
        out = predict(joined)
        if len(out) != sum(counts):
            raise ValueError(f"predict returned {len(out)} predictions for {sum(counts)} rows")
    except Exception:
        return [_one(predict, p, n) for p, n in zip(parts, counts, strict=True)]
    results = []
    start = 0
    for n in counts:
        results.append(out[start : start + n])
        start += n
    return results


def _one(predict: Callable[[Any], Any], rows: Any, n: int) -> Any:
    try:
        return predict(rows)
    except Exception as e:
        return e
