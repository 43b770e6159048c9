"""The Codex runtime, driving the real codex app-server against the scripted model server."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from agentyard.core import events as ev
from agentyard.core.events import Event
from agentyard.runtimes.base import RUN_MARKER_ENV, RunOutcome, RunSpec
from agentyard.runtimes.codex import CodexRuntime
from agentyard.runtimes.pricing import DEFAULT_PRICE, ModelPrice, cost_usd, price_for
from agentyard.runtimes.processes import marked_pids
from agentyard.testing.scripted_model import ScriptedModelServer

PATCH = "*** Begin Patch\n*** Add File: hello.txt\n+hello from stub\n*** End Patch\n"
KEY = "test-provider-key"

ServerFactory = Callable[[Mapping[str, Any]], ScriptedModelServer]


@pytest.fixture(autouse=True)
def _no_provider_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No test may reach a real provider through the server's own OPENAI_* variables."""
    import os

    for name in list(os.environ):
        if name.startswith(("OPENAI_", "CODEX_")):
            monkeypatch.delenv(name)


@pytest.fixture
def scripted() -> Iterator[ServerFactory]:
    servers: list[ScriptedModelServer] = []

    def start(script: Mapping[str, Any]) -> ScriptedModelServer:
        server = ScriptedModelServer(script).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


class Recorder:
    def __init__(self) -> None:
        self.events: list[Event] = []

    async def __call__(self, *events: Event) -> None:
        self.events.extend(events)

    def types(self) -> list[str]:
        return [str(e["type"]) for e in self.events]

    def of(self, kind: str) -> list[Event]:
        return [e for e in self.events if e["type"] == kind]


def runtime(server: ScriptedModelServer, **kwargs: Any) -> CodexRuntime:
    return CodexRuntime(base_url=server.url + "/v1", api_key=KEY, max_retries=0, **kwargs)


def spec(tmp_path: Path, prompt: str = "Create hello.txt", **kwargs: Any) -> RunSpec:
    workspace = tmp_path / "workspace"
    workspace.mkdir(exist_ok=True)
    run_id = kwargs.pop("run_id", f"run-{uuid.uuid4().hex[:12]}")
    return RunSpec(
        run_id=run_id,
        chat_id="chat-1",
        prompt=prompt,
        model=kwargs.pop("model", None),
        workspace=workspace,
        state_dir=tmp_path / "state",
        env={RUN_MARKER_ENV: run_id},
        **kwargs,
    )


async def wait_for(condition: Callable[[], bool], seconds: float = 20.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.05)


def input_texts(request: Mapping[str, Any]) -> list[str]:
    """The texts of a Responses request's input items, by role, as ``role: text``."""
    texts = []
    for item in request["body"].get("input") or []:
        for part in item.get("content") or []:
            if isinstance(part, dict) and isinstance(part.get("text"), str):
                texts.append(f"{item.get('role')}: {part['text']}")
    return texts


