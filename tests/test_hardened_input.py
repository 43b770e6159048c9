"""Input an attacker would send, and what an agent could leave in its workspace: each is a
4xx that says why (or a run that still ends), never a 500, a hang or a frozen server.

Headers are capped before authentication; bodies by their route's own limit, as they
stream in; deeply nested JSON is refused; the files API never opens a FIFO, socket or
device; names that become a GitHub API path are checked; IPv6 repository hosts work and a
malformed host entry stops the server at start-up; a command's leftover daemon does not keep
its run ``running``.
"""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from agentyard.core.repo_rules import HostRule, parse_repo_url
from agentyard.runtimes.processes import marked_pids
from agentyard.testing.fake_github import FakeGitHub, FakeRepo
from agentyard.testing.git_http import GitHttpServer
from agentyard.testing.harness import (
    API_KEY,
    ServerProcess,
    running_server,
    server_env,
    wait_status,
)

BODY_LIMIT = 1_048_576
UPLOAD_LIMIT = 3 * 1_048_576
TOKEN = "ghp_hardenedInputToken0123456789"
SPECIAL_FILES = (
    "mkfifo pipe && mkdir -p sub && mkfifo sub/pipe && "
    "python3 -c \"import socket; socket.socket(socket.AF_UNIX).bind('sock')\""
)
COMMANDS = {
    "special": {"argv": ["sh", "-c", SPECIAL_FILES]},
    "sh": {"argv": ["sh", "-c", "{prompt}"], "timeout_seconds": 120},
}


@pytest.fixture(scope="module")
def github() -> Iterator[FakeGitHub]:
    with FakeGitHub() as gh:
        gh.add_user(TOKEN, "octocat")
        gh.add_repo(FakeRepo("octocat", "hello"))
        yield gh


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, github: FakeGitHub) -> Iterator[ServerProcess]:
    with running_server(
        tmp_path_factory.mktemp("yard"),
        {
            "AGENTYARD_COMMANDS": json.dumps(COMMANDS),
            "AGENTYARD_MAX_BODY_BYTES": str(BODY_LIMIT),
            "AGENTYARD_MAX_UPLOAD_BYTES": str(UPLOAD_LIMIT),
            "AGENTYARD_GITHUB_API_URL": github.url,
        },
    ) as proc:
        yield proc


@pytest.fixture(scope="module")
def run_id(server: ServerProcess) -> str:
    """A run whose workspace holds two FIFOs and a socket."""
    with server.client() as c:
        body = c.post(
            "/api/v1/tasks", json={"prompt": "p", "agent": "command", "model": "special"}
        ).json()
        assert wait_status(c, body["runId"], {"completed", "failed"})["status"] == "completed"
        return str(body["runId"])


def run_script(client: httpx.Client, script: str) -> dict[str, Any]:
    r = client.post("/api/v1/tasks", json={"prompt": script, "agent": "command", "model": "sh"})
    assert r.status_code == 200, r.text
    wait_status(client, r.json()["runId"], {"completed", "failed", "cancelled"}, timeout=90)
    task: dict[str, Any] = client.get(f"/api/v1/tasks/{r.json()['runId']}").json()
    return task


def output(task: dict[str, Any]) -> str:
    return "".join(
        part.get("text", "")
        for m in task["messages"][1:]
        for part in m["parts"]
        if part["type"] == "text"
    )


# -- headers -------------------------------------------------------------------------


def test_too_many_or_too_large_headers_are_431_before_authentication(
    server: ServerProcess,
) -> None:
    """Without a key (which would be 401) and with one: the header cap answers first."""
    many = {f"x-filler-{i}": "v" for i in range(70)}
    for headers in (many, {"x-filler": "v" * 20_000}):
        for auth in ({}, {"Authorization": f"Bearer {API_KEY}"}):
            r = httpx.get(f"{server.url}/api/v1/tasks", headers={**headers, **auth}, timeout=10)
            assert r.status_code == 431, r.text
            assert "header" in r.json()["error"]
    # Within the limits, the same request goes on to authentication, and through it.
    few = {f"x-filler-{i}": "v" for i in range(40)}
    assert httpx.get(f"{server.url}/api/v1/tasks", headers=few, timeout=10).status_code == 401
    with server.client() as c:
        assert c.get("/api/v1/tasks", headers={"x-filler": "v" * 8000}).status_code == 200


