"""The whole task lifecycle through a real server process and the real Claude CLI, against
the scripted model server on 127.0.0.1."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from agentyard.runtimes.processes import marked_pids
from agentyard.testing.harness import ServerProcess, read_stream, server_env, wait_status
from agentyard.testing.scripted_model import ScriptedModelServer

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
                },
                {"text": "Wrote hello.txt."},
            ],
        },
        {
            "match": "^run bash",
            "turns": [
                {"tool_calls": [{"name": "Bash", "input": {"command": "echo hi > bash.txt"}}]},
                {"text": "Ran it."},
            ],
        },
        {"match": "^second", "turns": [{"text": "The second answer."}]},
        {"match": "^slow", "turns": [{"delay": 120, "text": "too late"}]},
        {"match": "^overloaded", "turns": [{"status": 500, "error": "model melted"}]},
        {"turns": [{"text": "ok"}]},
    ]
}


@pytest.fixture(scope="module")
def model() -> Iterator[ScriptedModelServer]:
    with ScriptedModelServer(SCRIPT) as server:
        yield server


def claude_env(data: Path, model: ScriptedModelServer, **extra: str) -> dict[str, str]:
    return server_env(
        data,
        {
            "ANTHROPIC_BASE_URL": model.url,
            "ANTHROPIC_API_KEY": "sk-ant-scripted",
            "AGENTYARD_CLAUDE_ENV": '{"CLAUDE_CODE_MAX_RETRIES": "0"}',
            **extra,
        },
    )


@pytest.fixture(scope="module")
def server(
    tmp_path_factory: pytest.TempPathFactory, model: ScriptedModelServer
) -> Iterator[ServerProcess]:
    data = tmp_path_factory.mktemp("yard")
    proc = ServerProcess(data, claude_env(data, model)).start()
    yield proc
    proc.stop()


@pytest.fixture
def client(server: ServerProcess) -> Iterator[httpx.Client]:
    with server.client() as c:
        yield c


def create(client: httpx.Client, prompt: str) -> dict[str, Any]:
    r = client.post("/api/v1/tasks", json={"prompt": prompt})
    assert r.status_code == 200, r.text
    body: dict[str, Any] = r.json()
    return body


def workspace(server: ServerProcess, chat_id: str) -> Path:
    return server.data_dir / "workspaces" / chat_id


def test_a_task_runs_to_completed_with_the_agents_file_in_the_workspace(
    server: ServerProcess, client: httpx.Client
) -> None:
    """Create → queued → running → completed; the file the agent wrote is in the workspace;
    the task carries the chat's messages, usage and cost."""
    body = create(client, "write hello please")
    assert body["status"] == "queued"
    status = wait_status(client, body["runId"], {"completed", "failed"}, timeout=90)
    assert status["status"] == "completed", status
    assert (workspace(server, body["chatId"]) / "hello.txt").read_text() == "hello\n"
    task = client.get(f"/api/v1/tasks/{body['runId']}").json()
    assert task["completedAt"] and task["error"] is None
    user, assistant = task["messages"]
    assert user["parts"] == [{"type": "text", "text": "write hello please"}]
    assert assistant["id"] == body["assistantMessageId"]
    texts = [p["text"] for p in assistant["parts"] if p["type"] == "text"]
    assert texts == ["I'll write the file.", "Wrote hello.txt."]
    tool = next(p for p in assistant["parts"] if p["type"] == "tool-call")
    assert tool["toolName"] == "Write" and tool["state"] == "output-available"
    assert task["usage"]["inputTokens"] > 0 and task["costUsd"] > 0
    kinds = [e["type"] for e in client.get(f"/api/v1/tasks/{body['runId']}/logs").json()["events"]]
    assert kinds[0] == "start" and kinds[-1] == "finish"
    order = ["session-init", "text-start", "tool-call-start", "tool-output-available", "files"]
    assert [kinds.index(k) for k in order] == sorted(kinds.index(k) for k in order)


def test_sse_live_then_resume_loses_and_duplicates_nothing(
    server: ServerProcess, client: httpx.Client
) -> None:
    """A live SSE client cut off mid-run resumes with Last-Event-ID and ends up with exactly
    the stored events, in order; the finished run then replays identically."""
    body = create(client, "run bash now")
    path = f"/api/v1/tasks/{body['runId']}/logs/stream"
    code, first = read_stream(client, path, stop_after=3)
    assert code == 200 and [f.id for f in first] == [1, 2, 3]
    code, rest = read_stream(client, path, headers={"Last-Event-ID": "3"})
    got = [f.data for f in first + rest]
    assert got[-1] == {"type": "finish", "runId": body["runId"], "status": "completed"}
    stored = client.get(f"/api/v1/tasks/{body['runId']}/logs").json()["events"]
    assert [f.id for f in first + rest] == [e.pop("seq") for e in stored]
    assert got == stored
    assert (workspace(server, body["chatId"]) / "bash.txt").read_text() == "hi\n"
    code, replay = read_stream(client, path)
    assert [f.data for f in replay] == got