async def test_patch_and_command_map_to_events(scripted: ServerFactory, tmp_path: Path) -> None:
    """apply_patch creates the file and exec_command runs in the workspace; the events come in
    order (session-init, the patch as a tool call with its output and a files event, the
    command likewise, then the text), and the run reports its thread, tokens and cost."""
    server = scripted(
        {
            "scenarios": [
                {
                    "turns": [
                        {"tool_calls": [{"name": "apply_patch", "input": PATCH}]},
                        {
                            "tool_calls": [
                                {
                                    "name": "exec_command",
                                    "input": {"cmd": "echo world >> hello.txt && cat hello.txt"},
                                }
                            ]
                        },
                        {"text": "all done"},
                    ]
                }
            ]
        }
    )
    run = spec(tmp_path)
    emit = Recorder()

    outcome = await runtime(server).run(run, emit)

    assert outcome.ok, outcome.error
    assert (run.workspace / "hello.txt").read_text() == "hello from stub\nworld\n"
    assert emit.types() == [
        ev.SESSION_INIT,
        ev.TOOL_CALL_START,
        ev.TOOL_INPUT_AVAILABLE,
        ev.TOOL_OUTPUT_AVAILABLE,
        ev.FILES,
        ev.TOOL_CALL_START,
        ev.TOOL_INPUT_AVAILABLE,
        ev.TOOL_OUTPUT_AVAILABLE,
        ev.TEXT_START,
        ev.TEXT_DELTA,
        ev.TEXT_END,
    ]
    init = emit.events[0]
    assert init["sessionId"] == outcome.session_id and init["model"] == "gpt-5.5"
    patch_call, command_call = emit.of(ev.TOOL_INPUT_AVAILABLE)
    assert patch_call["toolName"] == "apply_patch"
    assert patch_call["input"]["changes"][0]["path"] == "hello.txt"
    assert emit.of(ev.FILES)[0]["files"] == [{"path": "hello.txt", "kind": "add"}]
    assert command_call["toolName"] == "bash"
    assert command_call["input"]["command"] == "echo world >> hello.txt && cat hello.txt"
    command_output = emit.of(ev.TOOL_OUTPUT_AVAILABLE)[1]
    assert command_output["toolCallId"] == command_call["toolCallId"]
    assert command_output["output"]["stdout"] == "hello from stub\nworld\n"
    assert command_output["output"]["exitCode"] == 0
    assert ev.message_parts(emit.events)[-1] == {"type": "text", "text": "all done"}

    assert [r["status"] for r in server.requests] == [200, 200, 200]
    assert {r["model"] for r in server.requests} == {"gpt-5.5"}
    usage = outcome.usage
    assert usage is not None and usage["inputTokens"] > 0 and usage["outputTokens"] > 0
    assert set(usage) == {
        "inputTokens",
        "cachedInputTokens",
        "outputTokens",
        "reasoningOutputTokens",
        "totalTokens",
        "durationMs",
        "model",
    }
    assert usage["totalTokens"] == usage["inputTokens"] + usage["outputTokens"]
    assert usage["model"] == "gpt-5.5" and usage["durationMs"] > 0
    assert outcome.cost_usd is not None and outcome.cost_usd > 0
    assert outcome.cost_usd == cost_usd(usage, price_for("gpt-5.5"))
    assert outcome.totals is not None and outcome.totals["sessionId"] == outcome.session_id
    assert outcome.totals["inputTokens"] == usage["inputTokens"]


async def test_resume_sends_history_and_usage_is_per_run(
    scripted: ServerFactory, tmp_path: Path
) -> None:
    """A run with ``resume_session`` continues the chat's codex thread: the model receives the
    first exchange again, the thread id stays, and usage counts only the new run's tokens
    while ``totals`` keep the thread's running count."""
    server = scripted(
        {
            "scenarios": [
                {
                    "match": "first task",
                    "turns": [{"thinking": "thinking it over", "text": "first answer"}],
                },
                {"match": "second task", "turns": [{"text": "second answer"}]},
            ]
        }
    )
    codex = runtime(server)
    first_events = Recorder()
    first = await codex.run(spec(tmp_path, "the first task"), first_events)
    assert first.ok, first.error
    reasoning = first_events.of(ev.REASONING_DELTA)
    assert [e["delta"] for e in reasoning] == ["thinking it over"]
    assert first.totals is not None and first.usage is not None
    requests_before = len(server.requests)

    emit = Recorder()
    second = await codex.run(
        spec(
            tmp_path,
            "the second task",
            resume_session=first.session_id,
            prior_totals=first.totals,
        ),
        emit,
    )

    assert second.ok, second.error
    assert second.session_id == first.session_id
    assert emit.events[0] == ev.session_init(str(first.session_id), "gpt-5.5")
    resumed = server.requests[requests_before]
    texts = input_texts(resumed)
    assert "user: the first task" in texts
    assert "assistant: first answer" in texts
    assert texts[-1] == "user: the second task"
    assert ev.message_parts(emit.events) == [{"type": "text", "text": "second answer"}]

    assert second.usage is not None and second.totals is not None
    for key in ("inputTokens", "outputTokens", "totalTokens"):
        assert second.usage[key] > 0
        assert second.totals[key] == first.totals[key] + second.usage[key]
    assert second.usage["inputTokens"] < second.totals["inputTokens"]


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        (500, "server error (HTTP 5xx)"),
        (400, "the prompt is malformed (invalid_request_error)"),
    ],
)
async def test_http_error_fails_the_run_readably(
    scripted: ServerFactory, tmp_path: Path, status: int, expected: str
) -> None:
    """An HTTP error from the model fails the run with a readable error: the provider's own
    message where codex keeps it (4xx), what happened where codex drops it (5xx)."""
    server = scripted(
        {"scenarios": [{"turns": [{"status": status, "error": "the prompt is malformed"}]}]}
    )
    run = spec(tmp_path)

    outcome = await runtime(server).run(run, Recorder())

    assert not outcome.ok
    assert outcome.error is not None and expected in outcome.error
    assert "{" not in outcome.error
    assert outcome.session_id is not None
    assert outcome.cost_usd == 0.0
    assert marked_pids(run.run_id) == []


