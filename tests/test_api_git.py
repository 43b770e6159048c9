"""The GitHub connection endpoints against a GitHub-compatible API on 127.0.0.1."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from agentyard.testing.fake_github import FakeGitHub, FakeRepo
from agentyard.testing.harness import ServerProcess, server_env

TOKEN = "ghp_fakeSecretToken0123456789"


@pytest.fixture(scope="module")
def github() -> Iterator[FakeGitHub]:
    with FakeGitHub() as gh:
        gh.add_user(TOKEN, "octocat", "The Octocat")
        gh.add_repo(FakeRepo("octocat", "hello", branches={"main": "a" * 40, "dev": "b" * 40}))
        yield gh


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, github: FakeGitHub) -> Iterator[ServerProcess]:
    data = tmp_path_factory.mktemp("yard")
    proc = ServerProcess(data, server_env(data, {"AGENTYARD_GITHUB_API_URL": github.url})).start()
    yield proc
    proc.stop()


def test_connect_inspect_list_and_disconnect(server: ServerProcess, github: FakeGitHub) -> None:
    """A token is validated, stored encrypted, never returned; repos and branches are listed
    with it; disconnect purges it."""
    with server.client() as c:
        assert c.get("/api/v1/git/config").json() == {"connected": False}
        assert c.get("/api/v1/git/status").json()["connected"] is False
        assert c.get("/api/v1/git/repos").status_code == 403

        bad = c.post("/api/v1/git/config", json={"githubToken": "ghp_wrong"})
        assert bad.status_code == 400 and "rejected" in bad.json()["error"]
        assert c.get("/api/v1/git/config").json() == {"connected": False}
        assert c.post("/api/v1/git/config", json={}).status_code == 400

        r = c.post("/api/v1/git/config", json={"githubToken": TOKEN})
        assert r.status_code == 200 and r.json() == {"success": True, "login": "octocat"}
        config = c.get("/api/v1/git/config").json()
        assert config["connected"] is True and config["login"] == "octocat"
        assert config["scopes"] == "repo, user" and config["tokenCreatedAt"]
        status = c.get("/api/v1/git/status").json()
        assert status["tokenValid"] is True and status["name"] == "The Octocat"

        repos = c.get("/api/v1/git/repos").json()
        assert repos["total"] == 1 and repos["repos"][0]["full_name"] == "octocat/hello"
        branches = c.get("/api/v1/git/branches", params={"owner": "octocat", "repo": "hello"})
        assert branches.json()["default_branch"] == "main"
        assert {b["name"] for b in branches.json()["branches"]} == {"main", "dev"}
        assert c.get("/api/v1/git/branches", params={"owner": "octocat"}).status_code == 400
        missing = c.get("/api/v1/git/branches", params={"owner": "octocat", "repo": "nope"})
        assert missing.status_code == 400 and "not found" in missing.json()["error"]

        for response in (config, status, repos, branches.json()):
            assert TOKEN not in str(response)
        assert TOKEN.encode() not in (server.data_dir / "agentyard.db").read_bytes()
        assert TOKEN not in server.logs()

        assert c.delete("/api/v1/git/clean").json()["success"] is True
        assert c.get("/api/v1/git/config").json() == {"connected": False}
        assert c.get("/api/v1/git/repos").status_code == 403


def test_connections_are_per_user(server: ServerProcess, tmp_path: Path) -> None:
    """One user's GitHub connection is not another's."""
    with server.client() as c:
        assert c.post("/api/v1/git/config", json={"githubToken": TOKEN}).status_code == 200
    bob = server.cli("keys", "create", "--name", "bob", "--user", "bob").strip()
    with server.client(bob) as c:
        assert c.get("/api/v1/git/config").json() == {"connected": False}
