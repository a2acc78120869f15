"""The guard every HTTP request passes: request id, security headers, counters, latency, and a 500 without internals.

A plain ASGI middleware rather than Starlette's ``BaseHTTPMiddleware``: that one runs each request's
app in an extra task and carries the body through memory streams, per-request overhead that a
single-image request on a small machine can feel. Latency is taken when the response's headers leave
(time to first byte), so a streamed answer counts its wait, not its length.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections import deque
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from medfuse.serve.errors import error_body
from medfuse.serve.state import ServiceState

log = logging.getLogger("medfuse.serve")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

LATENCY_WINDOW = 2000  # latencies kept per endpoint for /v1/stats percentiles


class RequestGuard:
    """ASGI middleware around the app: gives each HTTP request an id (``scope["state"]["request_id"]``, echoed in
    ``X-Request-ID``), adds ``nosniff``, ``no-referrer`` and, under ``/v1/``, ``Cache-Control: no-store``; counts
    responses by status; keeps the latest latencies of each ``/v1`` route; turns an unexpected exception into a
    500 ``internal_error`` whose message names only the request id (the server log keeps the trace)."""

    def __init__(self, app: ASGIApp, state: ServiceState) -> None:
        self.app = app
        self.state = state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = uuid.uuid4().hex[:16]
        scope.setdefault("state", {})["request_id"] = request_id
        path: str = scope["path"]
        api = path.startswith("/v1/")
        started = time.perf_counter()
        sent_headers = False

        async def guarded_send(message: Message) -> None:
            nonlocal sent_headers
            if message["type"] == "http.response.start":
                sent_headers = True
                headers = list(message.get("headers", []))
                drop = {b"x-request-id", b"x-content-type-options", b"referrer-policy", b"cache-control"} if api else \
                    {b"x-request-id", b"x-content-type-options", b"referrer-policy"}
                headers = [(k, v) for k, v in headers if k.lower() not in drop]
                headers += [(b"x-request-id", request_id.encode()), (b"x-content-type-options", b"nosniff"),
                            (b"referrer-policy", b"no-referrer")]
                if api:
                    headers.append((b"cache-control", b"no-store"))  # answers about patients are not for caches
                message["headers"] = headers
                self._record(scope, int(message["status"]), started, request_id)
            await send(message)

        try:
            await self.app(scope, receive, guarded_send)
        except Exception as exc:
            if sent_headers:
                raise  # a stream already under way cannot become an error response
            log.exception("internal error (%s) in %s %s, request %s", type(exc).__name__, scope.get("method"), path,
                          request_id)
            await self._internal_error(request_id, guarded_send)

    def _record(self, scope: Scope, status: int, started: float, request_id: str) -> None:
        elapsed = (time.perf_counter() - started) * 1000
        state = self.state
        state.responses[str(status)] += 1
        route = getattr(scope.get("route"), "path", None)
        # keyed by the matched route, so unknown paths (404s) cannot grow the table without bound
        if isinstance(route, str) and route.startswith("/v1/"):
            state.latency.setdefault(route, deque(maxlen=LATENCY_WINDOW)).append(elapsed)
        log.info("%s %s %d %.1fms id=%s", scope.get("method"), scope["path"], status, elapsed, request_id)

    async def _internal_error(self, request_id: str, send: Send) -> None:
        self.state.errors["internal_error"] += 1
        body = json.dumps(error_body("internal_error", "unexpected server error; the server log has the details "
                                     f"(request {request_id})")).encode()
        await send({"type": "http.response.start", "status": 500,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})
