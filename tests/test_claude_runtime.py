"""ClaudeRuntime driving the real Claude Code CLI against the scripted model server."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from agentyard.core import events as ev
from agentyard.core.events import Event
from agentyard.runtimes.base import RUN_MARKER_ENV, RunOutcome, RunSpec
from agentyard.runtimes.claude import ClaudeRuntime
from agentyard.runtimes.processes import marked_pids
from agentyard.testing.scripted_model import ScriptedModelServer

SCRIPT = {
    "scenarios": [
        {"match": "^slow", "turns": [{"delay": 30, "text": "too late"}]},
        {"match": "^fail", "turns": [{"status": 500, "error": "scripted outage"}]},
        {
            "match": "^marker",
            "turns": [
                {"tool_calls": [{"name": "Bash", "input": {"command": "echo $AGENTYARD_RUN_ID"}}]},
            ],
        },
        {
            "turns": [
                {
                    "thinking": "A file first.",
                    "text": "Writing hello.txt.",
                    "tool_calls": [
                        {
                            "name": "Write",
                            "input": {"file_path": "{cwd}/hello.txt", "content": "hello\n"},
                        }
                    ],
                },
                {"tool_calls": [{"name": "Bash", "input": {"command": "echo from-bash"}}]},
                {"text": "All done."},
            ]
        },
    ]
}


@pytest.fixture
def model() -> Iterator[ScriptedModelServer]:
    with ScriptedModelServer(SCRIPT) as server:
        yield server


@pytest.fixture
def runtime(model: ScriptedModelServer) -> ClaudeRuntime:
    return ClaudeRuntime(anthropic_base_url=model.url, anthropic_api_key="dummy")


class Recorder:
    def __init__(self) -> None:
        self.events: list[Event] = []

    async def __call__(self, *events: Event) -> None:
        self.events.extend(events)

    @property
    def types(self) -> list[str]:
        return [e["type"] for e in self.events]

    def of(self, kind: str) -> list[Event]:
        return [e for e in self.events if e["type"] == kind]


def make_spec(tmp_path: Path, prompt: str, run_id: str | None = None, **extra: Any) -> RunSpec:
    # Unique: other test runs on this machine kill processes by their run marker.
    run_id = run_id or f"test-claude-{uuid.uuid4()}"
    workspace = tmp_path / "ws"
    workspace.mkdir(exist_ok=True)
    env = {RUN_MARKER_ENV: run_id, "CLAUDE_CODE_MAX_RETRIES": "0", **extra.pop("env", {})}
    return RunSpec(
        run_id=run_id,
        chat_id="chat_test",
        prompt=prompt,
        model=None,
        workspace=workspace,
        state_dir=tmp_path / "state",
        env=env,
        **extra,
    )


async def test_run_writes_a_file_runs_bash_and_emits_the_vocabulary_in_order(
    runtime: ClaudeRuntime, model: ScriptedModelServer, tmp_path: Path
) -> None:
    """A scripted Write + Bash run succeeds; its events follow the vocabulary order, with files."""
    spec = make_spec(tmp_path, "Create hello.txt")
    emit = Recorder()
    outcome = await runtime.run(spec, emit)
    assert outcome.ok, outcome.error
    assert (spec.workspace / "hello.txt").read_text() == "hello\n"
    assert emit.types == [
        ev.SESSION_INIT,
        *[ev.REASONING_START, ev.REASONING_DELTA, ev.REASONING_END],
        *[ev.TEXT_START, ev.TEXT_DELTA, ev.TEXT_END],
        *[ev.TOOL_CALL_START, ev.TOOL_INPUT_AVAILABLE, ev.TOOL_OUTPUT_AVAILABLE, ev.FILES],
        *[ev.TOOL_CALL_START, ev.TOOL_INPUT_AVAILABLE, ev.TOOL_OUTPUT_AVAILABLE],
        *[ev.TEXT_START, ev.TEXT_DELTA, ev.TEXT_END],
    ]
    assert emit.events[0]["sessionId"] == outcome.session_id
    assert [e["delta"] for e in emit.of(ev.TEXT_DELTA)] == ["Writing hello.txt.", "All done."]
    assert emit.of(ev.REASONING_DELTA)[0]["delta"] == "A file first."
    assert len({e["id"] for e in emit.of(ev.TEXT_START)}) == 2
    write, bash = emit.of(ev.TOOL_OUTPUT_AVAILABLE)
    assert write["toolName"] == "Write" and write["output"]["isError"] is False
    assert bash["toolName"] == "Bash"
    assert bash["output"]["stdout"] == "from-bash"
    assert emit.of(ev.FILES) == [{"type": "files", "files": [{"path": "hello.txt", "kind": "add"}]}]
    assert emit.of(ev.TOOL_INPUT_AVAILABLE)[0]["input"]["file_path"] == str(
        spec.workspace / "hello.txt"
    )
    assert outcome.usage is not None and outcome.usage["outputTokens"] > 0
    assert outcome.usage["numTurns"] == 3
    assert outcome.cost_usd is not None and outcome.cost_usd > 0
    assert outcome.totals == {"costUsd": outcome.cost_usd, "sessionId": outcome.session_id}
    assert (spec.state_dir / "claude").is_dir()
    # The CLI's title/probe side traffic is off: only the three agent steps reached the model.
    assert [r["step"] for r in model.requests] == [0, 1, 2]


async def test_resume_sends_the_first_exchange_and_reports_per_run_cost(
    runtime: ClaudeRuntime, model: ScriptedModelServer, tmp_path: Path
) -> None:
    """A resumed session resends the earlier exchange; cost is this run's, totals cumulative."""
    first = await runtime.run(make_spec(tmp_path, "Create hello.txt"), Recorder())
    assert first.ok and first.session_id and first.totals
    model.clear_requests()
    model.set_script({"scenarios": [{"turns": [{"text": "Still here."}]}]})
    emit = Recorder()
    spec = make_spec(
        tmp_path,
        "Anything else?",
        resume_session=first.session_id,
        prior_totals=first.totals,
    )
    second = await runtime.run(spec, emit)
    assert second.ok, second.error
    assert second.session_id == first.session_id
    assert [e["delta"] for e in emit.of(ev.TEXT_DELTA)] == ["Still here."]
    (request,) = model.requests
    assert (request["prompt"], request["step"]) == ("Anything else?", 0)
    sent = json.dumps(request["body"]["messages"])
    assert "Create hello.txt" in sent and "All done." in sent and "from-bash" in sent
    assert first.cost_usd is not None and second.cost_usd is not None and second.totals
    assert second.totals["costUsd"] == pytest.approx(first.cost_usd + second.cost_usd)
    assert second.cost_usd < second.totals["costUsd"]


