"""The ACP runtime against a scripted fake ACP agent (the SDK's agent side): the event
mapping, permissions by option kind, no fs/terminal capabilities, cancel, the idle
watchdog, large lines, out-of-order and unknown updates, crashes, resume and load."""

from __future__ import annotations

import asyncio
import json
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from agentyard.core import events as ev
from agentyard.runtimes.acp import AcpAgentSpec, AcpRuntime, CommandProfile, load_agents
from agentyard.runtimes.acp_session import Policy
from agentyard.runtimes.base import RUN_MARKER_ENV, RunOutcome, RunSpec
from agentyard.runtimes.processes import marked_pids

TEXT = {"sessionUpdate": "agent_message_chunk", "content": {"type": "text", "text": "Hello"}}


def chunk(kind: str, text: str, message_id: str | None = None) -> dict[str, Any]:
    update: dict[str, Any] = {"sessionUpdate": kind, "content": {"type": "text", "text": text}}
    if message_id:
        update["messageId"] = message_id
    return update


class Harness:
    def __init__(self, tmp_path: Path) -> None:
        self.tmp = tmp_path
        self.workspace = tmp_path / "ws"
        self.workspace.mkdir()
        self.log = tmp_path / "agent.jsonl"
        self.events: list[dict[str, Any]] = []
        self.run_id = f"run_acp_{time.monotonic_ns()}"

    def runtime(
        self, script: dict[str, Any], *, idle: float = 30.0, policy: Policy = "workspace"
    ) -> AcpRuntime:
        path = self.tmp / "script.json"
        path.write_text(json.dumps({"log": str(self.log), **script}))
        spec = AcpAgentSpec(
            argv=[sys.executable, "-m", "agentyard.testing.fake_acp_agent", str(path)],
            auth_method="fake-key",
        )
        profile = CommandProfile("fake", spec)
        return AcpRuntime("fake", profile, idle_seconds=idle, permission=policy)

    def spec(
        self, prompt: str = "go", resume: str | None = None, permission: Policy | None = None
    ) -> RunSpec:
        return RunSpec(
            run_id=self.run_id,
            chat_id="chat_x",
            prompt=prompt,
            model=None,
            workspace=self.workspace,
            state_dir=self.tmp / "state",
            resume_session=resume,
            env={RUN_MARKER_ENV: self.run_id},
            timeout_seconds=60,
            acp_permission=permission,
        )

    async def emit(self, *events: dict[str, Any]) -> None:
        self.events.extend(events)

    async def run(self, runtime: AcpRuntime, **kw: Any) -> RunOutcome:
        return await runtime.run(self.spec(**kw), self.emit)

    def kinds(self) -> list[str]:
        return [e["type"] for e in self.events]

    def logged(self, kind: str) -> list[dict[str, Any]]:
        lines = self.log.read_text().splitlines() if self.log.exists() else []
        return [e for e in map(json.loads, lines) if e["kind"] == kind]


@pytest.fixture
def h(tmp_path: Path) -> Harness:
    return Harness(tmp_path)


