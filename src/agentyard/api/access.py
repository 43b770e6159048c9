"""The access log: one structlog line per HTTP request, when its response has ended (so in
the JSON log format when ``AGENTYARD_LOG_FORMAT=json``), and the request counter.

The path is logged without its query string and no header is, so that nothing a client
sends as a credential reaches the log. Probes (``/healthz``, ``/readyz``, ``/metrics``)
are logged at debug level: a load balancer polls them every few seconds.
"""

from __future__ import annotations

import time

import structlog
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from agentyard.metrics import Metrics

log = structlog.get_logger("agentyard.access")

_PROBES = frozenset({"/healthz", "/readyz", "/metrics"})


class AccessLog:
    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

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
            self.metrics.http_requests.labels(method=method, status=str(status)).inc()
            client = scope.get("client")
            line = log.debug if path in _PROBES and status < 500 else log.info
            line(
                "http request",
                method=method,
                path=path,
                status=status,
                duration_ms=round((time.monotonic() - started) * 1000, 1),
                client=client[0] if client else None,
            )
