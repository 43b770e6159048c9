"""The scripted model's answers in the two wire formats: Anthropic Messages and OpenAI
Responses, as JSON and as SSE events, and their error bodies."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator, Mapping
from typing import Any

from agentyard.testing.model_script import FINAL_TEXT, Plan

_ANTHROPIC_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    529: "overloaded_error",
}
_OPENAI_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "invalid_request_error",
    403: "invalid_request_error",
    404: "invalid_request_error",
    429: "rate_limit_exceeded",
}


SSE = list[tuple[str, dict[str, Any]]]


def _new_id(prefix: str) -> str:
    return prefix + uuid.uuid4().hex[:24]


def estimate_tokens(value: Any) -> int:
    return max(1, len(json.dumps(value, ensure_ascii=False)) // 4)


def _tool_calls(turn: Mapping[str, Any]) -> list[dict[str, Any]]:
    return [c for c in turn.get("tool_calls") or [] if isinstance(c, dict)]


def anthropic_error(status: int, message: str) -> dict[str, Any]:
    kind = _ANTHROPIC_ERROR_TYPES.get(status, "api_error")
    return {"type": "error", "error": {"type": kind, "message": message}}


def openai_error(status: int, message: str) -> dict[str, Any]:
    kind = _OPENAI_ERROR_TYPES.get(status, "server_error")
    return {"error": {"message": message, "type": kind, "param": None, "code": kind}}


def anthropic_message(plan: Plan, model: str, body: Mapping[str, Any]) -> dict[str, Any]:
    """The whole assistant message (the non-streaming answer)."""
    turn = plan.turn
    content: list[dict[str, Any]] = []
    if turn.get("thinking"):
        content.append(
            {"type": "thinking", "thinking": turn["thinking"], "signature": _new_id("sig_")}
        )
    if turn.get("text"):
        content.append({"type": "text", "text": turn["text"]})
    for call in _tool_calls(turn):
        tool_input = call.get("input")
        content.append(
            {
                "type": "tool_use",
                "id": _new_id("toolu_"),
                "name": call["name"],
                "input": tool_input if isinstance(tool_input, dict) else {},
            }
        )
    if not content:
        content.append({"type": "text", "text": FINAL_TEXT})
    has_tools = any(block["type"] == "tool_use" for block in content)
    return {
        "id": _new_id("msg_"),
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": "tool_use" if has_tools else "end_turn",
        "stop_sequence": None,
        "usage": {
            "input_tokens": estimate_tokens(body.get("messages")),
            "output_tokens": estimate_tokens(content),
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 0,
            **(turn.get("usage") or {}),
        },
    }


def anthropic_stream(message: Mapping[str, Any]) -> SSE:
    """The SSE events that stream ``message``."""
    usage = message["usage"]
    events: SSE = [
        (
            "message_start",
            {
                "type": "message_start",
                "message": {
                    **message,
                    "content": [],
                    "stop_reason": None,
                    "usage": {**usage, "output_tokens": 1},
                },
            },
        ),
        ("ping", {"type": "ping"}),
    ]
    for index, block in enumerate(message["content"]):
        kind = block["type"]
        if kind == "text":
            start: dict[str, Any] = {"type": "text", "text": ""}
            deltas = [{"type": "text_delta", "text": block["text"]}]
        elif kind == "thinking":
            start = {"type": "thinking", "thinking": "", "signature": ""}
            deltas = [
                {"type": "thinking_delta", "thinking": block["thinking"]},
                {"type": "signature_delta", "signature": block["signature"]},
            ]
        else:
            start = {**block, "input": {}}
            deltas = [{"type": "input_json_delta", "partial_json": json.dumps(block["input"])}]
        events.append(
            (
                "content_block_start",
                {"type": "content_block_start", "index": index, "content_block": start},
            )
        )
        for delta in deltas:
            events.append(
                (
                    "content_block_delta",
                    {"type": "content_block_delta", "index": index, "delta": delta},
                )
            )
        events.append(("content_block_stop", {"type": "content_block_stop", "index": index}))
    events.append(
        (
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": message["stop_reason"], "stop_sequence": None},
                "usage": {"output_tokens": usage["output_tokens"]},
            },
        )
    )
    events.append(("message_stop", {"type": "message_stop"}))
    return events


def openai_output(plan: Plan) -> list[dict[str, Any]]:
    """The output items of a Responses answer."""
    turn = plan.turn
    items: list[dict[str, Any]] = []
    if turn.get("thinking"):
        items.append(
            {
                "type": "reasoning",
                "id": _new_id("rs_"),
                "summary": [{"type": "summary_text", "text": turn["thinking"]}],
            }
        )
    if turn.get("text") or not _tool_calls(turn):
        text = turn.get("text") or FINAL_TEXT
        items.append(
            {
                "type": "message",
                "id": _new_id("msg_"),
                "role": "assistant",
                "status": "completed",
                "content": [{"type": "output_text", "text": text, "annotations": []}],
            }
        )
    for call in _tool_calls(turn):
        tool_input = call.get("input")
        custom = call.get("type") == "custom" or (
            call.get("type") is None and isinstance(tool_input, str)
        )
        if custom:
            items.append(
                {
                    "type": "custom_tool_call",
                    "id": _new_id("ctc_"),
                    "call_id": _new_id("call_"),
                    "name": call["name"],
                    "input": str(tool_input or ""),
                    "status": "completed",
                }
            )
        else:
            items.append(
                {
                    "type": "function_call",
                    "id": _new_id("fc_"),
                    "call_id": _new_id("call_"),
                    "name": call["name"],
                    "arguments": json.dumps(tool_input if tool_input is not None else {}),
                    "status": "completed",
                }
            )
    return items


def openai_response(
    output: list[dict[str, Any]], model: str, body: Mapping[str, Any]
) -> dict[str, Any]:
    input_tokens = estimate_tokens(body.get("input"))
    output_tokens = estimate_tokens(output)
    return {
        "id": _new_id("resp_"),
        "object": "response",
        "created_at": int(time.time()),
        "status": "completed",
        "model": model,
        "output": output,
        "usage": {
            "input_tokens": input_tokens,
            "input_tokens_details": {"cached_tokens": 0},
            "output_tokens": output_tokens,
            "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": input_tokens + output_tokens,
        },
    }


_STREAMED_CALLS = {
    "function_call": ("arguments", "function_call_arguments"),
    "custom_tool_call": ("input", "custom_tool_call_input"),
}
"""Tool-call item type -> (its payload field, the event-name prefix that streams it)."""


def openai_stream(response: Mapping[str, Any]) -> SSE:
    """The SSE events that stream ``response``."""
    events: SSE = []

    def add(kind: str, **data: Any) -> None:
        events.append((kind, {"type": kind, "sequence_number": len(events), **data}))

    shell = {**response, "status": "in_progress", "output": [], "usage": None}
    add("response.created", response=shell)
    add("response.in_progress", response=shell)
    for index, item in enumerate(response["output"]):
        kind = item["type"]
        if kind == "message":
            add("response.output_item.added", output_index=index, item={**item, "content": []})
            for part_index, part in enumerate(item["content"]):
                where = {"item_id": item["id"], "output_index": index, "content_index": part_index}
                add("response.content_part.added", **where, part={**part, "text": ""})
                add("response.output_text.delta", **where, delta=part["text"])
                add("response.output_text.done", **where, text=part["text"])
                add("response.content_part.done", **where, part=part)
        elif kind in _STREAMED_CALLS:
            # A tool call's payload streams as one delta, then its done event.
            field, prefix = _STREAMED_CALLS[kind]
            add(
                "response.output_item.added",
                output_index=index,
                item={**item, field: "", "status": "in_progress"},
            )
            where = {"item_id": item["id"], "output_index": index}
            add(f"response.{prefix}.delta", **where, delta=item[field])
            add(f"response.{prefix}.done", **where, **{field: item[field]})
        else:
            add("response.output_item.added", output_index=index, item=item)
        add("response.output_item.done", output_index=index, item=item)
    add("response.completed", response=response)
    return events


def iter_sse(raw: bytes) -> Iterator[tuple[str, dict[str, Any]]]:
    """Parse an SSE body into ``(event, data)`` pairs (for tests and debugging)."""
    for frame in raw.decode().split("\n\n"):
        kind, data = "", ""
        for line in frame.splitlines():
            if line.startswith("event:"):
                kind = line[6:].strip()
            elif line.startswith("data:"):
                data += line[5:].strip()
        if data:
            yield kind, json.loads(data)
