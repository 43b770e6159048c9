"""The real Gemini CLI (``@google/gemini-cli``, pinned, in ACP mode) through a real server
process, inside the sandbox, against the scripted model server's Gemini API; also a
configured ACP agent (the scripted fake agent) and a claude + codex + gemini group."""

from __future__ import annotations

import json
import shutil
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from agentyard.runtimes.acp_gemini import (
    GEMINI_CLI_VERSION,
    GeminiProfile,
    keep_session_records,
)
from agentyard.runtimes.processes import marked_pids
from agentyard.testing import fake_acp_agent
from agentyard.testing.harness import ServerProcess, server_env, wait_status
from agentyard.testing.model_gemini import BAD_KEY
from agentyard.testing.scripted_model import ScriptedModelServer

KEY = "AIza-scripted-gemini-key"
PATCH = "*** Begin Patch\n*** Add File: codex.txt\n+written by codex\n*** End Patch\n"
SCRIPT: dict[str, Any] = {
    "scenarios": [
        {
            "match": "^write hello",
            "turns": [
                {
                    "text": "I'll write the file.",
                    "tool_calls": [
                        {
                            "name": "write_file",
                            "input": {"file_path": "{cwd}/hello.txt", "content": "hello\n"},
                        }
                    ],
                },
                {"text": "Wrote hello.txt."},
            ],
        },
        {"match": "^second", "turns": [{"text": "The second answer."}]},
        {"match": "^slow", "turns": [{"delay": 120, "text": "too late"}]},
        {
            "match": "^compete",
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
                    "gemini": {
                        "tool_calls": [
                            {
                                "name": "write_file",
                                "input": {
                                    "file_path": "{cwd}/gemini.txt",
                                    "content": "by gemini\n",
                                },
                            }
                        ]
                    },
                },
                {"text": "Done."},
            ],
        },
        {"turns": [{"text": "ok"}]},
    ]
}

if shutil.which("node") is None:
    pytest.skip(
        "Node.js is not installed: the gemini agent is unavailable", allow_module_level=True
    )


@pytest.fixture(scope="module")
def model() -> Iterator[ScriptedModelServer]:
    with ScriptedModelServer(SCRIPT, keys={"gemini": KEY}) as server:
        yield server


def yard_env(data: Path, model: ScriptedModelServer, **extra: str) -> dict[str, str]:
    fake = data / "fake-agent"
    fake.mkdir(exist_ok=True)
    script = fake / "script.json"
    script.write_text(json.dumps({"turns": [{"steps": [{"update": {
        "sessionUpdate": "agent_message_chunk", "content": {"type": "text", "text": "fake hi"},
    }}]}]}))  # fmt: skip
    # A copy beside its script: the sandbox sees the virtualenv (with acp), not the source tree.
    program = fake / "fake_acp_agent.py"
    shutil.copyfile(fake_acp_agent.__file__, program)
    agents = {
        "fake": {"argv": [sys.executable, str(program), str(script)]},
        "missing": {"argv": ["no-such-acp-agent", "acp"]},
    }
    return server_env(
        data,
        {
            "GEMINI_API_KEY": KEY,
            "GOOGLE_GEMINI_BASE_URL": model.url,
            "ANTHROPIC_BASE_URL": model.url,
            "ANTHROPIC_API_KEY": "sk-ant-scripted",
            "AGENTYARD_CLAUDE_ENV": '{"CLAUDE_CODE_MAX_RETRIES": "0"}',
            "OPENAI_BASE_URL": model.url + "/v1",
            "OPENAI_API_KEY": "sk-openai-scripted",
            "AGENTYARD_CODEX_MAX_RETRIES": "0",
            "AGENTYARD_MAX_CONCURRENT_RUNS": "3",
            "AGENTYARD_ACP_AGENTS": json.dumps(agents),
            "AGENTYARD_SANDBOX_READONLY_PATHS": json.dumps([str(fake)]),
            **extra,
        },
    )


@pytest.fixture(scope="module")
def server(
    tmp_path_factory: pytest.TempPathFactory, model: ScriptedModelServer
) -> Iterator[ServerProcess]:
    data = tmp_path_factory.mktemp("yard")
    proc = ServerProcess(data, yard_env(data, model)).start()
    yield proc
    proc.stop()


def create(client: httpx.Client, prompt: str, **body: Any) -> dict[str, Any]:
    r = client.post("/api/v1/tasks", json={"prompt": prompt, **body})
    assert r.status_code == 200, r.text
    created: dict[str, Any] = r.json()
    return created


def events(client: httpx.Client, run_id: str) -> list[dict[str, Any]]:
    stored: list[dict[str, Any]] = client.get(f"/api/v1/tasks/{run_id}/logs").json()["events"]
    return stored


def gemini_requests(model: ScriptedModelServer) -> list[dict[str, Any]]:
    return [r for r in model.requests if r["api"] == "gemini" and not r["side"]]