# -- bodies --------------------------------------------------------------------------


def test_a_json_route_has_the_body_limit_even_under_files(
    client: httpx.Client, run_id: str
) -> None:
    """A file write is a JSON route: over ``max_body_bytes`` it is 413, though its path has
    ``/files/`` in it; by Content-Length or, chunked, as it streams in."""
    base = f"/api/v1/tasks/{run_id}/files"
    content = "x" * (BODY_LIMIT + 10)
    r = client.put(f"{base}/big.txt", json={"content": content})
    assert r.status_code == 413 and "exceeds" in r.json()["error"]

    def chunks() -> Iterator[bytes]:
        yield b'{"content": "'
        for _ in range(40):
            yield b"x" * 65536
        yield b'"}'

    r = client.put(f"{base}/big.txt", content=chunks())
    assert r.status_code == 413 and "exceeds" in r.json()["error"]
    assert client.get(f"{base}/big.txt").status_code == 404
    # Other JSON routes too, streamed or not.
    r = client.post("/api/v1/tasks", content=chunks())
    assert r.status_code == 413


def test_the_upload_route_has_the_upload_limit(client: httpx.Client, run_id: str) -> None:
    """Only the upload route declares the larger limit, and is held to it as well."""
    base = f"/api/v1/tasks/{run_id}/files"
    payload = b"y" * (2 * BODY_LIMIT)
    r = client.post(f"{base}/upload", files=[("file", ("large.bin", payload))])
    assert r.status_code == 201, r.text
    assert r.json()["uploaded"][0]["size"] == len(payload)
    r = client.post(f"{base}/upload", files=[("file", ("huge.bin", b"z" * (UPLOAD_LIMIT + 1)))])
    assert r.status_code == 413
    # A path that only looks like the upload route is not it.
    r = client.put(f"{base}/upload", json={"content": "u" * (BODY_LIMIT + 10)})
    assert r.status_code == 413


def test_deeply_nested_json_is_a_400(client: httpx.Client, run_id: str) -> None:
    for depth in (100_000, 1000, 65):
        nested = "[" * depth + "]" * depth
        for method, path in (
            ("POST", "/api/v1/tasks"),
            ("PUT", f"/api/v1/tasks/{run_id}/files/n.txt"),
        ):
            r = client.request(method, path, content=f'{{"prompt": "p", "x": {nested}}}')
            assert r.status_code == 400, (depth, r.text)
            assert "nested deeper than 64" in r.json()["error"]
    # Just under the limit, a body is judged on its fields as usual.
    nested = "[" * 62 + "]" * 62
    r = client.put(
        f"/api/v1/tasks/{run_id}/files/n.txt", content=f'{{"content": "ok", "x": {nested}}}'
    )
    assert r.status_code == 200, r.text


# -- special files in the workspace --------------------------------------------------