async def test_unreachable_provider_fails_fast(tmp_path: Path) -> None:
    """A provider nobody listens on fails the run at once, naming its URL, instead of codex
    reconnecting for ever."""
    codex = CodexRuntime(base_url="http://127.0.0.1:9/v1", api_key=KEY, max_retries=0)
    started = time.monotonic()

    outcome = await codex.run(spec(tmp_path, timeout_seconds=60), Recorder())

    assert not outcome.ok
    assert outcome.error is not None
    assert "cannot reach the model provider at http://127.0.0.1:9/v1" in outcome.error
    assert time.monotonic() - started < 10.0


async def test_missing_key_starts_nothing(tmp_path: Path) -> None:
    """Without an API key the runtime is unavailable and a run fails at once, naming
    OPENAI_API_KEY, without emitting events or creating codex state."""
    codex = CodexRuntime(base_url="http://127.0.0.1:9/v1", api_key=None)
    availability = codex.availability()
    assert not availability.configured and "OPENAI_API_KEY" in availability.detail
    run = spec(tmp_path)
    emit = Recorder()

    outcome = await codex.run(run, emit)

    assert outcome == RunOutcome(ok=False, error="Codex is not configured: set OPENAI_API_KEY")
    assert emit.events == []
    assert not (run.state_dir / "codex").exists()
    assert marked_pids(run.run_id) == []
    configured = CodexRuntime(api_key=KEY).availability()
    assert configured.configured and configured.default_model == "gpt-5.5"