def test_continue_resumes_the_session_with_the_whole_conversation(
    client: httpx.Client, model: ScriptedModelServer
) -> None:
    """A follow-up is a new run on the same chat; the model's request carries the first
    exchange; cost is per run, not the session's running total."""
    first = create(client, "write hello again")
    wait_status(client, first["runId"], {"completed"}, timeout=90)
    first_cost = client.get(f"/api/v1/tasks/{first['runId']}").json()["costUsd"]
    model.clear_requests()
    r = client.post(f"/api/v1/tasks/{first['runId']}/continue", json={"prompt": "second step"})
    assert r.status_code == 200, r.text
    follow = r.json()
    assert follow["chatId"] == first["chatId"] and follow["previousRunId"] == first["runId"]
    wait_status(client, follow["runId"], {"completed"}, timeout=90)
    request = next(r for r in model.requests if r.get("api") == "anthropic")
    history = str(request["body"]["messages"])
    assert "write hello again" in history and "Wrote hello.txt." in history
    assert "second step" in history
    task = client.get(f"/api/v1/tasks/{follow['runId']}").json()
    assert [m["role"] for m in task["messages"]] == ["user", "assistant"] * 2
    assert task["messages"][3]["parts"] == [{"type": "text", "text": "The second answer."}]
    assert 0 < task["costUsd"] < first_cost + task["costUsd"]
    session = client.get(f"/api/v1/tasks/{first['runId']}/logs").json()["events"][1]
    resumed = client.get(f"/api/v1/tasks/{follow['runId']}/logs").json()["events"][1]
    assert session["type"] == resumed["type"] == "session-init"
    assert session["sessionId"] == resumed["sessionId"]


def test_cancel_during_a_slow_step_leaves_no_cli_process(client: httpx.Client) -> None:
    """Cancel while the model is thinking: the run ends cancelled and no process of it is left."""
    body = create(client, "slow thinking")
    run_id = body["runId"]
    wait_status(client, run_id, {"running"})
    deadline = time.monotonic() + 30
    while not marked_pids(run_id) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert marked_pids(run_id), "the CLI should be running"
    r = client.patch(f"/api/v1/tasks/{run_id}", json={"action": "cancel"})
    assert r.json()["success"] is True and r.json()["status"] == "cancelled"
    assert marked_pids(run_id) == []
    again = client.patch(f"/api/v1/tasks/{run_id}", json={"action": "cancel"}).json()
    assert again["success"] is False and again["status"] == "cancelled"


def test_a_model_failure_fails_the_run_with_a_readable_error(client: httpx.Client) -> None:
    """HTTP 500 from the model: the run fails, and the error says what happened."""
    body = create(client, "overloaded model")
    status = wait_status(client, body["runId"], {"completed", "failed"}, timeout=90)
    assert status["status"] == "failed"
    assert "500" in status["error"] or "melted" in status["error"]
    events = client.get(f"/api/v1/tasks/{body['runId']}/logs").json()["events"]
    assert [e["type"] for e in events][-2:] == ["error", "finish"]


def test_without_credentials_the_run_fails_naming_the_variable(
    tmp_path: Path, model: ScriptedModelServer
) -> None:
    """No ANTHROPIC_API_KEY: the run fails with an error that says which variable to set."""
    env = claude_env(tmp_path, model)
    del env["ANTHROPIC_API_KEY"]
    proc = ServerProcess(tmp_path, env).start()
    try:
        with proc.client() as c:
            body = create(c, "write hello")
            status = wait_status(c, body["runId"], {"completed", "failed"})
            assert status["status"] == "failed" and "ANTHROPIC_API_KEY" in status["error"]
            agents = {a["agent"]: a for a in c.get("/api/v1/agents").json()["agents"]}
            assert agents["claude"]["configured"] is False
    finally:
        proc.stop()


def test_sigkill_mid_run_then_restart_interrupts_it_and_runs_the_queue(
    tmp_path: Path, model: ScriptedModelServer
) -> None:
    """The server killed with SIGKILL during a run: after restart the run is interrupted, its
    CLI is gone, and the runs that were queued complete."""
    env = claude_env(tmp_path, model, AGENTYARD_MAX_CONCURRENT_RUNS="1")
    first = ServerProcess(tmp_path, env).start()
    with first.client() as c:
        slow = create(c, "slow thinking")["runId"]
        wait_status(c, slow, {"running"})
        queued = [create(c, "write hello there")["runId"] for _ in range(2)]
        deadline = time.monotonic() + 30
        while not marked_pids(slow) and time.monotonic() < deadline:
            time.sleep(0.1)
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