def test_fifos_and_sockets_are_refused_and_the_server_stays_responsive(
    server: ServerProcess, client: httpx.Client, run_id: str
) -> None:
    """Writing, uploading onto or reading a FIFO or a socket is a 400 that names it, at
    once; health checks are answered meanwhile."""
    base = f"/api/v1/tasks/{run_id}/files"
    stop = threading.Event()
    health: list[int] = []

    def poll_health() -> None:
        with httpx.Client(base_url=server.url, timeout=5) as c:
            while True:  # at least once, however quickly the attempts are refused
                health.append(c.get("/healthz").status_code)
                if stop.is_set():
                    return

    def attempts(name: str) -> list[httpx.Response]:
        folder, _, leaf = name.rpartition("/")
        with server.client() as c:
            c.timeout = httpx.Timeout(10)
            return [
                c.put(f"{base}/{name}", json={"content": "x"}),
                c.post(f"{base}/upload", files=[("file", (leaf, b"x"))], data={"path": folder}),
                c.get(f"{base}/{name}"),
            ]

    poller = threading.Thread(target=poll_health)
    poller.start()
    try:
        names = ["pipe", "sub/pipe", "sock"]
        with ThreadPoolExecutor(3) as pool:
            results = dict(zip(names, pool.map(attempts, names), strict=True))
    finally:
        stop.set()
        poller.join()
    for name, responses in results.items():
        kind = "socket" if name == "sock" else "FIFO"
        for r in responses:
            assert r.status_code == 400, (name, r.request.method, r.text)
            assert kind in r.json()["error"] and name in r.json()["error"], r.text
    assert health and set(health) == {200}
    # They are still what they were, and listed as nothing readable.
    listing = client.get(base).json()["files"]
    assert not {"pipe", "sock"} & {f["path"] for f in listing}
    assert client.get("/healthz").status_code == 200


def test_base64_content_with_non_ascii_characters_is_a_400(
    client: httpx.Client, run_id: str
) -> None:
    base = f"/api/v1/tasks/{run_id}/files"
    for content in ("aGVsbG8=é", "ü", "\u2028AAAA"):
        r = client.put(f"{base}/b.bin", json={"content": content, "encoding": "base64"})
        assert r.status_code == 400 and "base64" in r.json()["error"]
    assert client.get(f"{base}/b.bin").status_code == 404
    ok = base64.b64encode(b"\x00\xff").decode()
    assert (
        client.put(f"{base}/b.bin", json={"content": ok, "encoding": "base64"}).json()["size"] == 2
    )


# -- GitHub names --------------------------------------------------------------------


def test_control_characters_in_owner_or_repo_are_a_400(client: httpx.Client) -> None:
    assert client.post("/api/v1/git/config", json={"githubToken": TOKEN}).status_code == 200
    for bad in ("\x00", "oct\ncat", "oct\x7fcat", "oct cat", "a/b", "..", "x" * 101, "%2e"):
        for params in ({"owner": bad, "repo": "hello"}, {"owner": "octocat", "repo": bad}):
            r = client.get("/api/v1/git/branches", params=params)
            assert r.status_code == 400, (params, r.text)
            assert "must be a GitHub name" in r.json()["error"]
    r = client.get("/api/v1/git/branches", params={"owner": "octocat", "repo": "hello"})
    assert r.status_code == 200 and r.json()["default_branch"] == "main"


# -- 405 -----------------------------------------------------------------------------


def test_a_405_names_the_allowed_methods(client: httpx.Client, run_id: str) -> None:
    for method, path, allowed in (
        ("DELETE", "/api/v1/tasks", {"GET", "POST"}),
        ("PUT", "/healthz", {"GET"}),
        ("POST", f"/api/v1/tasks/{run_id}/files/download", {"GET", "PUT", "DELETE"}),
    ):
        r = client.request(method, path)
        assert r.status_code == 405 and "error" in r.json(), (method, path)
        assert allowed <= {m.strip() for m in r.headers["allow"].split(",")}, r.headers


# -- a command's leftover daemon -----------------------------------------------------