async def test_every_update_kind_maps_onto_the_event_vocabulary(h: Harness) -> None:
    """Text and thought chunks grouped by kind and messageId, a tool call with its input,
    diff and output, a plan, usage, and unknown kinds kept as data-acp; no fs/terminal
    capability is advertised; usage is empty (beyond the duration) when none is reported."""
    diff = {"type": "diff", "path": str(h.workspace / "a.txt"), "oldText": None, "newText": "a"}
    steps = [
        {"update": chunk("agent_thought_chunk", "Let me think")},
        {"update": chunk("agent_message_chunk", "Hel", "m1")},
        {"update": chunk("agent_message_chunk", "lo", "m1")},
        {"update": chunk("agent_message_chunk", "Second", "m2")},
        {"update": {"sessionUpdate": "user_message_chunk", "content": {"type": "text"}}},
        {
            "update": {
                "sessionUpdate": "tool_call",
                "toolCallId": "t1",
                "title": "Write a.txt",
                "kind": "edit",
                "status": "pending",
                "rawInput": {"path": "a.txt"},
                "brandNewField": 1,
            }
        },
        {
            "update": {
                "sessionUpdate": "tool_call_update",
                "toolCallId": "t1",
                "status": "completed",
                "content": [diff, {"type": "content", "content": {"type": "text", "text": "ok"}}],
            }
        },
        {"update": {"sessionUpdate": "plan", "entries": [{"content": "step", "status": "done"}]}},
        {"update": {"sessionUpdate": "usage_update", "used": 5, "size": 100}},
        {"update": {"sessionUpdate": "mystery_kind", "x": [1, 2]}},
        {"update": chunk("agent_message_chunk", "Bye")},
    ]
    outcome = await h.run(h.runtime({"turns": [{"steps": steps}]}))
    assert outcome.ok, outcome.error
    assert h.kinds() == [
        "session-init",
        "reasoning-start", "reasoning-delta", "reasoning-end",
        "text-start", "text-delta", "text-delta", "text-end",
        "text-start", "text-delta", "text-end",
        "tool-call-start", "tool-input-available", "tool-output-available", "files",
        "data-plan", "data-usage", "data-acp",
        "text-start", "text-delta", "text-end",
    ]  # fmt: skip
    parts = ev.message_parts(h.events)
    assert [p.get("text") for p in parts if p["type"] == "text"] == ["Hello", "Second", "Bye"]
    tool = next(p for p in parts if p["type"] == "tool-call")
    assert tool["toolName"] == "edit" and tool["input"] == {"path": "a.txt"}
    assert tool["output"]["diffs"][0]["path"] == "a.txt" and tool["output"]["content"] == "ok"
    assert next(e for e in h.events if e["type"] == "files")["files"] == [
        {"path": "a.txt", "kind": "add"}
    ]
    assert next(e for e in h.events if e["type"] == "data-acp")["data"]["x"] == [1, 2]
    assert outcome.session_id and outcome.session_id.startswith("fake-")
    assert outcome.usage is not None and set(outcome.usage) == {"durationMs"}
    assert outcome.cost_usd is None
    init = h.logged("initialize")[0]
    assert init["protocolVersion"] == 1
    caps = init["clientCapabilities"] or {}
    assert not caps.get("terminal") and not any((caps.get("fs") or {}).values())


async def test_a_one_megabyte_line_arrives_whole(h: Harness) -> None:
    outcome = await h.run(h.runtime({"turns": [{"steps": [{"big": 1_048_576}]}]}))
    assert outcome.ok, outcome.error
    deltas = [e["delta"] for e in h.events if e["type"] == "text-delta"]
    assert len("".join(deltas)) == 1_048_576


async def test_out_of_order_and_foreign_updates(h: Harness) -> None:
    """An update before session/new's answer is kept; a tool update before its tool_call
    starts the call; another session's updates are ignored."""
    steps = [
        {"update": chunk("agent_message_chunk", "forged"), "session": "someone-else"},
        {"update": {"sessionUpdate": "tool_call_update", "toolCallId": "t9", "status": "failed"}},
        {"update": {"sessionUpdate": "tool_call", "toolCallId": "t9", "title": "late start"}},
    ]
    script = {"early": chunk("agent_message_chunk", "early bird"), "turns": [{"steps": steps}]}
    outcome = await h.run(h.runtime(script))
    assert outcome.ok, outcome.error
    texts = [e["delta"] for e in h.events if e["type"] == "text-delta"]
    assert texts == ["early bird"]
    output = next(e for e in h.events if e["type"] == "tool-output-available")
    assert output["toolCallId"] == "t9" and output["output"]["isError"] is True
    assert h.kinds().count("tool-call-start") == 1