async def test_http_500_ends_the_run_failed_with_a_readable_error(
    runtime: ClaudeRuntime, tmp_path: Path
) -> None:
    """A model HTTP 500 (no retries) gives ok=False and an error naming the status and message."""
    started = time.monotonic()
    outcome = await runtime.run(make_spec(tmp_path, "fail now"), Recorder())
    assert not outcome.ok
    assert outcome.error is not None
    assert "500" in outcome.error and "scripted outage" in outcome.error
    assert outcome.session_id
    assert time.monotonic() - started < 10


async def test_max_turns_error_result_is_reported(
    model: ScriptedModelServer, tmp_path: Path
) -> None:
    """An error result (max turns reached) ends ok=False with the CLI's reason."""
    runtime = ClaudeRuntime(anthropic_base_url=model.url, anthropic_api_key="dummy", max_turns=1)
    outcome = await runtime.run(make_spec(tmp_path, "Create hello.txt"), Recorder())
    assert not outcome.ok
    assert outcome.error is not None and "maximum number of turns" in outcome.error
    assert "max_turns" in outcome.error


async def test_missing_api_key_does_not_run(model: ScriptedModelServer, tmp_path: Path) -> None:
    """Without a key nothing is started and both availability and the error name the variable."""
    runtime = ClaudeRuntime(anthropic_base_url=model.url, anthropic_api_key=None)
    availability = runtime.availability()
    assert not availability.configured
    assert "ANTHROPIC_API_KEY" in availability.detail
    emit = Recorder()
    outcome = await runtime.run(make_spec(tmp_path, "Create hello.txt"), emit)
    assert outcome == RunOutcome(ok=False, error=outcome.error)
    assert outcome.error is not None and "ANTHROPIC_API_KEY" in outcome.error
    assert emit.events == [] and model.requests == []
    configured = ClaudeRuntime(anthropic_api_key="k").availability()
    assert configured.configured and configured.default_model == "claude-sonnet-4-5"


