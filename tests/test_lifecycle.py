"""The whole task lifecycle through a real server process, for every agent runtime: the real
Claude CLI and the real codex app-server, against the scripted model server on 127.0.0.1.

One server process runs both runtimes; the script gives each agent its own tools (Claude
Code's Write and Bash, codex's apply_patch and exec_command) and otherwise the same turns, so
both must produce the same statuses and the same sequence of event kinds.
"""

from __future__ import annotations

import os
import re
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from agentyard.runtimes.processes import marked_pids
from agentyard.testing.harness import ServerProcess, read_stream, server_env, wait_status
from agentyard.testing.scripted_model import ScriptedModelServer

AGENTS = ["claude", "codex"]
KEY_VARIABLES = {"claude": "ANTHROPIC_API_KEY", "codex": "OPENAI_API_KEY"}


def add_file(path: str, content: str) -> str:
    """An apply_patch text that creates ``path`` (relative to the workspace)."""
    lines = "".join(f"+{line}\n" for line in content.splitlines())
    return f"*** Begin Patch\n*** Add File: {path}\n{lines}*** End Patch\n"


SCRIPT: dict[str, Any] = {
    "scenarios": [
        {
            "match": "^write hello",
            "turns": [
                {
                    "text": "I'll write the file.",
                    "tool_calls": [
                        {
                            "name": "Write",
                            "input": {"file_path": "{cwd}/hello.txt", "content": "hello\n"},
                        }
                    ],
                    "openai": {
                        "tool_calls": [
                            {"name": "apply_patch", "input": add_file("hello.txt", "hello")}
                        ]
                    },
                },
                {"text": "Wrote hello.txt."},
            ],
        },
        {
            "match": "^run bash",
            "turns": [
                {
                    "tool_calls": [{"name": "Bash", "input": {"command": "echo hi > bash.txt"}}],
                    "openai": {
                        "tool_calls": [
                            {"name": "exec_command", "input": {"cmd": "echo hi > bash.txt"}}
                        ]
                    },
                },
                {"text": "Ran it."},
            ],
        },
        {"match": "^second", "turns": [{"text": "The second answer."}]},
        {"match": "^slow", "turns": [{"delay": 120, "text": "too late"}]},
        {"match": "^overloaded", "turns": [{"status": 500, "error": "model melted"}]},
        {"turns": [{"text": "ok"}]},
    ]
}

EXPECTED_KINDS = [
    "start",
    "session-init",
    "text-start",
    "text-delta",
    "text-end",
    "tool-call-start",
    "tool-input-available",
    "tool-output-available",
    "files",
    "text-start",
    "text-delta",
    "text-end",
    "finish",
]
"""The events of "write hello" (text with a file-writing tool call, then text), repeats of a
kind in a row collapsed (a text may arrive in several deltas)."""


@pytest.fixture(scope="module")
def model() -> Iterator[ScriptedModelServer]:
    with ScriptedModelServer(SCRIPT) as server:
        yield server


def yard_env(data: Path, model: ScriptedModelServer, **extra: str) -> dict[str, str]:
    """A server environment with both runtimes pointed at the scripted model, no retries."""
    return server_env(
        data,
        {
            "ANTHROPIC_BASE_URL": model.url,
            "ANTHROPIC_API_KEY": "sk-ant-scripted",
            "AGENTYARD_CLAUDE_ENV": '{"CLAUDE_CODE_MAX_RETRIES": "0"}',
            "OPENAI_BASE_URL": model.url + "/v1",
            "OPENAI_API_KEY": "sk-openai-scripted",
            "AGENTYARD_CODEX_MAX_RETRIES": "0",
            **extra,
        },
    )


