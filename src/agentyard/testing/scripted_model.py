"""A scripted model server: the Anthropic Messages, OpenAI Responses and Gemini APIs, replaying
a script.

Tests drive the real Claude CLI and codex binary against it on 127.0.0.1; users point Agentyard
at it to try the product offline (``agentyard scripted-model --script FILE``).

A script is ``{"scenarios": [{"match": REGEX?, "turns": [TURN, ...]}, ...]}``. A request's
scenario is the first whose ``match`` is found in the current prompt (the latest user message
with real text, not only tool results), else the first without ``match``. Its step is the
number of model turns since that prompt, so the server holds no conversation state: a resumed
or continued session, which resends the whole history, lands on the right turn. A TURN is
``{"delay": s, "status": code, "error": msg, "thinking": str, "text": str,
"tool_calls": [{"name": ..., "input": ...}], "anthropic": {...}, "openai": {...},
"gemini": {...}, "models": {MODEL: {...}}}`` (every key optional; ``anthropic``/``openai``/
``gemini`` override the others for one API, since Claude Code, codex and the Gemini CLI have
different tools, and ``models`` for one model). ``"fail_first": {"times": n, "status": code}``
fails the turn's first ``n`` requests (the only state the server keeps: a client's retries
then succeed), and ``"usage": {"input_tokens": n, "output_tokens": m}`` sets the Anthropic
usage a turn reports. With ``keys={"gemini": KEY}`` (per API) a
request with another key is refused as the real API refuses it.
``{cwd}`` in any string of it becomes the agent's working directory, read from the request.
Past the last turn the answer is the text ``done``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import gzip
import json
import socket
import sys
import threading
import time
import zlib
from collections.abc import Callable, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit

from agentyard.testing import model_gemini
from agentyard.testing.model_script import (
    ANTHROPIC,
    FINAL_TEXT,
    GEMINI,
    OPENAI,
    SIDE_TEXT,
    Plan,
    ScriptError,
    detect_cwd,
    load_script,
    plan_request,
)
from agentyard.testing.model_wire import (
    SSE,
    anthropic_error,
    anthropic_message,
    anthropic_stream,
    estimate_tokens,
    iter_sse,
    openai_error,
    openai_output,
    openai_response,
    openai_stream,
)

__all__ = [
    "ANTHROPIC",
    "FINAL_TEXT",
    "GEMINI",
    "OPENAI",
    "SIDE_TEXT",
    "Plan",
    "ScriptError",
    "ScriptedModelServer",
    "detect_cwd",
    "iter_sse",
    "load_script",
    "plan_request",
    "serve",
]

_IDLE_TIMEOUT = 300.0
"""Seconds an idle keep-alive connection is kept open."""
_POLL_SECONDS = 0.05
"""How often the serving loop checks for ``stop()``."""


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128
    model: ScriptedModelServer


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    timeout = _IDLE_TIMEOUT
    server: _HTTPServer
    server_version = "ScriptedModel/1"

    def setup(self) -> None:
        super().setup()
        self.server.model._track(self.connection, True)

    def finish(self) -> None:
        self.server.model._track(self.connection, False)
        with contextlib.suppress(OSError):
            super().finish()

    def log_message(self, format: str, *args: Any) -> None:
        pass  # requests are in the request log; ``echo`` prints one line each

    def do_GET(self) -> None:
        path = urlsplit(self.path).path
        model = self.server.model
        if path == "/_health":
            self._send_json(200, {"ok": True})
        elif path == "/_requests":
            self._send_json(200, model.requests)
        else:
            self._send_json(404, {"error": {"message": f"no route GET {path}"}})

    def do_DELETE(self) -> None:
        if urlsplit(self.path).path == "/_requests":
            self._send_json(200, {"cleared": self.server.model.clear_requests()})
        else:
            self._send_json(404, {"error": {"message": f"no route DELETE {self.path}"}})

    def do_POST(self) -> None:
        path = urlsplit(self.path).path.rstrip("/")
        try:
            raw = self._read_body()
            body = json.loads(raw) if raw else {}
        except (ValueError, OSError) as exc:
            self._send_json(400, {"error": {"message": f"bad request body: {exc}"}})
            return
        if not isinstance(body, dict):
            self._send_json(400, {"error": {"message": "the body is not a JSON object"}})
            return
        model = self.server.model
        try:
            if path == "/_script":
                model.set_script(body)
                self._send_json(200, {"ok": True})
            elif path == "/v1/messages/count_tokens":
                model._record(
                    self.path, "anthropic-count-tokens", body, None, 200, dict(self.headers.items())
                )
                self._send_json(200, {"input_tokens": estimate_tokens(body)})
            elif path == "/v1/messages":
                self._answer(ANTHROPIC, body)
            elif path in ("/v1/responses", "/responses"):
                self._answer(OPENAI, body)
            elif route := model_gemini.ROUTE.match(path):
                # Gemini names the model in the path: kept in the body, as the other APIs
                # have it, for ``models`` overrides and the request log.
                self._answer(GEMINI, {**body, "model": route.group(1)})
            else:
                self._send_json(404, {"error": {"message": f"no route POST {path}"}})
        except ScriptError as exc:
            self._send_json(400, {"error": {"message": str(exc)}})
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    def _answer(self, api: str, body: dict[str, Any]) -> None:
        model = self.server.model
        plan = plan_request(model.script, api, body)
        turn = plan.turn
        status = int(turn.get("status") or 200)
        first = turn.get("fail_first")
        if isinstance(first, dict) and model._fails_now(api, plan, int(first["times"])):
            status = int(first["status"])
            turn = {**turn, "status": status}
            plan = dataclasses.replace(plan, turn=turn)
        model._record(self.path, api, body, plan, status, dict(self.headers.items()))
        delay = float(turn.get("delay") or 0)
        if delay > 0 and not model._sleep(delay):
            self.close_connection = True
            return
        name = str(body.get("model") or "scripted-model")
        if api == GEMINI:
            self._answer_gemini(plan, body)
            return
        if status >= 400:
            message = str(turn.get("error") or f"scripted HTTP {status}")
            error = (
                anthropic_error(status, message)
                if api == ANTHROPIC
                else openai_error(status, message)
            )
            self._send_json(status, error)
            return
        if api == ANTHROPIC:
            message_obj = anthropic_message(plan, name, body)
            if body.get("stream"):
                self._send_sse(anthropic_stream(message_obj))
            else:
                self._send_json(200, message_obj)
        else:
            response = openai_response(openai_output(plan), name, body)
            if body.get("stream", True):
                self._send_sse(openai_stream(response))
            else:
                self._send_json(200, response)

    def _answer_gemini(self, plan: Plan, body: dict[str, Any]) -> None:
        route = model_gemini.ROUTE.match(urlsplit(self.path).path.rstrip("/"))
        assert route is not None
        name, method = route.group(1), route.group(2)
        key = self.headers.get("x-goog-api-key") or ""
        wanted = self.server.model.keys.get(GEMINI)
        turn = plan.turn
        status = int(turn.get("status") or 200)
        if wanted is not None and key != wanted:
            self._send_json(400, model_gemini.error(400, model_gemini.BAD_KEY))
            return
        if status >= 400:
            message = str(turn.get("error") or f"scripted HTTP {status}")
            self._send_json(status, model_gemini.error(status, message))
            return
        if plan.side and model_gemini.side_answer(body):
            plan = dataclasses.replace(plan, turn={"text": model_gemini.side_answer(body)})
        answer = model_gemini.response(plan, name, body)
        if method == "streamGenerateContent":
            self._send_sse(model_gemini.stream(answer))
        else:
            self._send_json(200, answer)

    def _read_body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            raw = b""
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline().strip():
                        pass  # trailers
                    break
                raw += self.rfile.read(size)
                self.rfile.readline()
        else:
            raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        encoding = self.headers.get("Content-Encoding", "").lower()
        if encoding == "gzip":
            raw = gzip.decompress(raw)
        elif encoding == "deflate":
            raw = zlib.decompress(raw)
        elif encoding not in ("", "identity"):
            raise ValueError(f"unsupported Content-Encoding {encoding!r}")
        return raw

    def _send_json(self, status: int, payload: Any) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _send_sse(self, events: SSE) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream; charset=utf-8")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        for kind, data in events:
            named = f"event: {kind}\n" if kind else ""  # Gemini's frames are data only
            chunk = f"{named}data: {json.dumps(data)}\n\n".encode()
            self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
        self.wfile.write(b"0\r\n\r\n")


class ScriptedModelServer:
    """The scripted model on an HTTP server in a background thread.

    ``with ScriptedModelServer(script) as server:`` gives ``server.url`` (the Anthropic base
    URL; codex's provider ``base_url`` is ``server.url + "/v1"``) and ``server.requests``.
    """

    def __init__(
        self,
        script: Mapping[str, Any] | Path | str,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        echo: Callable[[str], None] | None = None,
        keys: Mapping[str, str] | None = None,
    ) -> None:
        self._script = load_script(script)
        self.keys = dict(keys or {})
        """The key each API accepts (``{"gemini": ...}``); any key where none is given."""
        self._lock = threading.Lock()
        self._requests: list[dict[str, Any]] = []
        self._failed: dict[tuple[str, int | None, int | None, str | None], int] = {}
        self._connections: set[socket.socket] = set()
        self._stopping = threading.Event()
        self._echo = echo
        self._thread: threading.Thread | None = None
        self._httpd = _HTTPServer((host, port), _Handler)
        self._httpd.model = self

    # -- public surface

    @property
    def host(self) -> str:
        return str(self._httpd.server_address[0])

    @property
    def port(self) -> int:
        return int(self._httpd.server_address[1])

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def script(self) -> dict[str, Any]:
        return self._script

    def set_script(self, script: Mapping[str, Any] | Path | str) -> None:
        """Replace the script (the request log is kept)."""
        self._script = load_script(script)

    @property
    def requests(self) -> list[dict[str, Any]]:
        """Every request received so far, oldest first (a copy)."""
        with self._lock:
            return list(self._requests)

    def clear_requests(self) -> int:
        with self._lock:
            count = len(self._requests)
            self._requests.clear()
            return count

    def start(self) -> ScriptedModelServer:
        """Serve in a background thread; returns at once."""
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._httpd.serve_forever,
                args=(_POLL_SECONDS,),
                name=f"scripted-model:{self.port}",
                daemon=True,
            )
            self._thread.start()
        return self

    def serve_forever(self) -> None:
        """Serve in this thread until ``stop()`` (from another thread) or Ctrl-C."""
        try:
            self._httpd.serve_forever(_POLL_SECONDS)
        finally:
            self._close()

    def stop(self) -> None:
        """Stop serving, drop open connections and wake delayed answers."""
        self._stopping.set()
        if self._thread is not None:
            self._httpd.shutdown()
            self._thread.join(timeout=5)
            self._thread = None
        self._close()

    def __enter__(self) -> ScriptedModelServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- used by the handler

    def _close(self) -> None:
        self._stopping.set()
        with self._lock:
            connections = list(self._connections)
        for conn in connections:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        self._httpd.server_close()

    def _track(self, conn: socket.socket, alive: bool) -> None:
        with self._lock:
            if alive:
                self._connections.add(conn)
            else:
                self._connections.discard(conn)

    def _fails_now(self, api: str, plan: Plan, times: int) -> bool:
        """Whether this request is one of the first ``times`` of its turn (then counted)."""
        key = (api, plan.scenario, plan.step, plan.prompt)
        with self._lock:
            done = self._failed.get(key, 0)
            if done >= times:
                return False
            self._failed[key] = done + 1
            return True

    def _sleep(self, seconds: float) -> bool:
        """Wait (without holding up other requests); False if the server stopped meanwhile."""
        return not self._stopping.wait(seconds)

    def _record(
        self,
        path: str,
        api: str,
        body: dict[str, Any],
        plan: Plan | None,
        status: int,
        headers: Mapping[str, str],
    ) -> None:
        entry: dict[str, Any] = {
            "time": time.time(),
            "method": "POST",
            "path": path,
            "api": api,
            "model": body.get("model"),
            "scenario": plan.scenario if plan else None,
            "step": plan.step if plan else None,
            "side": plan.side if plan else False,
            "prompt": plan.prompt if plan else None,
            "cwd": plan.cwd if plan else None,
            "status": status,
            "headers": {k.lower(): v for k, v in headers.items()},
            "body": body,
        }
        with self._lock:
            entry["index"] = len(self._requests)
            self._requests.append(entry)
        if self._echo is not None:
            where = (
                "side request"
                if entry["side"]
                else (f"scenario {entry['scenario']} step {entry['step']}")
            )
            self._echo(f"{api} {path} model={entry['model']} -> {where} (HTTP {status})")


def serve(script_path: Path, host: str, port: int) -> None:
    """Serve ``script_path`` on ``host:port`` until interrupted (the CLI's ``scripted-model``)."""

    def echo(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    server = ScriptedModelServer(script_path, host, port, echo=echo)
    print(
        f"Scripted model on {server.url}\n"
        f"  Claude: ANTHROPIC_BASE_URL={server.url} ANTHROPIC_API_KEY=any\n"
        f"  Codex:  provider base_url={server.url}/v1 wire_api=responses\n"
        f"  Gemini: GOOGLE_GEMINI_BASE_URL={server.url} GEMINI_API_KEY=any\n"
        f"  Log:    GET {server.url}/_requests",
        file=sys.stderr,
        flush=True,
    )
    with contextlib.suppress(KeyboardInterrupt):
        server.serve_forever()