@pytest.mark.parametrize(
    ("policy", "path", "wanted"),
    [
        ("workspace", "inside.txt", "allow"),
        ("workspace", "/etc/passwd", "reject"),
        ("deny", "inside.txt", "reject"),
        ("allow", "/etc/passwd", "allow"),
    ],
)
async def test_permission_is_chosen_by_option_kind(
    h: Harness, policy: Policy, path: str, wanted: str
) -> None:
    """The policy's answer is the option of the right kind wherever it is in the list; the
    decision is an event."""
    options = [
        {"optionId": "no", "name": "No", "kind": "reject_once"},
        {"optionId": "always", "name": "Always", "kind": "allow_always"},
        {"optionId": "yes", "name": "Yes", "kind": "allow_once"},
    ]
    call = {"toolCallId": "p1", "title": "Edit", "kind": "edit", "locations": [{"path": path}]}
    steps = [{"permission": {"toolCall": call, "options": options}}]
    outcome = await h.run(h.runtime({"turns": [{"steps": steps}]}, policy=policy))
    assert outcome.ok, outcome.error
    expected = {"allow": "yes", "reject": "no"}[wanted]
    assert h.logged("permission")[0]["outcome"] == {"outcome": "selected", "optionId": expected}
    record = next(e for e in h.events if e["type"] == "data-permission")["data"]
    assert record["decision"] == wanted and record["optionId"] == expected


@pytest.mark.parametrize(
    ("server", "task", "applied", "wanted"),
    [
        ("allow", "deny", "deny", "no"),
        ("workspace", "read-only", "read-only", "no"),
        ("deny", "workspace", "deny", "no"),  # a task never widens the server's policy
        ("read-only", "allow", "read-only", "no"),
        ("allow", "workspace", "workspace", "yes"),
    ],
)
async def test_the_task_policy_narrows_the_runtime_policy_never_widens_it(
    h: Harness, server: Policy, task: Policy, applied: Policy, wanted: str
) -> None:
    """A run's own ``acp_permission`` answers when it is stricter than the server's (or the
    agent's) policy; a looser one is held to the server's."""
    options = [
        {"optionId": "no", "name": "No", "kind": "reject_once"},
        {"optionId": "yes", "name": "Yes", "kind": "allow_once"},
    ]
    call = {"toolCallId": "p1", "title": "Edit", "kind": "edit", "locations": [{"path": "a"}]}
    steps = [{"permission": {"toolCall": call, "options": options}}]
    runtime = h.runtime({"turns": [{"steps": steps}]}, policy=server)
    outcome = await h.run(runtime, permission=task)
    assert outcome.ok, outcome.error
    assert h.logged("permission")[0]["outcome"] == {"outcome": "selected", "optionId": wanted}
    record = next(e for e in h.events if e["type"] == "data-permission")["data"]
    assert record["policy"] == applied and record["optionId"] == wanted


async def test_no_option_of_the_wanted_kind_answers_cancelled(h: Harness) -> None:
    options = [{"optionId": "ok", "name": "OK", "kind": "allow_once"}]
    call = {"toolCallId": "p1", "title": "rm", "kind": "delete"}
    steps = [{"permission": {"toolCall": call, "options": options}}]
    await h.run(h.runtime({"turns": [{"steps": steps}]}, policy="deny"))
    assert h.logged("permission")[0]["outcome"] == {"outcome": "cancelled"}


async def test_cancel_answered_with_end_turn_counts_as_cancelled(h: Harness) -> None:
    """Cancel sends session/cancel; the agent's end_turn after it still ends the run as
    cancelled (the task is cancelled), fast, and no process is left."""
    script = {"turns": [{"steps": [{"update": TEXT}, {"waitCancel": True}]}]}
    task = asyncio.create_task(h.run(h.runtime(script)))
    for _ in range(200):
        if "text-delta" in h.kinds():
            break
        await asyncio.sleep(0.05)
    started = time.monotonic()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert time.monotonic() - started < 5
    assert h.logged("cancel"), "session/cancel was sent"
    assert marked_pids(h.run_id) == []