@pytest.fixture(scope="module")
def server(
    tmp_path_factory: pytest.TempPathFactory, model: ScriptedModelServer
) -> Iterator[ServerProcess]:
    """The module's server; its own git calls (never the agents', in their sandboxes) are
    logged, each as its directory and arguments, to ``git-calls.log`` beside it."""
    data = tmp_path_factory.mktemp("yard")
    real = shutil.which("git")
    assert real
    shim = data.parent / f"{data.name}-bin" / "git"
    shim.parent.mkdir()
    shim.write_text(
        f"#!/bin/sh\nprintf '%s|%s\\n' \"$PWD\" \"$*\" >> '{data.parent / 'git-calls.log'}'\n"
        f"exec '{real}' \"$@\"\n"
    )
    shim.chmod(0o755)
    env = yard_env(data, model, PATH=f"{shim.parent}:{os.environ['PATH']}")
    proc = ServerProcess(data, env).start()
    yield proc
    proc.stop()


def git_calls(server: ServerProcess, cwd: Path) -> list[str]:
    """The subcommands of the server's git calls made in ``cwd`` (past any ``-c`` option)."""
    log = server.data_dir.parent / "git-calls.log"
    calls = []
    for line in log.read_text().splitlines():
        where, _, argv = line.partition("|")
        if Path(where) != cwd.resolve():
            continue
        words = argv.split()
        while words[:1] == ["-c"]:
            words = words[2:]
        calls.append(words[0])
    return calls


@pytest.fixture(scope="module")
def keyless(
    tmp_path_factory: pytest.TempPathFactory, model: ScriptedModelServer
) -> Iterator[ServerProcess]:
    """A server whose environment holds neither provider's key."""
    data = tmp_path_factory.mktemp("keyless")
    env = yard_env(data, model)
    for variable in KEY_VARIABLES.values():
        del env[variable]
    proc = ServerProcess(data, env).start()
    yield proc
    proc.stop()


def create(client: httpx.Client, agent: str, prompt: str) -> dict[str, Any]:
    r = client.post("/api/v1/tasks", json={"prompt": prompt, "agent": agent})
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


def workspace(server: ServerProcess, chat_id: str) -> Path:
    return server.data_dir / "workspaces" / chat_id


def events(client: httpx.Client, run_id: str) -> list[dict[str, Any]]:
    stored: list[dict[str, Any]] = client.get(f"/api/v1/tasks/{run_id}/logs").json()["events"]
    return stored


def collapsed(kinds: list[str]) -> list[str]:
    """``kinds`` with repeats in a row collapsed into one."""
    return [kind for i, kind in enumerate(kinds) if i == 0 or kinds[i - 1] != kind]


def history(request: dict[str, Any]) -> str:
    """The conversation a model request carries (Anthropic ``messages``, OpenAI ``input``)."""
    body = request["body"]
    return str(body["messages"] if request["api"] == "anthropic" else body["input"])


def wait_for_process(run_id: str, seconds: float = 30.0) -> None:
    deadline = time.monotonic() + seconds
    while not marked_pids(run_id) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert marked_pids(run_id), "the agent should be running"


def test_agents_lists_every_runtime_configured_when_its_key_is_set(
    client: httpx.Client,
) -> None:
    """GET /agents lists claude, codex, command and gemini in that order; with their keys
    set, claude and codex are configured, with their default models."""
    agents = client.get("/api/v1/agents").json()["agents"]
    assert [a["agent"] for a in agents] == ["claude", "codex", "command", "gemini"]
    by_name = {a["agent"]: a for a in agents}
    assert by_name["claude"]["configured"] is True
    assert by_name["codex"]["configured"] is True
    assert by_name["codex"]["defaultModel"] == "gpt-5.5"
    assert by_name["command"]["configured"] is False  # no commands configured


