"""A real git smart-HTTP server on 127.0.0.1 for tests.

``git http-backend`` (the CGI program git ships) does the protocol work; a small threaded
stdlib HTTP server in front of it demands HTTP basic auth whose password is the configured
token, the way GitHub accepts a token. Bare repositories live under one root directory and
accept pushes; a pre-receive hook can be installed to reject them.
"""

from __future__ import annotations

import base64
import hmac
import os
import shutil
import socket
import subprocess
import tempfile
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

# Every git command here is local and small; a hung one should fail the test, not stall it.
_TIMEOUT = 60.0
# The host's git configuration must not change how the test repositories behave.
_ENV = {
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_CONFIG_GLOBAL": os.devnull,
    "GIT_TERMINAL_PROMPT": "0",
    "GIT_AUTHOR_NAME": "Test Server",
    "GIT_AUTHOR_EMAIL": "server@example.test",
    "GIT_COMMITTER_NAME": "Test Server",
    "GIT_COMMITTER_EMAIL": "server@example.test",
    "LC_ALL": "C",
}


@dataclass(frozen=True)
class Request:
    """One HTTP request the server answered (for asserting on what clients sent)."""

    method: str
    path: str
    query: str
    status: int
    authorized: bool


class _ThreadingHTTPServerV6(ThreadingHTTPServer):
    address_family = socket.AF_INET6


