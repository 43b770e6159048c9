"""A webhook receiver on 127.0.0.1 for the tests: it records every request and answers as
scripted per path (a status code, or ``hang`` past the sender's timeout)."""

from __future__ import annotations

import threading
import time
from collections import defaultdict
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from agentyard.testing.harness import free_port


@dataclass(frozen=True)
class Received:
    path: str
    headers: dict[str, str]
    body: bytes


class WebhookReceiver:
    def __init__(self, port: int | None = None, hang_seconds: float = 5.0) -> None:
        self.port = port or free_port()
        self.hang_seconds = hang_seconds
        self.received: list[Received] = []
        self.script: dict[str, list[int | str]] = defaultdict(list)
        """Per path, the answers to its next requests; 200 once they run out."""
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}/{path.lstrip('/')}"

    def start(self) -> WebhookReceiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(length)
                with receiver._lock:
                    receiver.received.append(
                        Received(self.path, {k.lower(): v for k, v in self.headers.items()}, body)
                    )
                    script = receiver.script[self.path]
                    answer = script.pop(0) if script else 200
                if answer == "hang":
                    time.sleep(receiver.hang_seconds)
                    answer = 200
                assert isinstance(answer, int)
                reply = b"x" * 5000 if answer >= 500 else b'{"ok":true}'
                self.send_response(answer)
                self.send_header("content-length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        self._server.block_on_close = False  # a hanging answer never holds up stop()
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def at(self, path: str) -> list[Received]:
        with self._lock:
            return [r for r in self.received if r.path == "/" + path.lstrip("/")]
