"""A GitHub-compatible REST API on 127.0.0.1 for tests: users by token, repositories,
branches and pull requests held in memory."""

from __future__ import annotations

import json
import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class FakeRepo:
    owner: str
    name: str
    default_branch: str = "main"
    branches: dict[str, str] = field(default_factory=lambda: {"main": "0" * 40})
    private: bool = False

    @property
    def full_name(self) -> str:
        return f"{self.owner}/{self.name}"


class FakeGitHub:
    def __init__(self) -> None:
        self.users: dict[str, dict[str, Any]] = {}
        """token -> profile (``login``, ``name``, ``email``)."""
        self.repos: dict[str, FakeRepo] = {}
        self.pulls: list[dict[str, Any]] = []
        self.requests: list[tuple[str, str]] = []
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def add_user(self, token: str, login: str, name: str | None = None) -> None:
        self.users[token] = {"login": login, "name": name, "email": f"{login}@example.test"}

    def add_repo(self, repo: FakeRepo) -> None:
        self.repos[repo.full_name] = repo

    def __enter__(self) -> FakeGitHub:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._server.shutdown()
        self._server.server_close()


def _handler(gh: FakeGitHub) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

        def _send(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
            raw = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(raw)))
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(raw)

        def _user(self) -> dict[str, Any] | None:
            auth = self.headers.get("Authorization", "")
            token = auth.split(" ", 1)[1] if " " in auth else ""
            return gh.users.get(token)

        def _route(self, method: str) -> None:
            path = self.path.split("?", 1)[0]
            gh.requests.append((method, path))
            user = self._user()
            if user is None:
                self._send(401, {"message": "Bad credentials"})
                return
            if method == "GET" and path == "/user":
                self._send(
                    200,
                    {**user, "avatar_url": None, "public_repos": 1, "total_private_repos": 0},
                    {"X-OAuth-Scopes": "repo, user"},
                )
                return
            if method == "GET" and path == "/user/repos":
                self._send(
                    200,
                    [
                        {
                            "id": i,
                            "name": r.name,
                            "full_name": r.full_name,
                            "private": r.private,
                            "html_url": f"https://github.example/{r.full_name}",
                            "description": None,
                            "fork": False,
                            "default_branch": r.default_branch,
                            "updated_at": "2026-01-01T00:00:00Z",
                        }
                        for i, r in enumerate(gh.repos.values())
                    ],
                )
                return
            m = re.fullmatch(r"/repos/([^/]+)/([^/]+)(/branches|/pulls)?", path)
            repo = gh.repos.get(f"{m.group(1)}/{m.group(2)}") if m else None
            if m is None or repo is None:
                self._send(404, {"message": "Not Found"})
                return
            if method == "GET" and m.group(3) is None:
                self._send(
                    200, {"full_name": repo.full_name, "default_branch": repo.default_branch}
                )
            elif method == "GET" and m.group(3) == "/branches":
                self._send(
                    200,
                    [
                        {
                            "name": n,
                            "protected": n == repo.default_branch,
                            "commit": {"sha": sha, "url": ""},
                        }
                        for n, sha in repo.branches.items()
                    ],
                )
            elif method == "POST" and m.group(3) == "/pulls":
                length = int(self.headers.get("Content-Length", "0"))
                body = json.loads(self.rfile.read(length) or b"{}")
                number = len(gh.pulls) + 1
                gh.pulls.append({**body, "number": number, "repo": repo.full_name})
                self._send(
                    201,
                    {
                        "number": number,
                        "html_url": f"https://github.example/{repo.full_name}/pull/{number}",
                    },
                )
            else:
                self._send(404, {"message": "Not Found"})

        def do_GET(self) -> None:
            self._route("GET")

        def do_POST(self) -> None:
            self._route("POST")

    return Handler
