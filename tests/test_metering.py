"""What the model proxy reads off a response (tokens, for the run's cost) and how a run's
guard judges the responses (a rejected key, retries, the budget, the deadline)."""

from __future__ import annotations

import json

import pytest

from agentyard.core import details
from agentyard.guard import RunGuard
from agentyard.sandbox.metering import UsageTap


def _sse(*events: dict[str, object]) -> bytes:
    return b"".join(
        f"event: {e.get('type', 'x')}\ndata: {json.dumps(e)}\n\n".encode() for e in events
    )


def _fed(route: str, body: bytes, step: int = 7) -> UsageTap:
    tap = UsageTap(route)
    for i in range(0, len(body), step):  # split anywhere, as a stream arrives
        tap.feed(body[i : i + step])
    tap.close()
    return tap


def test_an_anthropic_stream_reports_its_final_usage() -> None:
    body = _sse(
        {
            "type": "message_start",
            "message": {
                "model": "claude-sonnet-4-5",
                "usage": {
                    "input_tokens": 10,
                    "cache_read_input_tokens": 1000,
                    "cache_creation_input_tokens": 5,
                    "output_tokens": 1,
                },
            },
        },
        {"type": "content_block_delta", "delta": {"text": 'hi "usage" in text'}},
        {"type": "message_delta", "usage": {"output_tokens": 42}},
    )
    assert _fed("anthropic", body).result() == (
        "claude-sonnet-4-5",
        {"inputTokens": 1015, "cachedInputTokens": 1000, "outputTokens": 42},
    )


def test_openai_and_gemini_streams_and_a_whole_response() -> None:
    openai = _sse(
        {"type": "response.created", "response": {"usage": None}},
        {
            "type": "response.completed",
            "response": {
                "model": "gpt-5",
                "usage": {
                    "input_tokens": 100,
                    "input_tokens_details": {"cached_tokens": 40},
                    "output_tokens": 7,
                },
            },
        },
    )
    assert _fed("openai", openai).result() == (
        "gpt-5",
        {"inputTokens": 100, "cachedInputTokens": 40, "outputTokens": 7},
    )
    gemini = b"".join(
        b"data: " + json.dumps(c).encode() + b"\r\n\r\n"
        for c in (
            {"usageMetadata": {"promptTokenCount": 5}, "modelVersion": "gemini-2.5-pro"},
            {"usageMetadata": {"promptTokenCount": 5, "candidatesTokenCount": 9}},
        )
    )
    assert _fed("gemini", gemini).result() == (
        "gemini-2.5-pro",
        {"inputTokens": 5, "cachedInputTokens": 0, "outputTokens": 9},
    )
    whole = json.dumps({"model": "claude-haiku-4-5", "usage": {"input_tokens": 3}}).encode()
    assert _fed("anthropic", whole).result() == (
        "claude-haiku-4-5",
        {"inputTokens": 3, "cachedInputTokens": 0, "outputTokens": 0},
    )
    assert _fed("anthropic", b'data: not json with "usage"\n\n').result() is None


async def test_the_guard_stops_on_a_rejected_key_and_notes_retries() -> None:
    guard = RunGuard()
    notes: list[tuple[object, str]] = []

    async def notify(event: object, detail: str) -> None:
        notes.append((event, detail))

    guard.response("anthropic", 529)
    guard.response("anthropic", 200)
    guard.response("openai", 401)
    stop = await guard.watch(notify)
    assert stop.detail == details.KEY_REJECTED and "OPENAI_API_KEY" in stop.error
    # A stop already decided wins over notes not yet passed on; otherwise notes go first.
    guard = RunGuard()
    guard.response("anthropic", 529)
    guard.response("anthropic", 503)
    guard.response("anthropic", 200)
    guard.max_duration = 0.01
    stop = await guard.watch(notify)
    assert stop.detail == details.MAX_DURATION
    assert [d for _, d in notes] == [
        "model overloaded, retrying (attempt 2)",
        "model overloaded, retrying (attempt 3)",
        details.WORKING,
    ]
    assert notes[0][0] == {
        "type": "data-retry",
        "data": {"provider": "anthropic", "status": 529, "attempt": 2},
    }


async def test_the_guard_meters_cost_up_to_the_budget() -> None:
    guard = RunGuard(max_cost_usd=0.05)
    usage = {"inputTokens": 10_000, "cachedInputTokens": 0, "outputTokens": 0}
    guard.usage("anthropic", "claude-sonnet-4-5", usage)  # $0.03
    assert guard.stopped is None and guard.cost_usd == pytest.approx(0.03)
    guard.usage("anthropic", "claude-sonnet-4-5", usage)  # $0.06 >= $0.05
    assert guard.stopped is not None and guard.stopped.detail == details.MAX_COST
