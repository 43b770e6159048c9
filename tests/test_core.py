"""Pure domain rules: statuses, progress, routing, event folding."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from agentyard.core import events as ev
from agentyard.core.errors import InvalidInput
from agentyard.core.progress import estimate_progress
from agentyard.core.routing import infer_agent, resolve_agent
from agentyard.core.status import TERMINAL, RunStatus, allowed_sources

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def test_terminal_statuses_have_no_way_out() -> None:
    """No transition leaves a terminal status."""
    for target in RunStatus:
        assert not (allowed_sources(target) & TERMINAL)
    assert allowed_sources(RunStatus.RUNNING) == {RunStatus.QUEUED}
    assert allowed_sources(RunStatus.INTERRUPTED) == {RunStatus.QUEUED, RunStatus.RUNNING}


@pytest.mark.parametrize(
    ("status", "elapsed", "expected"),
    [
        (RunStatus.QUEUED, 0, 0),
        (RunStatus.RUNNING, 0, 0),
        (RunStatus.RUNNING, 30, 10),
        (RunStatus.RUNNING, 150, 50),
        (RunStatus.RUNNING, 10_000, 99),
        (RunStatus.COMPLETED, 10, 100),
        (RunStatus.FAILED, 200, 0),
        (RunStatus.CANCELLED, 200, 0),
        (RunStatus.INTERRUPTED, 200, 0),
    ],
)
def test_progress_is_linear_capped_and_fixed_at_the_ends(
    status: RunStatus, elapsed: int, expected: int
) -> None:
    """Progress grows linearly against the expected duration, 99 at most until completed."""
    started = NOW - timedelta(seconds=elapsed)
    assert estimate_progress(status, started, NOW, 300) == expected


@pytest.mark.parametrize(
    ("model", "agent"),
    [
        (None, "claude"),
        ("claude-sonnet-4-5", "claude"),
        ("blackboxai/anthropic/claude-opus-4.7", "claude"),
        ("blackboxai/minimax/minimax-m2.7", "claude"),
        ("blackboxai/openai/gpt-5.3-codex", "codex"),
        ("gpt-5.5", "codex"),
        ("blackboxai/openai/o3-mini", "codex"),
        ("o4-mini", "codex"),
        ("vendor/gpt-oss", "codex"),
        ("some-codex-model", "codex"),
    ],
)
def test_the_model_id_chooses_the_runtime(model: str | None, agent: str) -> None:
    """Codex for codex/openai/gpt-/o1/o3/o4 ids, Claude otherwise."""
    assert infer_agent(model) == agent


def test_an_explicit_agent_wins_and_an_unknown_one_lists_the_supported() -> None:
    """`agent` overrides the model; an unknown agent is a 400 naming the supported ones."""
    assert resolve_agent("claude", "gpt-5.5", ("claude", "codex")) == "claude"
    with pytest.raises(InvalidInput, match="supported agents: claude, codex"):
        resolve_agent("gemini", None, ("claude", "codex"))


def test_events_fold_into_message_parts() -> None:
    """Text deltas join into one text part; a tool call carries its input and output."""
    events = [
        ev.start("r", "t"),
        *ev.text("t1", "I'll write"),
        {"type": ev.TEXT_DELTA, "id": "t1", "delta": " the file."},
        *ev.tool_call("c1", "Write", {"file_path": "/w/a.txt"}),
        ev.tool_output("c1", "Write", {"content": "ok"}),
        *ev.text("t2", "done"),
        ev.finish("r", "completed"),
    ]
    assert ev.message_parts(events) == [
        {"type": "text", "text": "I'll write the file."},
        {
            "type": "tool-call",
            "toolCallId": "c1",
            "toolName": "Write",
            "state": "output-available",
            "input": {"file_path": "/w/a.txt"},
            "output": {"content": "ok"},
        },
        {"type": "text", "text": "done"},
    ]