class GitHttpServer:
    """Bare repositories under ``root``, served at ``http://127.0.0.1:PORT/<name>.git``."""

    def __init__(self, root: Path, token: str, host: str = "127.0.0.1", port: int = 0) -> None:
        self.root = root
        self.token = token
        self.requests: list[Request] = []
        self._lock = threading.Lock()
        root.mkdir(parents=True, exist_ok=True)
        self._home = Path(tempfile.mkdtemp(prefix="git-http-home-"))
        server_class = _ThreadingHTTPServerV6 if ":" in host else ThreadingHTTPServer
        self._server = server_class((host, port), _handler(self))
        self._server.daemon_threads = True
        # A short poll interval makes stop() quick (shutdown waits for the next poll).
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        literal = f"[{host!s}]" if ":" in str(host) else str(host)
        return f"http://{literal}:{port}"

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def url_for(self, name: str) -> str:
        return f"{self.url}/{name}.git"

    def start(self) -> GitHttpServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)
        shutil.rmtree(self._home, ignore_errors=True)

    def __enter__(self) -> GitHttpServer:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()

    # -- repositories ------------------------------------------------------------------

    def repo_path(self, name: str) -> Path:
        return self.root / f"{name}.git"

    def create_repo(self, name: str, files: Mapping[str, str], default_branch: str = "main") -> str:
        """A bare repository whose ``default_branch`` holds ``files`` in one commit; its URL."""
        bare = self.repo_path(name)
        self._git(self.root, "init", "-q", "--bare", "-b", default_branch, str(bare))
        # http-backend only accepts pushes from an authenticated user unless told to.
        self._git(bare, "config", "http.receivepack", "true")
        if files:
            self.add_commit(name, default_branch, files, "Initial commit")
        return self.url_for(name)

    def add_commit(
        self, name: str, branch: str, files: Mapping[str, str], message: str = "Update"
    ) -> str:
        """Commit ``files`` (added or overwritten) on top of ``branch``; the new commit's sha."""
        bare = self.repo_path(name)
        with tempfile.TemporaryDirectory(prefix="git-http-work-") as tmp:
            work = Path(tmp)
            self._git(work, "init", "-q", "-b", branch)
            if branch in self.branches(name):
                self._git(work, "fetch", "-q", str(bare), f"refs/heads/{branch}")
                self._git(work, "reset", "-q", "--hard", "FETCH_HEAD")
            for path, content in files.items():
                target = work / path
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_text(content)
            self._git(work, "add", "-A")
            self._git(work, "commit", "-q", "--allow-empty", "-m", message)
            self._git(work, "push", "-q", str(bare), f"HEAD:refs/heads/{branch}")
            return self._git(work, "rev-parse", "HEAD").strip()

    def reject_pushes(
        self, name: str, reject: bool = True, message: str = "pushes are frozen by policy"
    ) -> None:
        """Install (or remove) a pre-receive hook that refuses every push with ``message``."""
        hook = self.repo_path(name) / "hooks" / "pre-receive"
        if not reject:
            hook.unlink(missing_ok=True)
            return
        hook.parent.mkdir(parents=True, exist_ok=True)
        quoted = message.replace("'", "'\\''")
        hook.write_text(f"#!/bin/sh\necho '{quoted}' >&2\nexit 1\n")
        hook.chmod(0o755)

    def branches(self, name: str) -> dict[str, str]:
        """``{branch: sha}`` of the repository."""
        out = self._git(
            self.repo_path(name), "for-each-ref", "--format=%(refname:short) %(objectname)",
            "refs/heads",
        )  # fmt: skip
        return dict(line.split(" ", 1) for line in out.splitlines() if line)

    def read_file(self, name: str, branch: str, path: str) -> str | None:
        """The file's content on ``branch``, or None if it is not there."""
        proc = self._run(self.repo_path(name), "show", f"refs/heads/{branch}:{path}")
        return proc.stdout.decode() if proc.returncode == 0 else None

    def log(self, name: str, branch: str) -> list[str]:
        """Commit subjects on ``branch``, newest first."""
        out = self._git(self.repo_path(name), "log", "--format=%s", f"refs/heads/{branch}")
        return out.splitlines()

    # -- internals ---------------------------------------------------------------------

    def _env(self) -> dict[str, str]:
        return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(self._home), **_ENV}

    def _run(self, cwd: Path, *args: str) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run(
            ["git", *args],
            cwd=cwd,
            env=self._env(),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=_TIMEOUT,
            check=False,
        )

    def _git(self, cwd: Path, *args: str) -> str:
        proc = self._run(cwd, *args)
        if proc.returncode != 0:
            raise RuntimeError(f"git {args[0]} failed: {proc.stderr.decode(errors='replace')}")
        return proc.stdout.decode(errors="replace")

    def _authorized(self, header: str | None) -> bool:
        if not header or not header.startswith("Basic "):
            return False
        try:
            decoded = base64.b64decode(header[6:], validate=True).decode()
        except ValueError:
            return False
        _, _, password = decoded.partition(":")
        return hmac.compare_digest(password.encode(), self.token.encode())

    def _record(self, request: Request) -> None:
        with self._lock:
            self.requests.append(request)

    def _cgi(
        self, method: str, path: str, query: str, headers: Mapping[str, str], body: bytes
    ) -> tuple[int, list[tuple[str, str]], bytes]:
        """Run ``git http-backend`` for one request; its status, headers and body."""
        env = {
            **self._env(),
            "GIT_PROJECT_ROOT": str(self.root),
            "GIT_HTTP_EXPORT_ALL": "1",
            "GATEWAY_INTERFACE": "CGI/1.1",
            "REQUEST_METHOD": method,
            "PATH_INFO": path,
            "QUERY_STRING": query,
            "CONTENT_TYPE": headers.get("Content-Type", ""),
            "CONTENT_LENGTH": str(len(body)),
            "REMOTE_USER": "x-access-token",
            "REMOTE_ADDR": "127.0.0.1",
        }
        if headers.get("Content-Encoding"):
            env["HTTP_CONTENT_ENCODING"] = headers["Content-Encoding"]
        if headers.get("Git-Protocol"):
            env["GIT_PROTOCOL"] = headers["Git-Protocol"]
        proc = subprocess.run(
            ["git", "http-backend"],
            input=body,
            env=env,
            capture_output=True,
            timeout=_TIMEOUT,
            check=False,
        )
        head, sep, payload = proc.stdout.partition(b"\r\n\r\n")
        if not sep:
            head, _, payload = proc.stdout.partition(b"\n\n")
        status = 200
        response_headers: list[tuple[str, str]] = []
        for line in head.decode("latin-1").splitlines():
            key, _, value = line.partition(":")
            if key.lower() == "status":
                status = int(value.strip().split(" ", 1)[0])
            elif key:
                response_headers.append((key.strip(), value.strip()))
        return status, response_headers, payload


def _handler(server: GitHttpServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

        def do_GET(self) -> None:
            self._serve()

        def do_POST(self) -> None:
            self._serve()

        def _body(self) -> bytes:
            if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                # git sends large POST bodies chunked (beyond http.postBuffer).
                chunks = []
                while True:
                    size = int(self.rfile.readline().split(b";", 1)[0].strip(), 16)
                    if size == 0:
                        self.rfile.readline()
                        break
                    chunks.append(self.rfile.read(size))
                    self.rfile.readline()
                return b"".join(chunks)
            return self.rfile.read(int(self.headers.get("Content-Length") or 0))

        def _serve(self) -> None:
            parts = urlsplit(self.path)
            authorized = server._authorized(self.headers.get("Authorization"))
            body = self._body() if self.command == "POST" else b""
            if not authorized:
                server._record(Request(self.command, parts.path, parts.query, 401, False))
                self.send_response(401)
                self.send_header("WWW-Authenticate", 'Basic realm="agentyard test git"')
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            status, headers, payload = server._cgi(
                self.command, parts.path, parts.query, dict(self.headers.items()), body
            )
            server._record(Request(self.command, parts.path, parts.query, status, True))
            self.send_response(status)
            for key, value in headers:
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

    return Handler
