"""A real git smart-HTTP server on 127.0.0.1 for tests: ``git http-backend`` behind a small
threaded HTTP server, with basic auth that checks a token, hosting bare repositories."""

from __future__ import annotations

import base64
import os
import subprocess
import tempfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

_GIT_ENV = {
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_CONFIG_GLOBAL": os.devnull,
    "GIT_AUTHOR_NAME": "Test",
    "GIT_AUTHOR_EMAIL": "test@example.test",
    "GIT_COMMITTER_NAME": "Test",
    "GIT_COMMITTER_EMAIL": "test@example.test",
}


def _git(*args: str, cwd: Path | None = None) -> str:
    out = subprocess.run(
        ["git", *args],
        cwd=cwd,
        env={**os.environ, **_GIT_ENV},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return out.stdout


class GitServer:
    def __init__(self, token: str, root: Path | None = None) -> None:
        self.token = token
        self._tmp = None if root else tempfile.TemporaryDirectory()
        self.root = root or Path(self._tmp.name)  # type: ignore[union-attr]
        self.requests: list[dict[str, Any]] = []
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    def url_for(self, name: str) -> str:
        return f"http://{self.host}/{name}.git"

    def path_for(self, name: str) -> Path:
        return self.root / f"{name}.git"

    def create_repo(self, name: str, files: dict[str, str], default_branch: str = "main") -> str:
        """A bare repository with one commit of ``files`` on ``default_branch``."""
        bare = self.path_for(name)
        _git("init", "-q", "--bare", "-b", default_branch, str(bare))
        _git("config", "http.receivepack", "true", cwd=bare)
        with tempfile.TemporaryDirectory() as work:
            _git("init", "-q", "-b", default_branch, work)
            for rel, content in files.items():
                target = Path(work) / rel
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_text(content)
            _git("add", "-A", cwd=Path(work))
            _git("commit", "-q", "-m", "Initial commit", cwd=Path(work))
            _git("push", "-q", str(bare), f"HEAD:refs/heads/{default_branch}", cwd=Path(work))
        return self.url_for(name)

    def commit_file(self, name: str, branch: str, path: str, content: str) -> None:
        """Add a commit on the server side (someone else pushing)."""
        with tempfile.TemporaryDirectory() as work:
            _git("clone", "-q", "-b", branch, str(self.path_for(name)), work)
            (Path(work) / path).write_text(content)
            _git("add", "-A", cwd=Path(work))
            _git("commit", "-q", "-m", f"Update {path}", cwd=Path(work))
            _git("push", "-q", "origin", branch, cwd=Path(work))

    def reject_pushes(self, name: str, reject: bool = True) -> None:
        hook = self.path_for(name) / "hooks" / "pre-receive"
        if reject:
            hook.write_text("#!/bin/sh\necho 'pushes are frozen by policy' >&2\nexit 1\n")
            hook.chmod(0o755)
        elif hook.exists():
            hook.unlink()

    def branches(self, name: str) -> list[str]:
        out = _git(
            "for-each-ref", "--format=%(refname:short)", "refs/heads", cwd=self.path_for(name)
        )
        return out.split()

    def read_file(self, name: str, branch: str, path: str) -> str:
        return _git("show", f"{branch}:{path}", cwd=self.path_for(name))

    def log(self, name: str, branch: str) -> list[str]:
        return _git("log", "--format=%s", branch, cwd=self.path_for(name)).splitlines()

    def __enter__(self) -> GitServer:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        if self._tmp is not None:
            self._tmp.cleanup()


def _handler(server: GitServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def _authorized(self) -> bool:
            header = self.headers.get("Authorization", "")
            if not header.startswith("Basic "):
                return False
            try:
                _, _, password = base64.b64decode(header[6:]).decode().partition(":")
            except ValueError:
                return False
            return password == server.token

        def _body(self) -> bytes:
            if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                chunks = []
                while True:
                    size = int(self.rfile.readline().strip() or b"0", 16)
                    if size == 0:
                        self.rfile.readline()
                        break
                    chunks.append(self.rfile.read(size))
                    self.rfile.readline()
                return b"".join(chunks)
            return self.rfile.read(int(self.headers.get("Content-Length", "0")))

        def _serve(self, method: str) -> None:
            body = self._body() if method == "POST" else b""
            server.requests.append(
                {
                    "method": method,
                    "path": self.path,
                    "authorization": self.headers.get("Authorization"),
                }
            )
            if not self._authorized():
                self.send_response(401)
                self.send_header("WWW-Authenticate", 'Basic realm="git"')
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            path, _, query = self.path.partition("?")
            env = {
                **os.environ,
                **_GIT_ENV,
                "GIT_PROJECT_ROOT": str(server.root),
                "GIT_HTTP_EXPORT_ALL": "1",
                "PATH_INFO": path,
                "QUERY_STRING": query,
                "REQUEST_METHOD": method,
                "CONTENT_TYPE": self.headers.get("Content-Type", ""),
                "CONTENT_LENGTH": str(len(body)),
                "REMOTE_USER": "agent",
                "REMOTE_ADDR": "127.0.0.1",
                "GIT_PROTOCOL": self.headers.get("Git-Protocol", ""),
            }
            encoding = self.headers.get("Content-Encoding", "")
            if encoding:
                env["HTTP_CONTENT_ENCODING"] = encoding
            proc = subprocess.run(
                ["git", "http-backend"], input=body, env=env, capture_output=True, timeout=60
            )
            head, _, payload = proc.stdout.partition(b"\r\n\r\n")
            status = 200
            headers: list[tuple[str, str]] = []
            for line in head.decode(errors="replace").split("\r\n"):
                name, _, value = line.partition(":")
                if name.lower() == "status":
                    status = int(value.strip().split()[0])
                elif name:
                    headers.append((name, value.strip()))
            self.send_response(status)
            for name, value in headers:
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def do_GET(self) -> None:
            self._serve("GET")

        def do_POST(self) -> None:
            self._serve("POST")

    return Handler
