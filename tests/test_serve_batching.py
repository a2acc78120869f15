"""The micro-batcher: a lone request runs at once, announced requests are waited for, batches stay in bounds."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from concurrent.futures import Executor, Future
from typing import Any

import pytest

from medfuse.serve.batching import MicroBatcher
from medfuse.serve.errors import ApiError

LONG_WAIT_MS = 10_000.0  # a batch that waited out this window would make the test time out instead


class InlineExecutor(Executor):
    """Runs each call at once in the caller's thread (the batches' order is then the test's to read)."""

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        future: Future[Any] = Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except Exception as exc:
            future.set_exception(exc)
        return future


class Recorder:
    """A ``process`` that doubles each item and records the batches it was given."""

    def __init__(self) -> None:
        self.batches: list[list[int]] = []

    def __call__(self, items: Sequence[int]) -> list[int]:
        self.batches.append(list(items))
        return [2 * i for i in items]


async def _started(recorder: Recorder, *, max_batch: int = 8, max_wait_ms: float = LONG_WAIT_MS,
                   max_queue: int = 16) -> MicroBatcher[int, int]:
    batcher: MicroBatcher[int, int] = MicroBatcher(recorder, InlineExecutor(), max_batch=max_batch,
                                                   max_wait_ms=max_wait_ms, max_queue=max_queue)
    batcher.start()
    return batcher


def _run(coro: Any) -> Any:
    return asyncio.run(asyncio.wait_for(coro, LONG_WAIT_MS / 2000))  # half the window: a wait would fail here


def test_a_lone_request_runs_without_waiting_for_the_window() -> None:
    recorder = Recorder()

    async def scenario() -> tuple[tuple[int, int], float, float]:
        batcher = await _started(recorder)
        loop = asyncio.get_running_loop()
        sent = loop.time()
        result = await batcher.submit(3)
        done = loop.time()
        await batcher.stop()
        return result, sent, done

    result, sent, done = _run(scenario())
    assert result == (6, 1) and recorder.batches == [[3]]
    assert done - sent < LONG_WAIT_MS / 1000 / 2


def test_an_announced_request_is_waited_for_and_joins_the_batch() -> None:
    recorder = Recorder()

    async def scenario() -> list[tuple[int, int]]:
        batcher = await _started(recorder)
        with batcher.expect() as arrival:
            assert batcher.expected == 1
            first = asyncio.create_task(batcher.submit(1))  # the collector takes it and waits for the arrival
            for _ in range(5):
                await asyncio.sleep(0)
            assert recorder.batches == []  # nothing ran: a request is on its way
            second = await arrival.submit(2)
        assert batcher.expected == 0
        results = [await first, second]
        await batcher.stop()
        return results

    assert _run(scenario()) == [(2, 2), (4, 2)]
    assert recorder.batches == [[1, 2]]


def test_an_announced_request_that_is_refused_ends_the_wait() -> None:
    recorder = Recorder()

    async def scenario() -> tuple[int, int]:
        batcher = await _started(recorder)
        with pytest.raises(ApiError), batcher.expect():
            first = asyncio.create_task(batcher.submit(5))
            for _ in range(5):
                await asyncio.sleep(0)
            assert recorder.batches == []
            raise ApiError("invalid_image", "damaged")  # leaves without submitting
        result = await first
        assert batcher.expected == 0
        await batcher.stop()
        return result

    assert _run(scenario()) == (10, 1)
    assert recorder.batches == [[5]]


def test_waiting_requests_are_taken_at_once_up_to_max_batch() -> None:
    recorder = Recorder()

    async def scenario() -> list[tuple[int, int]]:
        batcher = await _started(recorder, max_batch=2)
        results = await asyncio.gather(*(batcher.submit(i) for i in (1, 2, 3)))
        await batcher.stop()
        return list(results)

    assert _run(scenario()) == [(2, 2), (4, 2), (6, 1)]
    assert recorder.batches == [[1, 2], [3]]


def test_max_batch_one_never_waits_even_with_requests_on_the_way() -> None:
    recorder = Recorder()

    async def scenario() -> tuple[int, int]:
        batcher = await _started(recorder, max_batch=1)
        with batcher.expect():
            result = await batcher.submit(4)
        await batcher.stop()
        return result

    assert _run(scenario()) == (8, 1)


def test_a_full_queue_is_refused_and_the_announcement_released() -> None:
    recorder = Recorder()

    async def scenario() -> tuple[str, int]:
        batcher = await _started(recorder, max_queue=1)
        with batcher.expect() as arrival:
            # the collector has not run yet, so the first item still fills the one place in the queue
            first = asyncio.create_task(batcher.submit(1))
            await asyncio.sleep(0)
            with pytest.raises(ApiError) as refused:
                await arrival.submit(2)
            expected = batcher.expected
        await first
        await batcher.stop()
        return refused.value.code, expected

    code, expected = _run(scenario())
    assert code == "overloaded" and expected == 0


def test_stop_answers_the_requests_already_taken_off_the_queue() -> None:
    recorder = Recorder()

    async def scenario() -> BaseException | None:
        batcher = await _started(recorder)
        with batcher.expect() as late:  # an announced request keeps the collector waiting with one in hand
            first = asyncio.ensure_future(batcher.submit(1))
            await asyncio.sleep(0.05)
            assert not first.done() and late is not None
            await batcher.stop()
        await asyncio.sleep(0)
        return first.exception()

    error = _run(scenario())
    assert isinstance(error, ApiError) and recorder.batches == []