async def test_a_prompt_that_never_returns_trips_the_watchdog(h: Harness) -> None:
    script = {"turns": [{"steps": [{"update": TEXT}, {"hang": True}]}]}
    started = time.monotonic()
    outcome = await h.run(h.runtime(script, idle=1.0))
    assert not outcome.ok and outcome.error is not None
    assert "sent nothing for 1 s" in outcome.error and "AGENTYARD_ACP_IDLE_SECONDS" in outcome.error
    assert time.monotonic() - started < 10
    assert marked_pids(h.run_id) == []


async def test_a_crash_mid_turn_fails_with_the_exit_and_stderr(h: Harness) -> None:
    script = {"turns": [{"steps": [{"update": TEXT}, {"crash": 3}]}]}
    outcome = await h.run(h.runtime(script))
    assert not outcome.ok and outcome.error is not None
    assert "exited with code 3" in outcome.error and "crashing as scripted" in outcome.error
    assert "text-delta" in h.kinds()


async def test_stop_reasons_and_reported_usage_and_cost(h: Harness) -> None:
    usage = {"inputTokens": 7, "outputTokens": 3, "totalTokens": 10}
    cost = {"sessionUpdate": "usage_update", "used": 1, "size": 9}
    cost["cost"] = {"amount": 0.25, "currency": "USD"}
    script = {
        "turns": [
            {"match": "refuse", "stopReason": "refusal"},
            {"steps": [{"update": cost}], "extra": {"usage": usage}},
        ]
    }
    runtime = h.runtime(script)
    refused = await h.run(runtime, prompt="please refuse")
    assert not refused.ok and refused.error and "refus" in refused.error
    ok = await h.run(runtime, prompt="fine")
    assert ok.ok and ok.usage is not None
    assert (ok.usage["inputTokens"], ok.usage["outputTokens"]) == (7, 3)
    assert ok.cost_usd == 0.25 and ok.totals == {"sessionId": ok.session_id, "costUsd": 0.25}


async def test_an_unsupported_protocol_version_is_a_clear_error(h: Harness) -> None:
    outcome = await h.run(h.runtime({"protocolVersion": 2}))
    assert not outcome.ok and outcome.error is not None
    assert "protocol version 2" in outcome.error and "version 1 only" in outcome.error


async def test_authenticate_when_the_agent_asks(h: Harness) -> None:
    outcome = await h.run(
        h.runtime({"authRequired": True, "turns": [{"steps": [{"update": TEXT}]}]})
    )
    assert outcome.ok, outcome.error
    assert h.logged("authenticate") == [{"kind": "authenticate", "methodId": "fake-key"}]


async def test_continue_resumes_or_loads_without_replaying_history(h: Harness) -> None:
    """With session/resume the session is resumed; with only session/load it is loaded and
    the replayed history (before and after the answer) is not re-emitted; without either a
    new session is made."""
    old = chunk("agent_message_chunk", "OLD HISTORY")
    steps = [{"update": chunk("agent_message_chunk", "new answer")}]
    for caps, method in (
        ({"resume": True}, "resume_session"),
        ({"loadSession": True}, "load_session"),
    ):
        h.events.clear()
        runtime = h.runtime({**caps, "replay": [old], "turns": [{"steps": steps}]})
        outcome = await h.run(runtime, resume="fake-earlier")
        assert outcome.ok and outcome.session_id == "fake-earlier", outcome.error
        assert h.logged(method)[-1]["sessionId"] == "fake-earlier"
        assert [e["delta"] for e in h.events if e["type"] == "text-delta"] == ["new answer"]
    fresh = await h.run(h.runtime({"turns": [{"steps": steps}]}), resume="fake-earlier")
    assert fresh.ok and fresh.session_id != "fake-earlier"


def test_agents_are_configured_by_name() -> None:
    agents = load_agents('{"opencode": {"argv": ["opencode", "acp"], "env": {"A": "1"}}}')
    assert agents["opencode"].argv == ["opencode", "acp"] and agents["opencode"].env == {"A": "1"}
    missing = CommandProfile("nope", AcpAgentSpec(argv=["no-such-acp-agent-here"]))
    state = missing.availability()
    assert not state.configured and "no-such-acp-agent-here" in state.detail
