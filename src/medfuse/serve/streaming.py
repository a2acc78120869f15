"""Server-Sent Events for answers and drafts written piece by piece (``/v1/answer/stream``, ``/v1/report/stream``).

The model thread runs the generation and hands each piece to the event loop through a queue; the response
sends them as they come::

    data: {"text": "Small"}                  one event per piece
    data: {"text": " right effusion."}
    event: done
    data: {"request_id": ..., "method": "generator", "answer": "Small right effusion.", ...}

The ``done`` event carries the body the non-streaming endpoint returns (the pieces joined are its text);
a failure after the first piece is ``event: error`` with ``{"error": {"code", "message", "field"}}``.
Everything up to the first piece (validation, waiting for the model, encoding the image) happens before
the response starts, so a refused request gets the ordinary JSON 4xx/5xx. The whole stream is held to the
request timeout; a timeout, a client that goes away or the server stopping ends the generation at the next
piece, which frees the model thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import threading
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from typing import Any

from medfuse.serve.errors import ApiError, error_body
from medfuse.serve.state import ServiceState

log = logging.getLogger("medfuse.serve")

Start = Callable[[], tuple[dict[str, Any], Iterator[str]]]
SSE_HEADERS = {"Cache-Control": "no-store", "X-Accel-Buffering": "no"}


def sse(data: Mapping[str, Any], event: str | None = None) -> bytes:
    """Return one Server-Sent Event: an optional ``event:`` line and ``data:`` with ``data`` as one line of JSON."""
    head = f"event: {event}\n" if event else ""
    return f"{head}data: {json.dumps(data, ensure_ascii=False, separators=(',', ':'))}\n\n".encode()


def _timeout(state: ServiceState) -> ApiError:
    return ApiError("timeout", f"no complete answer within {state.cfg.request_timeout_s:g}s; retry later")


def _error_event(state: ServiceState, exc: BaseException) -> bytes:
    if isinstance(exc, ApiError):
        state.errors[exc.code] += 1
        return sse(exc.body(), "error")
    log.error("internal error (%s) while streaming", type(exc).__name__, exc_info=exc)
    state.errors["internal_error"] += 1
    return sse(error_body("internal_error", "unexpected server error; the server log has the details"), "error")


async def stream_response(state: ServiceState, start: Start, *, text_key: str, body: dict[str, Any],
                          finish: Callable[[dict[str, Any]], dict[str, Any]]) -> Any:
    """Return a ``text/event-stream`` response of the pieces ``start()`` gives, run in the model thread.

    ``start()`` returns the body's other fields and an iterator of text pieces; the ``done`` event is
    ``finish({**body, **fields, text_key: joined pieces})``. Raises (before any byte is sent) what
    ``start`` or the first piece raises, and a timeout when no piece comes within the request timeout.
    """
    from fastapi.responses import StreamingResponse

    if state.executor is None:
        raise ApiError("not_ready", "the model is still loading; retry shortly")
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
    stop = threading.Event()
    deadline = loop.time() + state.cfg.request_timeout_s

    def put(kind: str, value: Any) -> None:
        with contextlib.suppress(RuntimeError):  # the loop has closed: nobody listens any more
            loop.call_soon_threadsafe(queue.put_nowait, (kind, value))

    def produce() -> None:
        pieces: Iterator[str] | None = None
        if stop.is_set():  # the caller gave up while this waited for the model thread
            return
        try:
            fields, pieces = start()
            put("fields", fields)
            for piece in pieces:
                if stop.is_set():
                    return
                if piece:
                    put("piece", str(piece))
            put("end", None)
        except Exception as exc:
            put("error", exc)
        finally:
            close = getattr(pieces, "close", None)
            if callable(close):
                close()  # ends a generator's decoding loop (and its inference mode) in this thread

    async def receive() -> tuple[str, Any]:
        remaining = deadline - loop.time()
        if remaining <= 0:
            raise TimeoutError
        return await asyncio.wait_for(queue.get(), remaining)

    state.streams.add(stop)
    fields: dict[str, Any] = {}
    first: list[str] = []
    finished = False
    try:
        loop.run_in_executor(state.executor, produce)
        while not first and not finished:
            kind, value = await receive()
            if kind == "error":
                raise value
            if kind == "fields":
                fields = dict(value)
            elif kind == "piece":
                first.append(value)
            else:
                finished = True
    except TimeoutError:
        stop.set()
        state.streams.discard(stop)
        raise _timeout(state) from None
    except BaseException:
        stop.set()
        state.streams.discard(stop)
        raise

    async def events() -> AsyncIterator[bytes]:
        text = list(first)
        done = finished
        try:
            for piece in first:
                yield sse({"text": piece})
            while not done:
                try:
                    kind, value = await receive()
                except TimeoutError:
                    yield _error_event(state, _timeout(state))
                    return
                if kind == "piece":
                    text.append(value)
                    yield sse({"text": value})
                elif kind == "error":
                    yield _error_event(state, value)
                    return
                else:
                    done = True
            yield sse(finish({**body, **fields, text_key: "".join(text)}), "done")
        finally:
            stop.set()
            state.streams.discard(stop)

    return StreamingResponse(events(), media_type="text/event-stream", headers=SSE_HEADERS)


def stream_openapi(description: str) -> dict[int | str, dict[str, Any]]:
    """Return the ``responses`` entry documenting a ``text/event-stream`` 200."""
    return {200: {"description": description,
                  "content": {"text/event-stream": {"schema": {"type": "string"},
                                                    "example": 'data: {"text":"Small"}\n\nevent: done\ndata: {...}\n\n'}}}}
