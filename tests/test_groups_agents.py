"""A multi-agent task with the real agents: claude + codex + claude on one repository served
over git smart HTTP, against the scripted model."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from agentyard.runtimes.processes import marked_pids
from agentyard.testing.fake_github import FakeGitHub, FakeRepo
from agentyard.testing.git_http import GitHttpServer
from agentyard.testing.harness import ServerProcess, server_env, wait_status
from agentyard.testing.scripted_model import ScriptedModelServer

TOKEN = "ghp_groupTestToken0123456789"
PATCH = "*** Begin Patch\n*** Add File: codex.txt\n+written by codex\n*** End Patch\n"
SCRIPT: dict[str, Any] = {
    "scenarios": [
        {
            "turns": [
                {
                    "text": "Writing my answer.",
                    "tool_calls": [
                        {
                            "name": "Write",
                            "input": {"file_path": "{cwd}/claude.txt", "content": "by claude\n"},
                        }
                    ],
                    "openai": {"tool_calls": [{"name": "apply_patch", "input": PATCH}]},
                    # The third agent is slow: it is still running when the winner is chosen.
                    "models": {"claude-slow": {"delay": 120}},
                },
                {"text": "Done."},
            ]
        }
    ]
}


@pytest.fixture(scope="module")
def setup(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[ServerProcess, GitHttpServer, FakeGitHub]]:
    data = tmp_path_factory.mktemp("yard")
    with (
        ScriptedModelServer(SCRIPT) as model,
        GitHttpServer(data / "remote", TOKEN) as git,
        FakeGitHub() as github,
    ):
        github.add_user(TOKEN, "octocat")
        github.add_repo(FakeRepo("octocat", "arena"))
        env = server_env(
            data,
            {
                "ANTHROPIC_BASE_URL": model.url,
                "ANTHROPIC_API_KEY": "sk-ant-scripted",
                "OPENAI_BASE_URL": model.url + "/v1",
                "OPENAI_API_KEY": "sk-openai-scripted",
                "AGENTYARD_CODEX_MAX_RETRIES": "0",
                "AGENTYARD_CLAUDE_ENV": '{"CLAUDE_CODE_MAX_RETRIES": "0"}',
                "AGENTYARD_MAX_CONCURRENT_RUNS": "3",
                "AGENTYARD_GITHUB_API_URL": github.url,
                "AGENTYARD_REPO_HOSTS": json.dumps([git.url]),
                "AGENTYARD_REPO_PRIVATE_HOSTS": json.dumps(["127.0.0.1"]),
            },
        )
        server = ServerProcess(data, env).start()
        with server.client() as c:
            assert c.post("/api/v1/git/config", json={"githubToken": TOKEN}).status_code == 200
        try:
            yield server, git, github
        finally:
            server.stop()


def test_claude_codex_claude_compete_and_a_winner_is_selected(
    setup: tuple[ServerProcess, GitHttpServer, FakeGitHub],
) -> None:
    """Three runs, three branches pushed with each agent's own change; compare shows the
    diffs side by side; select picks the winner, opens its pull request and cancels the run
    still going; the group's status is then completed."""
    server, git, github = setup
    url = git.create_repo("octocat/arena", {"README.md": "arena\n"})
    with server.client() as c:
        r = c.post(
            "/api/v1/tasks",
            json={
                "prompt": "Write your answer file",
                "repoUrl": url,
                "selectedAgents": [
                    {"agent": "claude", "model": "claude-sonnet-4-5"},
                    {"agent": "codex", "model": "gpt-5.5"},
                    {"agent": "claude", "model": "claude-slow"},
                ],
            },
        )
        assert r.status_code == 200, r.text
        body = r.json()
        group = body["taskId"]
        assert body["agentCount"] == 3
        claude, codex, slow = (run["runId"] for run in body["runs"])
        assert [run["agent"] for run in body["runs"]] == ["claude", "codex", "claude"]
        for run_id in (claude, codex):
            status = wait_status(c, run_id, {"completed", "failed"}, timeout=120)
            assert status["status"] == "completed", status
        wait_status(c, slow, {"running"})
        view = c.get(f"/api/v1/groups/{group}").json()
        assert view["status"] == "running"

        branches = {
            run_id: c.get(f"/api/v1/tasks/{run_id}").json()["github"]["createdBranch"]
            for run_id in (claude, codex, slow)
        }
        assert len(set(branches.values())) == 3
        assert branches[claude].endswith("-claude-1") and branches[codex].endswith("-codex-2")
        assert git.read_file("octocat/arena", branches[claude], "claude.txt") == "by claude\n"
        assert git.read_file("octocat/arena", branches[codex], "codex.txt") == "written by codex\n"

        compare = c.get(f"/api/v1/groups/{group}/compare").json()
        diffs = {run["runId"]: run["diff"] for run in compare["runs"]}
        assert "+by claude" in diffs[claude] and "+written by codex" in diffs[codex]
        assert diffs[slow] == ""
        files = {f["path"]: f["runs"] for f in compare["files"]}
        assert set(files) == {"claude.txt", "codex.txt"}
        assert files["claude.txt"][codex] is None and files["codex.txt"][claude] is None

        chosen = c.post(
            f"/api/v1/groups/{group}/select", json={"runId": codex, "createPullRequest": True}
        )
        assert chosen.status_code == 200, chosen.text
        result = chosen.json()
        assert result["selectedRunId"] == codex and result["status"] == "completed"
        assert result["prNumber"] >= 1
        pull = github.pulls[-1]
        assert pull["head"] == branches[codex] and pull["base"] == "main"
        assert c.get(f"/api/v1/tasks/{slow}/status").json()["status"] == "cancelled"
        assert marked_pids(slow) == []
        assert c.post(f"/api/v1/groups/{group}/select", json={"runId": claude}).status_code == 409


def test_a_whole_group_is_cancelled(setup: tuple[ServerProcess, GitHttpServer, FakeGitHub]) -> None:
    """PATCH {action: cancel} on a group of real agents stops every run and its processes."""
    server, git, _ = setup
    url = git.create_repo("octocat/cancelled", {"README.md": "x\n"})
    with server.client() as c:
        body = c.post(
            "/api/v1/tasks",
            json={
                "prompt": "slowly",
                "repoUrl": url,
                "selectedAgents": [{"agent": "claude", "model": "claude-slow"}] * 2,
            },
        ).json()
        for run in body["runs"]:
            wait_status(c, run["runId"], {"running"})
        view = c.patch(f"/api/v1/groups/{body['taskId']}", json={"action": "cancel"}).json()
        assert view["status"] == "cancelled"
        for run in body["runs"]:
            assert marked_pids(run["runId"]) == []