async def test_cancel_during_a_slow_model_answer_stops_the_cli(
    runtime: ClaudeRuntime, model: ScriptedModelServer, tmp_path: Path
) -> None:
    """Cancelling run() while the model is slow returns within seconds, no marked process left."""
    spec = make_spec(tmp_path, "slow answer")
    emit = Recorder()
    task = asyncio.create_task(runtime.run(spec, emit))
    for _ in range(600):  # the CLI starts in about 0.5 s; allow for a loaded machine
        if model.requests:
            break
        await asyncio.sleep(0.05)
    assert marked_pids(spec.run_id)
    started = time.monotonic()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert time.monotonic() - started < 5
    assert marked_pids(spec.run_id) == []
    assert emit.types == [ev.SESSION_INIT]
    # The interrupted session was saved: a continue resumes it with the first prompt.
    model.clear_requests()
    session_id = emit.events[0]["sessionId"]
    again = make_spec(tmp_path, "Carry on", resume_session=session_id)
    outcome = await runtime.run(again, Recorder())
    assert outcome.ok and outcome.session_id == session_id
    assert "slow answer" in json.dumps(model.requests[0]["body"]["messages"])


async def test_timeout_ends_the_run_and_the_cli(runtime: ClaudeRuntime, tmp_path: Path) -> None:
    """A run longer than timeout_seconds ends ok=False 'timed out after N s', its CLI gone."""
    spec = make_spec(tmp_path, "slow answer", timeout_seconds=1.5)
    started = time.monotonic()
    outcome = await runtime.run(spec, Recorder())
    assert (outcome.ok, outcome.error) == (False, "timed out after 1.5 s")
    assert time.monotonic() - started < 5
    assert outcome.session_id
    assert marked_pids(spec.run_id) == []


async def test_server_environment_and_repo_settings_do_not_steer_the_cli(
    runtime: ClaudeRuntime,
    model: ScriptedModelServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Inherited ANTHROPIC_*/secrets are neutralised, .claude/ hooks are not loaded, and the
    run marker reaches the agent's processes."""
    monkeypatch.setenv("ANTHROPIC_AUTH_TOKEN", "real-token")
    monkeypatch.setenv("ANTHROPIC_MODEL", "claude-opus-real")
    monkeypatch.setenv("ANTHROPIC_BASE_URL", "http://192.0.2.1:9")
    monkeypatch.setenv("AGENTYARD_SECRET_KEY", "server-secret")
    spec = make_spec(tmp_path, "marker please")
    hook = {"type": "command", "command": f"touch {tmp_path}/hooked"}
    settings = {"hooks": {"SessionStart": [{"hooks": [hook]}], "PreToolUse": [{"hooks": [hook]}]}}
    (spec.workspace / ".claude").mkdir()
    (spec.workspace / ".claude" / "settings.json").write_text(json.dumps(settings))
    env = runtime.environment(spec, tmp_path / "cfg")
    assert env["ANTHROPIC_AUTH_TOKEN"] == env["ANTHROPIC_MODEL"] == ""
    assert env["AGENTYARD_SECRET_KEY"] == ""
    assert env["ANTHROPIC_BASE_URL"] == model.url
    emit = Recorder()
    outcome = await runtime.run(spec, emit)
    assert outcome.ok, outcome.error
    (bash,) = emit.of(ev.TOOL_OUTPUT_AVAILABLE)
    assert bash["output"]["stdout"] == spec.run_id
    assert not (tmp_path / "hooked").exists()
    request = model.requests[0]
    assert request["model"] == "claude-sonnet-4-5"
    assert "authorization" not in request["headers"]
    assert request["headers"]["x-api-key"] == "dummy"


async def test_cli_missing_or_failing_gives_a_readable_error(tmp_path: Path) -> None:
    """A missing CLI makes the runtime unavailable; a CLI that dies reports its stderr."""
    missing = ClaudeRuntime(anthropic_api_key="k", cli_path=str(tmp_path / "no-such-claude"))
    assert not missing.availability().configured
    assert "not found" in missing.availability().detail
    outcome = await missing.run(make_spec(tmp_path, "hi"), Recorder())
    assert not outcome.ok
    assert outcome.error is not None and "not found" in outcome.error
    broken_cli = tmp_path / "claude"
    broken_cli.write_text("#!/bin/sh\necho 'cannot start: broken install' >&2\nexit 3\n")
    broken_cli.chmod(0o755)
    broken = ClaudeRuntime(anthropic_api_key="k", cli_path=str(broken_cli))
    started = time.monotonic()
    outcome = await broken.run(make_spec(tmp_path, "hi"), Recorder())
    assert not outcome.ok
    assert outcome.error is not None and "broken install" in outcome.error
    assert time.monotonic() - started < 10