@pytest.mark.parametrize("agent", AGENTS)
def test_a_task_runs_to_completed_with_the_agents_file_in_the_workspace(
    server: ServerProcess, client: httpx.Client, agent: str
) -> None:
    """Create → queued → running → completed; the file the agent wrote is in the workspace;
    the task carries the chat's messages, camelCase usage and a cost; the events come in the
    same order of kinds for every agent."""
    body = create(client, agent, "write hello please")
    assert body["status"] == "queued"
    status = wait_status(client, body["runId"], {"completed", "failed"}, timeout=90)
    assert status["status"] == "completed", status
    assert (workspace(server, body["chatId"]) / "hello.txt").read_text() == "hello\n"
    task = client.get(f"/api/v1/tasks/{body['runId']}").json()
    assert task["agent"] == agent
    assert task["completedAt"] and task["error"] is None
    user, assistant = task["messages"]
    assert user["parts"] == [{"type": "text", "text": "write hello please"}]
    assert assistant["id"] == body["assistantMessageId"]
    texts = [p["text"] for p in assistant["parts"] if p["type"] == "text"]
    assert texts == ["I'll write the file.", "Wrote hello.txt."]
    tool = next(p for p in assistant["parts"] if p["type"] == "tool-call")
    assert tool["state"] == "output-available"
    assert tool["toolName"] == {"claude": "Write", "codex": "apply_patch"}[agent]
    usage = task["usage"]
    assert usage["inputTokens"] > 0 and usage["outputTokens"] > 0 and usage["durationMs"] >= 0
    assert all(re.fullmatch("[a-z]+(?:[A-Z][a-z]+)*", key) for key in usage), usage
    assert task["costUsd"] > 0
    stored = events(client, body["runId"])
    assert collapsed([e["type"] for e in stored]) == EXPECTED_KINDS
    files = next(e for e in stored if e["type"] == "files")["files"]
    assert [f["path"] for f in files] == ["hello.txt"]
    # The agent said it wrote a file: the save stages and commits without a status first.
    assert git_calls(server, workspace(server, body["chatId"])) == ["add", "commit"]
    assert task["diffStats"]["files"] == [
        {"path": "hello.txt", "added": 1, "removed": 0, "binary": False}
    ]


@pytest.mark.parametrize("agent", AGENTS)
def test_sse_live_then_resume_loses_and_duplicates_nothing(
    server: ServerProcess, client: httpx.Client, agent: str
) -> None:
    """A live SSE client cut off mid-run resumes with Last-Event-ID and ends up with exactly
    the stored events, in order; the finished run then replays identically; the agent's shell
    command ran in the workspace."""
    body = create(client, agent, "run bash now")
    path = f"/api/v1/tasks/{body['runId']}/logs/stream"
    code, first = read_stream(client, path, stop_after=3)
    assert code == 200 and [f.id for f in first] == [1, 2, 3]
    code, rest = read_stream(client, path, headers={"Last-Event-ID": "3"})
    got = [f.data for f in first + rest]
    assert got[-1] == {"type": "finish", "runId": body["runId"], "status": "completed"}
    stored = events(client, body["runId"])
    assert [f.id for f in first + rest] == [e.pop("seq") for e in stored]
    assert got == stored
    assert (workspace(server, body["chatId"]) / "bash.txt").read_text() == "hi\n"
    code, replay = read_stream(client, path)
    assert [f.data for f in replay] == got


@pytest.mark.parametrize("agent", AGENTS)
def test_continue_resumes_the_session_with_the_whole_conversation(
    client: httpx.Client, model: ScriptedModelServer, agent: str
) -> None:
    """A follow-up is a new run on the same chat and agent session; the model's request
    carries the first exchange; usage and cost are the run's own, not the session's running
    total."""
    first = create(client, agent, "write hello again")
    wait_status(client, first["runId"], {"completed"}, timeout=90)
    first_cost = client.get(f"/api/v1/tasks/{first['runId']}").json()["costUsd"]
    model.clear_requests()
    r = client.post(f"/api/v1/tasks/{first['runId']}/continue", json={"prompt": "second step"})
    assert r.status_code == 200, r.text
    follow = r.json()
    assert follow["chatId"] == first["chatId"] and follow["previousRunId"] == first["runId"]
    wait_status(client, follow["runId"], {"completed"}, timeout=90)
    api = {"claude": "anthropic", "codex": "openai"}[agent]
    request = next(r for r in model.requests if r["api"] == api and not r["side"])
    conversation = history(request)
    assert "write hello again" in conversation and "Wrote hello.txt." in conversation
    assert "second step" in conversation
    task = client.get(f"/api/v1/tasks/{follow['runId']}").json()
    assert task["agent"] == agent
    assert [m["role"] for m in task["messages"]] == ["user", "assistant"] * 2
    assert task["messages"][3]["parts"] == [{"type": "text", "text": "The second answer."}]
    # The follow-up is one model request, the first run two with the same context before
    # it: a session-cumulative figure would exceed the first run's.
    assert 0 < task["costUsd"] < first_cost
    session = events(client, first["runId"])[1]
    resumed = events(client, follow["runId"])[1]
    assert session["type"] == resumed["type"] == "session-init"
    assert session["sessionId"] == resumed["sessionId"]


