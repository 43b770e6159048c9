"""``/metrics`` of an ``agentyard worker``, which serves no API: a small HTTP server in a
thread (``AGENTYARD_WORKER_METRICS_PORT``), with the same optional bearer token.

The worker's own figures only (the runs it executed, its model proxy); the database's
gauges are the API processes' to report."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from socketserver import ThreadingMixIn
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server
from wsgiref.types import StartResponse, WSGIEnvironment

from agentyard.core import apikeys
from agentyard.metrics import CONTENT_TYPE, Metrics

_UNAUTHORIZED = b'{"error": "Unauthorized"}'
_NOT_FOUND = b'{"error": "Not Found"}'


class _Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        """Scrapes are not logged (a scraper polls every few seconds)."""


def application(
    metrics: Metrics, token: str | None
) -> Callable[[WSGIEnvironment, StartResponse], Iterable[bytes]]:
    def app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        if environ.get("PATH_INFO") != "/metrics":
            start_response("404 Not Found", [("Content-Type", "application/json")])
            return [_NOT_FOUND]
        if token is not None:
            scheme, _, given = str(environ.get("HTTP_AUTHORIZATION", "")).partition(" ")
            if scheme.lower() != "bearer" or not apikeys.same(given.strip(), token):
                start_response(
                    "401 Unauthorized",
                    [("Content-Type", "application/json"), ("WWW-Authenticate", "Bearer")],
                )
                return [_UNAUTHORIZED]
        start_response("200 OK", [("Content-Type", CONTENT_TYPE)])
        return [metrics.render(None, database=False)]

    return app


def serve_in_thread(
    metrics: Metrics, host: str, port: int, token: str | None
) -> tuple[int, Callable[[], None]]:
    """Start serving; the port bound (``port`` may be 0) and a function that stops it."""
    server = make_server(
        host, port, application(metrics, token), server_class=_Server, handler_class=_QuietHandler
    )
    thread = threading.Thread(target=server.serve_forever, name="worker-metrics", daemon=True)
    thread.start()

    def stop() -> None:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)

    return int(server.server_address[1]), stop
