"""Tasks on git repositories served over real smart HTTP on 127.0.0.1: clone, a created
branch, commit, push, continue, pull requests, and the repoUrl rules."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from agentyard.testing.fake_github import FakeGitHub, FakeRepo
from agentyard.testing.git_http import GitHttpServer
from agentyard.testing.harness import ServerProcess, server_env, wait_status

TOKEN = "ghp_repoTestToken0123456789abcdef"
COMMANDS = {
    "write": {"argv": ["sh", "-c", 'echo "$AGENTYARD_PROMPT" > "agent-$(date +%s%N).txt"']},
    "edit": {"argv": ["sh", "-c", 'echo "$AGENTYARD_PROMPT" >> README.md']},
    "nothing": {"argv": ["true"]},
}


@pytest.fixture(scope="module")
def git_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GitHttpServer]:
    with GitHttpServer(tmp_path_factory.mktemp("remote"), TOKEN) as server:
        yield server


@pytest.fixture(scope="module")
def github() -> Iterator[FakeGitHub]:
    with FakeGitHub() as gh:
        gh.add_user(TOKEN, "octocat")
        gh.add_repo(FakeRepo("octocat", "hello"))
        yield gh


@pytest.fixture(scope="module")
def server(
    tmp_path_factory: pytest.TempPathFactory, git_server: GitHttpServer, github: FakeGitHub
) -> Iterator[ServerProcess]:
    data = tmp_path_factory.mktemp("yard")
    shim = data / "bin"
    shim.mkdir()
    # Every git command the server runs is logged with its argv: the token must never be there.
    (shim / "git").write_text(
        f'#!/bin/sh\necho "$@" >> {data}/git-argv.log\nexec /usr/bin/git "$@"\n'
    )
    (shim / "git").chmod(0o755)
    env = server_env(
        data,
        {
            "PATH": f"{shim}:{os.environ['PATH']}",
            "AGENTYARD_COMMANDS": json.dumps(COMMANDS),
            "AGENTYARD_GITHUB_API_URL": github.url,
            "AGENTYARD_REPO_HOSTS": json.dumps(["github.com", git_server.url, "localhost"]),
            "AGENTYARD_REPO_PRIVATE_HOSTS": json.dumps(["127.0.0.1"]),
            "AGENTYARD_MAX_CONCURRENT_RUNS": "3",
        },
    )
    proc = ServerProcess(data, env).start()
    with proc.client() as c:
        assert c.post("/api/v1/git/config", json={"githubToken": TOKEN}).status_code == 200
    yield proc
    proc.stop()


def create(
    client: httpx.Client, url: str, prompt: str, command: str = "write", **extra: Any
) -> dict[str, Any]:
    r = client.post(
        "/api/v1/tasks",
        json={"prompt": prompt, "agent": "command", "model": command, "repoUrl": url, **extra},
    )
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


def test_a_task_pushes_its_work_on_a_created_branch_and_continue_adds_to_it(
    server: ServerProcess, client: httpx.Client, git_server: GitHttpServer
) -> None:
    """The agent works on a new branch cut from the default branch; its change is committed
    and pushed; continue fetches the branch and adds a second commit to it."""
    url = git_server.create_repo("octocat/hello", {"README.md": "# hello\n"})
    body = create(client, url, "Add a note, please!", command="edit")
    status = wait_status(client, body["runId"], {"completed", "failed"})
    assert status["status"] == "completed", status
    task = client.get(f"/api/v1/tasks/{body['runId']}").json()
    gh = task["github"]
    branch = gh["createdBranch"]
    assert branch.startswith("agentyard/add-a-note-please-") and branch.endswith(
        body["runId"].replace("-", "")[:8]
    )
    assert gh["repoUrl"] == url and gh["owner"] == "octocat" and gh["repo"] == "hello"
    assert gh["baseBranch"] == "main" and gh["pushed"] is True and len(gh["commits"]) == 1
    assert branch in git_server.branches("octocat/hello")
    assert (
        git_server.read_file("octocat/hello", branch, "README.md")
        == "# hello\nAdd a note, please!\n"
    )
    assert git_server.log("octocat/hello", branch)[0] == "Add a note, please!"
    assert (
        task["diffStats"]["linesAdded"] == 1
        and task["diffStats"]["files"][0]["path"] == "README.md"
    )
    diff = client.get(f"/api/v1/tasks/{body['runId']}/diff").json()["diff"]
    assert "+Add a note, please!" in diff

    # Someone else can't have moved it; the follow-up goes on from the pushed branch.
    r = client.post(f"/api/v1/tasks/{body['runId']}/continue", json={"prompt": "And another."})
    follow = r.json()["runId"]
    assert wait_status(client, follow, {"completed", "failed"})["status"] == "completed"
    assert git_server.log("octocat/hello", branch)[:2] == ["And another.", "Add a note, please!"]
    assert git_server.read_file("octocat/hello", branch, "README.md").endswith("And another.\n")
    assert git_server.read_file("octocat/hello", "main", "README.md") == "# hello\n"
    follow_task = client.get(f"/api/v1/tasks/{follow}").json()
    assert (
        follow_task["github"]["createdBranch"] == branch
        and len(follow_task["github"]["commits"]) == 1
    )


def test_a_follow_up_in_a_fresh_workspace_continues_from_the_pushed_branch(
    server: ServerProcess, client: httpx.Client, git_server: GitHttpServer
) -> None:
    """With the workspace gone (another machine), continue checks out the pushed branch."""
    url = git_server.create_repo("octocat/fresh", {"README.md": "x\n"})
    body = create(client, url, "first", command="edit")
    wait_status(client, body["runId"], {"completed"})
    workspace = server.data_dir / "workspaces" / body["chatId"]
    subprocess.run(["rm", "-rf", str(workspace)], check=True)
    r = client.post(f"/api/v1/tasks/{body['runId']}/continue", json={"prompt": "second"})
    follow = r.json()["runId"]
    assert wait_status(client, follow, {"completed", "failed"})["status"] == "completed"
    branch = client.get(f"/api/v1/tasks/{follow}").json()["github"]["createdBranch"]
    assert git_server.read_file("octocat/fresh", branch, "README.md") == "x\nfirst\nsecond\n"


def test_a_rejected_push_fails_the_run_and_keeps_the_work(
    server: ServerProcess, client: httpx.Client, git_server: GitHttpServer
) -> None:
    """Push rejected by the remote: the run fails with the remote's reason; the commit stays
    in the workspace."""
    url = git_server.create_repo("octocat/frozen", {"README.md": "x\n"})
    git_server.reject_pushes("octocat/frozen")
    body = create(client, url, "try to change", command="edit")
    status = wait_status(client, body["runId"], {"completed", "failed"})
    assert status["status"] == "failed"
    assert "push of branch" in status["error"] and "frozen by policy" in status["error"]
    workspace = server.data_dir / "workspaces" / body["chatId"]
    assert (workspace / "README.md").read_text() == "x\ntry to change\n"
    log = subprocess.run(
        ["git", "log", "--format=%s", "-1"], cwd=workspace, capture_output=True, text=True
    ).stdout
    assert log.strip() == "try to change"
    assert len(git_server.branches("octocat/frozen")) == 1
    task = client.get(f"/api/v1/tasks/{body['runId']}").json()
    assert task["github"]["pushed"] is False and len(task["github"]["commits"]) == 1


def test_nothing_to_commit_is_fine(client: httpx.Client, git_server: GitHttpServer) -> None:
    """An agent that changes nothing completes; nothing is pushed."""
    url = git_server.create_repo("octocat/idle", {"README.md": "x\n"})
    body = create(client, url, "look only", command="nothing")
    assert wait_status(client, body["runId"], {"completed", "failed"})["status"] == "completed"
    task = client.get(f"/api/v1/tasks/{body['runId']}").json()
    assert task["github"]["pushed"] is False and task["diffStats"]["filesChanged"] == 0


def test_create_pull_request_opens_one_from_the_branch(
    client: httpx.Client, git_server: GitHttpServer, github: FakeGitHub
) -> None:
    """createPullRequest: after the push a pull request is opened head=branch, base=main."""
    url = git_server.create_repo("octocat/prs", {"README.md": "x\n"})
    github.add_repo(FakeRepo("octocat", "prs"))
    body = create(client, url, "Make a PR", command="edit", createPullRequest=True)
    assert wait_status(client, body["runId"], {"completed", "failed"})["status"] == "completed"
    gh = client.get(f"/api/v1/tasks/{body['runId']}").json()["github"]
    assert gh["prNumber"] >= 1 and gh["prUrl"].endswith(f"/pull/{gh['prNumber']}")
    pull = next(p for p in github.pulls if p["repo"] == "octocat/prs")
    assert pull["head"] == gh["createdBranch"] and pull["base"] == "main"


def test_the_token_never_leaks(
    server: ServerProcess, client: httpx.Client, git_server: GitHttpServer
) -> None:
    """The token reaches git only through askpass: never in argv, .git/config, events or logs."""
    url = git_server.create_repo("octocat/secret", {"README.md": "x\n"})
    body = create(client, url, "secret work", command="edit")
    wait_status(client, body["runId"], {"completed"})
    # The remote saw the token (basic auth), so git did use it ...
    assert any(r.authorized for r in git_server.requests)
    # ... but it appears nowhere on our side.
    assert TOKEN not in (server.data_dir / "git-argv.log").read_text()
    workspace = server.data_dir / "workspaces" / body["chatId"]
    assert TOKEN not in (workspace / ".git" / "config").read_text()
    for mirror in (server.data_dir / "git" / "mirrors").glob("*.git"):
        assert TOKEN not in (mirror / "config").read_text()
    logs = client.get(f"/api/v1/tasks/{body['runId']}/logs").text
    assert TOKEN not in logs and TOKEN not in client.get(f"/api/v1/tasks/{body['runId']}").text
    assert TOKEN not in server.logs()


def test_a_second_task_on_the_same_repo_reuses_the_mirror(
    server: ServerProcess, client: httpx.Client, git_server: GitHttpServer
) -> None:
    """The repository is mirrored once; a later task fetches into the mirror, it does not
    clone again, and sees commits pushed meanwhile."""
    url = git_server.create_repo("octocat/cached", {"README.md": "v1\n"})
    first = create(client, url, "one", command="edit")
    wait_status(client, first["runId"], {"completed"})
    mirrors = set((server.data_dir / "git" / "mirrors").glob("*.git"))
    git_server.add_commit("octocat/cached", "main", {"README.md": "v2\n"})
    second = create(client, url, "two", command="edit")
    wait_status(client, second["runId"], {"completed"})
    assert set((server.data_dir / "git" / "mirrors").glob("*.git")) == mirrors
    workspace = server.data_dir / "workspaces" / second["chatId"]
    assert (workspace / "README.md").read_text() == "v2\ntwo\n"


def test_groups_on_a_repository_push_a_branch_per_agent(
    client: httpx.Client, git_server: GitHttpServer
) -> None:
    """Each agent of a group pushes its own branch, named with the agent and its index."""
    url = git_server.create_repo("octocat/group", {"README.md": "x\n"})
    r = client.post(
        "/api/v1/tasks",
        json={
            "prompt": "compete",
            "repoUrl": url,
            "selectedAgents": [{"agent": "command", "model": "edit"}] * 2,
        },
    )
    assert r.status_code == 200, r.text
    branches = []
    for run in r.json()["runs"]:
        assert wait_status(client, run["runId"], {"completed", "failed"})["status"] == "completed"
        branches.append(
            client.get(f"/api/v1/tasks/{run['runId']}").json()["github"]["createdBranch"]
        )
    assert branches[0].endswith("-command-1") and branches[1].endswith("-command-2")
    assert set(branches) <= set(git_server.branches("octocat/group"))


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("file:///etc/passwd", "must use https"),
        ("ssh://git@github.com/o/r.git", "must use https"),
        ("git@github.com:o/r.git", "scp-style"),
        ("ext::sh -c touch% /tmp/pwned", "transport"),
        ("https://user:pass@github.com/o/r.git", "must not embed credentials"),
        ("https://x-access-token@github.com/o/r.git", "must not embed credentials"),
        ("https://evil.example/o/r.git", "host 'evil.example' is not allowed"),
        ("http://github.com/o/r.git", "must use https"),
        ("https://github.com/o/r.git?x=1", "query"),
        ("https://github.com:8443/o/r.git", "port 8443"),
        ("https://github.com/", "must name a repository"),
        ("https://github.com/o/../r.git", "must name a repository"),
        ("https://localhost/o/r.git", "non-public address"),
        ("not a url", "must use https"),
    ],
)
def test_repo_url_rules(client: httpx.Client, url: str, message: str) -> None:
    """Each repoUrl rule: 400 naming the rule, and no run is created."""
    before = client.get("/api/v1/tasks", params={"limit": 100}).json()["tasks"]
    r = client.post("/api/v1/tasks", json={"prompt": "x", "repoUrl": url})
    assert r.status_code == 400, r.text
    assert message in r.json()["error"]
    assert client.get("/api/v1/tasks", params={"limit": 100}).json()["tasks"] == before


def test_repo_tasks_need_a_token_and_a_valid_branch(
    server: ServerProcess, client: httpx.Client, git_server: GitHttpServer
) -> None:
    """No stored GitHub token, or a malformed selectedBranch: 400."""
    url = git_server.url_for("octocat/hello")
    r = client.post("/api/v1/tasks", json={"prompt": "x", "repoUrl": url, "selectedBranch": "a..b"})
    assert r.status_code == 400 and "selectedBranch" in r.json()["error"]
    r = client.post("/api/v1/tasks", json={"prompt": "x", "selectedBranch": "main"})
    assert r.status_code == 400 and "repoUrl" in r.json()["error"]
    other = server.cli("keys", "create", "--name", "carol", "--user", "carol").strip()
    with server.client(other) as carol:
        r = carol.post("/api/v1/tasks", json={"prompt": "x", "repoUrl": url})
        assert r.status_code == 400 and "GitHub token" in r.json()["error"]