def test_the_pinned_cli_is_installed_by_make_install() -> None:
    """The Makefile pins the version the runtime expects, and make install put it here."""
    makefile = (Path(__file__).parents[1] / "Makefile").read_text()
    assert f"GEMINI_CLI_VERSION := {GEMINI_CLI_VERSION}" in makefile
    assert GeminiProfile(api_key="x").installed_version() == GEMINI_CLI_VERSION


def test_agents_lists_gemini_and_the_configured_acp_agents(client: httpx.Client) -> None:
    agents = {a["agent"]: a for a in client.get("/api/v1/agents").json()["agents"]}
    assert agents["gemini"]["configured"] is True, agents["gemini"]
    assert agents["gemini"]["defaultModel"] == "gemini-2.5-pro"
    assert GEMINI_CLI_VERSION in agents["gemini"]["detail"]
    assert agents["fake"]["configured"] is True
    assert agents["missing"]["configured"] is False
    assert "no-such-acp-agent" in agents["missing"]["detail"]


def test_a_gemini_task_writes_a_file_with_text_and_tool_events(
    server: ServerProcess, client: httpx.Client, model: ScriptedModelServer
) -> None:
    """A model id gemini-* selects gemini; the CLI writes the file (its permission request
    answered by the policy), the run completes with text, tool and files events and the
    tokens the CLI reported; the model got the real key (swapped in by the proxy)."""
    body = create(client, "write hello please", model="gemini-2.5-pro")
    status = wait_status(client, body["runId"], {"completed", "failed"}, timeout=120)
    assert status["status"] == "completed", status
    workspace = server.data_dir / "workspaces" / body["chatId"]
    assert (workspace / "hello.txt").read_text() == "hello\n"
    task = client.get(f"/api/v1/tasks/{body['runId']}").json()
    assert task["agent"] == "gemini"
    assistant = task["messages"][1]
    texts = [p["text"] for p in assistant["parts"] if p["type"] == "text"]
    assert texts == ["I'll write the file.", "Wrote hello.txt."]
    tool = next(p for p in assistant["parts"] if p["type"] == "tool-call")
    assert tool["toolName"] == "edit" and tool["state"] == "output-available"
    kinds = [e["type"] for e in events(client, body["runId"])]
    for kind in ("session-init", "data-permission", "tool-call-start", "files", "finish"):
        assert kind in kinds, kinds
    assert task["usage"]["inputTokens"] > 0 and task["usage"]["outputTokens"] > 0
    request = gemini_requests(model)[-1]
    assert request["headers"]["x-goog-api-key"] == KEY
    sandbox = client.get("/api/v1/agents").json()["sandbox"]["sandbox"]
    if sandbox == "bwrap":
        assert request["cwd"] == str(workspace)


def test_continue_loads_the_session_with_the_whole_conversation(
    client: httpx.Client, model: ScriptedModelServer
) -> None:
    first = create(client, "write hello again", agent="gemini")
    wait_status(client, first["runId"], {"completed"}, timeout=120)
    model.clear_requests()
    r = client.post(f"/api/v1/tasks/{first['runId']}/continue", json={"prompt": "second step"})
    assert r.status_code == 200, r.text
    follow = r.json()
    status = wait_status(client, follow["runId"], {"completed", "failed"}, timeout=120)
    assert status["status"] == "completed", status
    notes = [e for e in events(client, follow["runId"]) if e["type"] == "data-acp"]
    assert not any("continued" in e["data"] for e in notes), notes
    conversation = json.dumps(gemini_requests(model)[0]["body"]["contents"])
    assert "write hello again" in conversation and "Wrote hello.txt." in conversation
    task = client.get(f"/api/v1/tasks/{follow['runId']}").json()
    # The loaded session's replayed history is not this run's output.
    assert task["messages"][3]["parts"] == [{"type": "text", "text": "The second answer."}]
    assert (
        events(client, first["runId"])[1]["sessionId"]
        == events(client, follow["runId"])[1]["sessionId"]
    )
    # Again (within the same minute, as a rule): the whole conversation, once each.
    model.clear_requests()
    r = client.post(f"/api/v1/tasks/{follow['runId']}/continue", json={"prompt": "third step"})
    third = r.json()
    status = wait_status(client, third["runId"], {"completed", "failed"}, timeout=120)
    assert status["status"] == "completed", status
    notes = [e for e in events(client, third["runId"]) if e["type"] == "data-acp"]
    assert not any("continued" in e["data"] for e in notes), notes
    conversation = json.dumps(gemini_requests(model)[0]["body"]["contents"])
    for said in ("write hello again", "Wrote hello.txt.", "second step", "The second answer."):
        assert conversation.count(said) == 1, (said, conversation)
    task = client.get(f"/api/v1/tasks/{third['runId']}").json()
    assert task["messages"][5]["parts"] == [{"type": "text", "text": "ok"}]