@pytest.mark.parametrize("sandbox", ["none", "bwrap"])
def test_a_command_that_leaves_a_daemon_ends_when_it_exits(tmp_path: Path, sandbox: str) -> None:
    """Under the server's own loop (uvloop), unconfined or in the sandbox: the run completes
    with the agent's output, though a daemon it started holds that output open; the daemon
    is killed."""
    env = server_env(
        tmp_path, {"AGENTYARD_COMMANDS": json.dumps(COMMANDS), "AGENTYARD_SANDBOX": sandbox}
    )
    proc = ServerProcess(tmp_path, env).start()
    try:
        with proc.client() as c:
            assert c.get("/readyz").json()["sandbox"] == sandbox
            task = run_script(c, "sleep 300 & echo done; echo more >&2")
            assert task["status"] == "completed", task
            assert sorted(output(task).split()) == ["done", "more"]
            assert marked_pids(task["runId"]) == []
            # Output written before the agent exits is never cut short.
            task = run_script(c, "(sleep 300 &) ; seq 1 20000")
            assert task["status"] == "completed", task
            assert output(task).split() == [str(i) for i in range(1, 20001)]
            assert marked_pids(task["runId"]) == []
    finally:
        proc.stop()


# -- IPv6 repository hosts -----------------------------------------------------------


def test_repo_host_entries_parse_ipv6_and_refuse_what_is_malformed() -> None:
    assert HostRule.parse("http://[::1]:8000") == HostRule("::1", 8000, True)
    assert HostRule.parse("[::1]") == HostRule("::1", None, False)
    assert HostRule.parse("HTTPS://GitHub.com/") == HostRule("github.com", None, False)
    repo = parse_repo_url("http://[::1]:8000/octocat/hello", ["http://[::1]:8000"])
    assert repo.url == "http://[::1]:8000/octocat/hello.git" and repo.host == "::1"
    assert parse_repo_url("https://[::1]/o/r.git", ["[::1]"]).url == "https://[::1]/o/r.git"
    for bad in ("::1", "http://[::1", "[nope]", "a b", "user@host", "host/path", "ftp://h", "h:x"):
        with pytest.raises(ValueError, match="repo host"):
            HostRule.parse(bad)


def test_a_malformed_repo_host_stops_the_server_at_start_up(tmp_path: Path) -> None:
    env = server_env(tmp_path, {"AGENTYARD_REPO_HOSTS": json.dumps(["github.com", "::1"])})
    done = subprocess.run(
        [sys.executable, "-m", "agentyard.cli", "serve", "--port", "0"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert "AGENTYARD_REPO_HOSTS" in done.stderr and "brackets" in done.stderr
    assert "Traceback" not in done.stderr


def test_a_task_on_an_ipv6_repository_host_is_pushed(tmp_path: Path, github: FakeGitHub) -> None:
    """``http://[::1]:port`` allow-listed: a repoUrl task there clones, works and pushes."""
    with GitHttpServer(tmp_path / "repos", TOKEN, host="::1") as git:
        url = git.create_repo("octocat/hello", {"README.md": "# hello\n"})
        assert url.startswith("http://[::1]:")
        data = tmp_path / "yard"
        env = server_env(
            data,
            {
                "AGENTYARD_COMMANDS": json.dumps(COMMANDS),
                "AGENTYARD_GITHUB_API_URL": github.url,
                "AGENTYARD_REPO_HOSTS": json.dumps([git.url]),
                "AGENTYARD_REPO_PRIVATE_HOSTS": json.dumps(["[::1]"]),
            },
        )
        proc = ServerProcess(data, env).start()
        try:
            with proc.client() as c:
                assert c.post("/api/v1/git/config", json={"githubToken": TOKEN}).status_code == 200
                r = c.post(
                    "/api/v1/tasks",
                    json={
                        "prompt": "echo v6 >> README.md",
                        "agent": "command",
                        "model": "sh",
                        "repoUrl": url,
                    },
                )
                assert r.status_code == 200, r.text
                status = wait_status(c, r.json()["runId"], {"completed", "failed"})
                assert status["status"] == "completed", status
                branch = c.get(f"/api/v1/tasks/{r.json()['runId']}").json()["github"][
                    "createdBranch"
                ]
            assert git.read_file("octocat/hello", branch, "README.md") == "# hello\nv6\n"
        finally:
            proc.stop()
