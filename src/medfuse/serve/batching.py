"""Dynamic micro-batching: concurrent requests share one forward pass.

Requests wait in an asyncio queue. A collector takes the first and everything already queued behind it
(up to ``max_batch``); it waits for more, up to ``max_wait_ms`` after the first, only while requests
announced with :meth:`MicroBatcher.expect` are still being read or decoded. A request that finds no other
on its way runs at once: waiting could only delay it. Under load the model is busy when requests
arrive, so they queue and later batches fill without waiting. The batch goes to ``process`` in the
model's worker thread (so the event loop keeps serving while the model runs). Each request's future
receives its own result, or the exception ``process`` raised. Requests whose caller gave up (timeout,
disconnect) before their batch started are dropped from it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Generic, TypeVar

from medfuse.serve.errors import ApiError

log = logging.getLogger(__name__)

Item = TypeVar("Item")
Result = TypeVar("Result")


@dataclass
class BatchStats:
    """Counters of a batcher: requests and batches run, their sizes, and the longest queue seen."""

    requests: int = 0
    batches: int = 0
    largest_batch: int = 0
    dropped: int = 0
    failed_batches: int = 0
    busy_seconds: float = 0.0
    sizes: Counter[int] = field(default_factory=Counter)

    def to_dict(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "batches": self.batches,
            "mean_batch_size": round(self.requests / self.batches, 3) if self.batches else 0.0,
            "largest_batch": self.largest_batch,
            "batches_over_one": sum(n for size, n in self.sizes.items() if size > 1),
            "batch_sizes": {str(k): v for k, v in sorted(self.sizes.items())},
            "dropped": self.dropped,
            "failed_batches": self.failed_batches,
            "busy_seconds": round(self.busy_seconds, 3),
        }


class MicroBatcher(Generic[Item, Result]):
    """Collect items from concurrent callers into batches for ``process(items) -> results`` (same order).

    ``executor`` runs ``process`` (give the model's single worker thread so model calls never overlap).
    Call :meth:`start` inside the running event loop and :meth:`stop` on shutdown. A caller that will
    submit after preparing its item announces itself first (``with batcher.expect() as arrival: ...
    await arrival.submit(item)``) so that a batch waits for it; :meth:`submit` alone is never waited for.
    """

    def __init__(self, process: Callable[[Sequence[Item]], Sequence[Result]], executor: Executor, *,
                 max_batch: int = 8, max_wait_ms: float = 10.0, max_queue: int = 256) -> None:
        self.process = process
        self.executor = executor
        self.max_batch = max(1, int(max_batch))
        self.max_wait = max(0.0, float(max_wait_ms)) / 1000.0
        self.max_queue = max(1, int(max_queue))
        self.stats = BatchStats()
        self._queue: asyncio.Queue[tuple[Item, asyncio.Future[tuple[Result, int]]]] | None = None
        self._task: asyncio.Task[None] | None = None
        self._expected = 0  # announced requests not yet queued
        self._in_hand: list[tuple[Item, asyncio.Future[tuple[Result, int]]]] = []  # taken off the queue, unanswered
        self._changed: asyncio.Event | None = None  # set when a request is queued or an announcement ends

    @property
    def expected(self) -> int:
        """Requests announced with :meth:`expect` that have not submitted (or given up) yet."""
        return self._expected

    @property
    def pending(self) -> int:
        """Requests waiting for a batch."""
        return self._queue.qsize() if self._queue is not None else 0

    def start(self) -> None:
        """Start the collector in the running event loop."""
        self._queue = asyncio.Queue(maxsize=self.max_queue)
        self._changed = asyncio.Event()
        self._task = asyncio.get_running_loop().create_task(self._collect(), name="medfuse-batcher")

    async def stop(self) -> None:
        """Stop the collector; waiting callers get a 503 error."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        queue, self._queue = self._queue, None
        waiting = list(self._in_hand)
        self._in_hand = []
        while queue is not None and not queue.empty():
            waiting.append(queue.get_nowait())
        for _, future in waiting:
            if not future.done():
                future.set_exception(ApiError("not_ready", "the service is shutting down"))

    def expect(self) -> Arrival[Item, Result]:
        """Return a context manager announcing a request that will :meth:`Arrival.submit` within it."""
        return Arrival(self)

    async def submit(self, item: Item) -> tuple[Result, int]:
        """Return ``(result, batch_size)`` for ``item`` once its batch has run; re-raises its error."""
        return await self._enqueue(item)

    def _enqueue(self, item: Item) -> asyncio.Future[tuple[Result, int]]:
        if self._queue is None or self._task is None or self._task.done():
            raise ApiError("not_ready", "the model is not loaded yet")
        future: asyncio.Future[tuple[Result, int]] = asyncio.get_running_loop().create_future()
        try:
            self._queue.put_nowait((item, future))
        except asyncio.QueueFull:
            raise ApiError("overloaded", f"more than {self.max_queue} requests are waiting; retry shortly") from None
        self._wake()
        return future

    def _wake(self) -> None:
        if self._changed is not None:
            self._changed.set()

    async def _collect(self) -> None:
        assert self._queue is not None
        queue = self._queue
        changed = self._changed
        assert changed is not None
        while True:
            batch = [await queue.get()]
            self._in_hand = batch  # answered by stop() if the collector is cancelled before the batch ends
            deadline = time.monotonic() + self.max_wait
            while len(batch) < self.max_batch:
                if not queue.empty():
                    batch.append(queue.get_nowait())
                    continue
                remaining = deadline - time.monotonic()
                if self._expected <= 0 or remaining <= 0:
                    break  # nobody else is on the way, or the wait is over: run what is in hand
                changed.clear()
                try:
                    await asyncio.wait_for(changed.wait(), remaining)
                except TimeoutError:
                    break
            live = [(item, future) for item, future in batch if not future.done()]
            self.stats.dropped += len(batch) - len(live)
            if live:
                await self._run(live)
            self._in_hand = []

    async def _run(self, batch: list[tuple[Item, asyncio.Future[tuple[Result, int]]]]) -> None:
        items = [item for item, _ in batch]
        started = time.perf_counter()
        try:
            results = await self._call(items)
        except Exception as exc:
            self.stats.failed_batches += 1
            if len(batch) > 1:
                # run the items one by one so that one bad item cannot fail the others
                log.warning("a batch of %d failed (%s); running its requests one by one", len(batch), type(exc).__name__)
                for one in batch:
                    await self._run([one])
                return
            if not batch[0][1].done():
                batch[0][1].set_exception(exc)
            return
        finally:
            self.stats.busy_seconds += time.perf_counter() - started
        size = len(items)
        self.stats.requests += size
        self.stats.batches += 1
        self.stats.sizes[size] += 1
        self.stats.largest_batch = max(self.stats.largest_batch, size)
        for (_, future), result in zip(batch, results):
            if not future.done():
                future.set_result((result, size))

    async def _call(self, items: list[Item]) -> Sequence[Result]:
        results = await asyncio.get_running_loop().run_in_executor(self.executor, self.process, items)
        if len(results) != len(items):
            raise RuntimeError(f"process returned {len(results)} results for {len(items)} items")
        return results


class Arrival(Generic[Item, Result]):
    """A request announced to a :class:`MicroBatcher` while it is read and decoded (a context manager).

    Until it submits or leaves the ``with`` block, a batch being collected may wait for it (up to the
    batcher's ``max_wait_ms``); leaving without submitting (a refused input) ends that wait at once.
    """

    def __init__(self, batcher: MicroBatcher[Item, Result]) -> None:
        self._batcher = batcher
        self._counted = False

    def __enter__(self) -> Arrival[Item, Result]:
        if not self._counted:
            self._batcher._expected += 1
            self._counted = True
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self._settle()

    def _settle(self) -> None:
        if self._counted:
            self._counted = False
            self._batcher._expected -= 1
            self._batcher._wake()

    async def submit(self, item: Item) -> tuple[Result, int]:
        """Return ``(result, batch_size)`` for ``item`` once its batch has run (see :meth:`MicroBatcher.submit`)."""
        try:
            future = self._batcher._enqueue(item)
        finally:
            self._settle()
        return await future