async def test_missing_binary_is_reported(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without the bundled codex binary the runtime is unavailable and a run fails saying so."""
    import codex_cli_bin

    def missing() -> Path:
        raise FileNotFoundError("no codex here")

    monkeypatch.setattr(codex_cli_bin, "bundled_codex_path", missing)
    codex = CodexRuntime(base_url="http://127.0.0.1:9/v1", api_key=KEY)
    assert not codex.availability().configured
    assert "codex binary was not found" in codex.availability().detail

    outcome = await codex.run(spec(tmp_path), Recorder())

    assert not outcome.ok
    assert outcome.error == "the codex binary was not found: no codex here"


async def test_cancel_during_model_delay_stops_codex(
    scripted: ServerFactory, tmp_path: Path
) -> None:
    """Cancelling a run while the model is slow to answer raises CancelledError within a few
    seconds and leaves no process carrying the run's marker."""
    server = scripted({"scenarios": [{"turns": [{"delay": 60, "text": "too late"}]}]})
    run = spec(tmp_path)
    emit = Recorder()
    task = asyncio.create_task(runtime(server).run(run, emit))
    await wait_for(lambda: len(server.requests) == 1)
    assert marked_pids(run.run_id), "the app-server should carry the run marker"

    started = time.monotonic()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task

    assert time.monotonic() - started < 5.0
    assert marked_pids(run.run_id) == []
    assert emit.types() == [ev.SESSION_INIT]


async def test_cancel_during_shell_command_kills_it(
    scripted: ServerFactory, tmp_path: Path
) -> None:
    """Cancelling a run while the agent's shell command runs kills that command too."""
    server = scripted(
        {
            "scenarios": [
                {
                    "turns": [
                        {
                            "tool_calls": [
                                {
                                    "name": "exec_command",
                                    "input": {"cmd": "sleep 120", "yield_time_ms": 60000},
                                }
                            ]
                        }
                    ]
                }
            ]
        }
    )
    run = spec(tmp_path)
    emit = Recorder()
    task = asyncio.create_task(runtime(server).run(run, emit))
    await wait_for(lambda: bool(emit.of(ev.TOOL_CALL_START)))
    await asyncio.sleep(0.3)  # let the command start

    started = time.monotonic()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task

    assert time.monotonic() - started < 5.0
    assert marked_pids(run.run_id) == []


async def test_timeout_fails_the_run(scripted: ServerFactory, tmp_path: Path) -> None:
    """A run that outlasts ``timeout_seconds`` ends not ok, "timed out after N s", with codex
    stopped."""
    server = scripted({"scenarios": [{"turns": [{"delay": 60, "text": "too late"}]}]})
    run = spec(tmp_path, timeout_seconds=1.5)
    started = time.monotonic()

    outcome = await runtime(server).run(run, Recorder())

    assert not outcome.ok and outcome.error == "timed out after 1.5 s"
    assert outcome.session_id is not None
    assert time.monotonic() - started < 6.0
    assert marked_pids(run.run_id) == []


async def test_server_environment_and_key_stay_out(
    scripted: ServerFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The server's OPENAI_* variables neither redirect codex nor reach the agent's shell, the
    provider key is in no file, and the agent's commands carry the run marker."""
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:9/v1")
    monkeypatch.setenv("OPENAI_API_KEY", "server-owned-key")
    server = scripted(
        {
            "scenarios": [
                {"turns": [{"tool_calls": [{"name": "exec_command", "input": {"cmd": "env"}}]}]}
            ]
        }
    )
    run = spec(tmp_path)
    emit = Recorder()

    outcome = await runtime(server).run(run, emit)

    assert outcome.ok, outcome.error
    assert len(server.requests) == 2
    shell_env = emit.of(ev.TOOL_OUTPUT_AVAILABLE)[0]["output"]["stdout"]
    assert f"{RUN_MARKER_ENV}={run.run_id}" in shell_env
    assert "server-owned-key" not in shell_env and "127.0.0.1:9" not in shell_env
    assert KEY not in shell_env
    config = (run.state_dir / "codex" / "config.toml").read_text()
    assert server.url + "/v1" in config and KEY not in config


async def test_unknown_thread_fails_readably(scripted: ServerFactory, tmp_path: Path) -> None:
    """Resuming a thread codex does not know fails the run with an error naming the thread."""
    server = scripted({"scenarios": [{"turns": [{"text": "unused"}]}]})
    missing = "01a00000-0000-7000-8000-000000000000"

    outcome = await runtime(server).run(spec(tmp_path, resume_session=missing), Recorder())

    assert not outcome.ok
    assert outcome.error is not None and f"cannot resume codex thread {missing}" in outcome.error
    assert server.requests == []


def test_pricing_defaults_and_overrides() -> None:
    """Tokens are priced per million with cached input at its own rate; configured prices win
    over the defaults, dated slugs take their family's price, unknown models the default."""
    price = ModelPrice(input_per_mtok=2.0, cached_input_per_mtok=0.5, output_per_mtok=8.0)
    usage = {"inputTokens": 1_000_000, "cachedInputTokens": 400_000, "outputTokens": 500_000}
    assert cost_usd(usage, price) == pytest.approx(0.6 * 2.0 + 0.4 * 0.5 + 0.5 * 8.0)
    assert cost_usd({}, price) == 0.0
    assert price_for("gpt-5.5", {"gpt-5.5": price}) == price
    assert price_for("openai/gpt-5-mini-2025-08-07") == price_for("gpt-5-mini")
    assert price_for("no-such-model") == DEFAULT_PRICE
    assert price_for(None) == DEFAULT_PRICE