def test_a_continued_session_keeps_its_records_out_of_the_cli_naming(tmp_path: Path) -> None:
    """Before session/load the session's records are renamed (so the CLI's fresh record of
    the same minute cannot reset one); other sessions' records, names the CLI did not make
    and anything planted as a link stay as they are."""
    session = "45b54132-d93a-4997-a867-c9d29498046d"
    chats = tmp_path / ".gemini" / "tmp" / "chat-x" / "chats"
    chats.mkdir(parents=True)
    mine = chats / "session-2026-12-01T12-12-45b54132.jsonl"
    mine.write_text('{"sessionId": "x"}\n')
    other = chats / "session-2026-12-01T12-12-cc21e60a.jsonl"
    other.write_text("{}\n")
    outside = tmp_path / "outside.jsonl"
    outside.write_text("host file\n")
    link = chats / "session-2026-12-01T12-13-45b54132.jsonl"
    link.symlink_to(outside)
    elsewhere = tmp_path / "elsewhere"
    (elsewhere / "chats").mkdir(parents=True)
    planted = elsewhere / "chats" / "session-2026-12-01T12-12-45b54132.jsonl"
    planted.write_text("host file\n")
    (tmp_path / ".gemini" / "tmp" / "linked").symlink_to(elsewhere)
    kept = keep_session_records(tmp_path, session)
    assert kept == [chats / "session-2026-12-01T12-12-kept-45b54132.jsonl"]
    assert kept[0].read_text() == '{"sessionId": "x"}\n' and not mine.exists()
    assert other.exists() and link.is_symlink() and planted.exists()
    assert outside.read_text() == "host file\n"
    # A later stub of the same minute is left alone (the kept record is not replaced).
    mine.write_text("stub\n")
    assert keep_session_records(tmp_path, session) == []
    assert kept[0].read_text() == '{"sessionId": "x"}\n' and mine.exists()


def test_cancel_ends_a_gemini_run_at_once(client: httpx.Client) -> None:
    body = create(client, "slow thinking", agent="gemini")
    run_id = body["runId"]
    wait_status(client, run_id, {"running"})
    deadline = time.monotonic() + 60
    while not marked_pids(run_id) and time.monotonic() < deadline:
        time.sleep(0.1)
    time.sleep(3)  # the CLI is up and waiting for the model
    started = time.monotonic()
    r = client.patch(f"/api/v1/tasks/{run_id}", json={"action": "cancel"})
    assert r.json()["success"] is True and r.json()["status"] == "cancelled"
    assert time.monotonic() - started < 15
    assert marked_pids(run_id) == []


def test_a_configured_acp_agent_runs_as_its_own_agent(client: httpx.Client) -> None:
    body = create(client, "hello", agent="fake")
    status = wait_status(client, body["runId"], {"completed", "failed"}, timeout=60)
    assert status["status"] == "completed", status
    task = client.get(f"/api/v1/tasks/{body['runId']}").json()
    assert task["agent"] == "fake"
    assert task["messages"][1]["parts"] == [{"type": "text", "text": "fake hi"}]


def test_a_bad_key_fails_fast_with_a_clear_error(
    tmp_path: Path, model: ScriptedModelServer
) -> None:
    proc = ServerProcess(tmp_path, yard_env(tmp_path, model, GEMINI_API_KEY="AIza-wrong")).start()
    try:
        with proc.client() as c:
            started = time.monotonic()
            body = create(c, "write hello", agent="gemini")
            status = wait_status(c, body["runId"], {"completed", "failed"}, timeout=60)
            assert status["status"] == "failed"
            assert time.monotonic() - started < 45
            assert BAD_KEY in status["error"] and "GEMINI_API_KEY" in status["error"]
            assert "{" not in status["error"]
    finally:
        proc.stop()


def test_claude_codex_gemini_compete_and_compare(client: httpx.Client) -> None:
    r = client.post(
        "/api/v1/tasks",
        json={
            "prompt": "compete for it",
            "selectedAgents": [
                {"agent": "claude", "model": "claude-sonnet-4-5"},
                {"agent": "codex", "model": "gpt-5.5"},
                {"agent": "gemini", "model": "gemini-2.5-pro"},
            ],
        },
    )
    assert r.status_code == 200, r.text
    body = r.json()
    runs = [run["runId"] for run in body["runs"]]
    assert [run["agent"] for run in body["runs"]] == ["claude", "codex", "gemini"]
    for run_id in runs:
        status = wait_status(client, run_id, {"completed", "failed"}, timeout=150)
        assert status["status"] == "completed", status
    assert client.get(f"/api/v1/groups/{body['taskId']}").json()["status"] == "completed"
    compare = client.get(f"/api/v1/groups/{body['taskId']}/compare").json()
    diffs = {run["runId"]: run["diff"] for run in compare["runs"]}
    assert "+by claude" in diffs[runs[0]] and "+written by codex" in diffs[runs[1]]
    assert "+by gemini" in diffs[runs[2]]
    assert {f["path"] for f in compare["files"]} == {"claude.txt", "codex.txt", "gemini.txt"}