@pytest.mark.parametrize("agent", AGENTS)
def test_cancel_during_a_slow_step_leaves_no_agent_process(
    client: httpx.Client, agent: str
) -> None:
    """Cancel while the model is thinking: the run ends cancelled and no process of it is
    left; cancelling again answers success false."""
    body = create(client, agent, "slow thinking")
    run_id = body["runId"]
    wait_status(client, run_id, {"running"})
    wait_for_process(run_id)
    r = client.patch(f"/api/v1/tasks/{run_id}", json={"action": "cancel"})
    assert r.json()["success"] is True and r.json()["status"] == "cancelled"
    assert marked_pids(run_id) == []
    again = client.patch(f"/api/v1/tasks/{run_id}", json={"action": "cancel"}).json()
    assert again["success"] is False and again["status"] == "cancelled"
    assert events(client, run_id)[-1]["type"] == "finish"


@pytest.mark.parametrize("agent", AGENTS)
def test_a_model_failure_fails_the_run_with_a_readable_error(
    client: httpx.Client, agent: str
) -> None:
    """HTTP 500 from the model: the run fails, and the error says what happened in words (a
    server error or the model's message, not a raw JSON body)."""
    body = create(client, agent, "overloaded model")
    status = wait_status(client, body["runId"], {"completed", "failed"}, timeout=90)
    assert status["status"] == "failed"
    error = status["error"]
    assert re.search(r"\b500\b|HTTP 5xx|model melted", error), error
    assert "{" not in error, error
    stored = events(client, body["runId"])
    assert [e["type"] for e in stored][-2:] == ["error", "finish"]
    assert stored[-2]["errorText"] == error


@pytest.mark.parametrize("agent", AGENTS)
def test_without_credentials_the_run_fails_naming_the_variable(
    keyless: ServerProcess, agent: str
) -> None:
    """No API key for the agent: the run fails with an error that says which variable to set
    (ANTHROPIC_API_KEY, OPENAI_API_KEY), and /agents reports the agent not configured."""
    variable = KEY_VARIABLES[agent]
    with keyless.client() as c:
        body = create(c, agent, "write hello")
        status = wait_status(c, body["runId"], {"completed", "failed"})
        assert status["status"] == "failed" and variable in status["error"]
        agents = {a["agent"]: a for a in c.get("/api/v1/agents").json()["agents"]}
        assert agents[agent]["configured"] is False
        assert variable in agents[agent]["detail"]
    assert not (workspace(keyless, body["chatId"]) / "hello.txt").exists()


def test_sigkill_mid_run_then_restart_interrupts_it_and_runs_the_queue(
    tmp_path: Path, model: ScriptedModelServer
) -> None:
    """The server killed with SIGKILL during a (Claude) run: after restart the run is
    interrupted, its CLI is gone, and the runs that were queued complete."""
    env = yard_env(tmp_path, model, AGENTYARD_MAX_CONCURRENT_RUNS="1")
    first = ServerProcess(tmp_path, env).start()
    with first.client() as c:
        slow = create(c, "claude", "slow thinking")["runId"]
        wait_status(c, slow, {"running"})
        queued = [create(c, "claude", "write hello there")["runId"] for _ in range(2)]
        wait_for_process(slow)
    first.kill()
    second = ServerProcess(tmp_path, env, port=first.port).start()
    try:
        with second.client() as c:
            status = c.get(f"/api/v1/tasks/{slow}/status").json()
            assert status["status"] == "interrupted"
            assert marked_pids(slow) == []
            for run_id in queued:
                assert wait_status(c, run_id, {"completed", "failed"}, 90)["status"] == "completed"
    finally:
        second.stop()
