"""The access log: one structlog line per HTTP request, when its response has ended (so in
the JSON log format when ``AGENTYARD_LOG_FORMAT=json``), and the request counter.

The path is logged without its query string and no header is, so that nothing a client
sends as a credential reaches the log. Probes (``/healthz``, ``/readyz``, ``/metrics``)
are logged at debug level: a load balancer polls them every few seconds. It wraps the
application (and its status fast path), inside the header and body limits: a request
refused by its headers or its Content-Length alone is not in it.
"""

from __future__ import annotations

import time
from typing import Any

import structlog
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from agentyard.metrics import Metrics

log = structlog.get_logger("agentyard.access")

_PROBES = frozenset({"/healthz", "/readyz", "/metrics"})
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
_MAX_PATH = 1000


def _shown(path: str) -> str:
    """The path as logged: control characters escaped (no forged lines in the console
    format), and cut to a sane length."""
    if len(path) > _MAX_PATH:
        path = path[:_MAX_PATH] + "..."
    if path.isprintable():
        return path
    return "".join(c if c.isprintable() else f"\\x{ord(c):02x}" for c in path)


class AccessLog:
    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics
        self._counters: dict[tuple[str, int], Any] = {}
        """The request counter's child of each (method, status) seen: ``labels()`` takes
        a lock and builds its key on every call."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.monotonic()
        status = 0

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            # 0: the application failed (or the client left) before it answered.
            method = str(scope.get("method", ""))
            path = str(scope.get("path", ""))
            # A client chooses the method: any other is one label value, not a new series.
            known = method if method in _METHODS else "other"
            counter = self._counters.get((known, status))
            if counter is None:
                counter = self.metrics.http_requests.labels(method=known, status=str(status))
                self._counters[(known, status)] = counter
            counter.inc()
            client = scope.get("client")
            line = log.debug if path in _PROBES and status < 500 else log.info
            line(
                "http request",
                method=method,
                path=_shown(path),
                status=status,
                duration_ms=round((time.monotonic() - started) * 1000, 1),
                client=client[0] if client else None,
            )
