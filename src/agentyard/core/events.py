"""The event vocabulary every runtime speaks (the AI SDK UI-message stream).

An event is a JSON object with a ``type``. Runtimes build them with the helpers below; the
event log stores them with a gap-free per-run ``seq``; streams and logs replay them as stored.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

Event = dict[str, Any]

START = "start"
TEXT_START = "text-start"
TEXT_DELTA = "text-delta"
TEXT_END = "text-end"
REASONING_START = "reasoning-start"
REASONING_DELTA = "reasoning-delta"
REASONING_END = "reasoning-end"
TOOL_CALL_START = "tool-call-start"
TOOL_INPUT_AVAILABLE = "tool-input-available"
TOOL_OUTPUT_AVAILABLE = "tool-output-available"
FILES = "files"
SESSION_INIT = "session-init"
RESULT = "result"
ERROR = "error"
FINISH = "finish"


def start(run_id: str, started_at: str) -> Event:
    return {"type": START, "runId": run_id, "startedAt": started_at}


def text(block_id: str, content: str) -> list[Event]:
    """A whole text block as start, one delta, end."""
    return [
        {"type": TEXT_START, "id": block_id},
        {"type": TEXT_DELTA, "id": block_id, "delta": content},
        {"type": TEXT_END, "id": block_id},
    ]


def reasoning(block_id: str, content: str) -> list[Event]:
    return [
        {"type": REASONING_START, "id": block_id},
        {"type": REASONING_DELTA, "id": block_id, "delta": content},
        {"type": REASONING_END, "id": block_id},
    ]


def tool_call(call_id: str, tool_name: str, tool_input: dict[str, Any]) -> list[Event]:
    return [
        {"type": TOOL_CALL_START, "toolCallId": call_id, "toolName": tool_name},
        {
            "type": TOOL_INPUT_AVAILABLE,
            "toolCallId": call_id,
            "toolName": tool_name,
            "input": tool_input,
        },
    ]


def tool_output(call_id: str, tool_name: str, output: dict[str, Any]) -> Event:
    return {
        "type": TOOL_OUTPUT_AVAILABLE,
        "toolCallId": call_id,
        "toolName": tool_name,
        "output": output,
    }


def files(changed: list[dict[str, Any]]) -> Event:
    return {"type": FILES, "files": changed}


def session_init(session_id: str, model: str | None) -> Event:
    return {"type": SESSION_INIT, "sessionId": session_id, "model": model}


def error(error_text: str) -> Event:
    return {"type": ERROR, "errorText": error_text}


def finish(run_id: str, status: str) -> Event:
    return {"type": FINISH, "runId": run_id, "status": status}


def message_parts(events: list[Event]) -> list[dict[str, Any]]:
    """Fold a run's events into the parts of its assistant message.

    Text blocks become ``text`` parts (deltas joined); a tool call becomes one
    ``tool-<name>`` part carrying its input and, once available, its output.
    """
    folder = MessageFolder()
    folder.feed(events)
    return folder.parts()


class MessageFolder:
    """:func:`message_parts`, fed page by page: linear in the events, so that a run with a
    100,000-line output folds in milliseconds per page rather than minutes in one go (text
    deltas are collected and joined once, never concatenated one by one)."""

    def __init__(self) -> None:
        self._parts: list[dict[str, Any]] = []
        self._texts: dict[str, list[str]] = {}
        self._tools: dict[str, dict[str, Any]] = {}

    def feed(self, events: Iterable[Event]) -> None:
        for ev in events:
            kind = ev.get("type")
            if kind == TEXT_START or (kind == TEXT_DELTA and str(ev.get("id")) not in self._texts):
                chunks: list[str] = []
                self._texts[str(ev.get("id"))] = chunks
                self._parts.append({"type": "text", "text": chunks})
            if kind == TEXT_DELTA:
                self._texts[str(ev.get("id"))].append(str(ev.get("delta", "")))
            elif kind in (TOOL_CALL_START, TOOL_INPUT_AVAILABLE, TOOL_OUTPUT_AVAILABLE):
                self._tool(kind, ev)

    def _tool(self, kind: Any, ev: Event) -> None:
        call_id = str(ev.get("toolCallId"))
        tool = self._tools.get(call_id)
        if tool is None:
            tool = {
                "type": "tool-call",
                "toolCallId": call_id,
                "toolName": ev.get("toolName"),
                "state": "input-streaming",
                "input": None,
                "output": None,
            }
            self._tools[call_id] = tool
            self._parts.append(tool)
        if kind == TOOL_INPUT_AVAILABLE:
            tool["input"] = ev.get("input")
            tool["state"] = "input-available"
        elif kind == TOOL_OUTPUT_AVAILABLE:
            tool["output"] = ev.get("output")
            tool["state"] = "output-available"

    def parts(self) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for part in self._parts:
            if part["type"] == "text":
                text = "".join(part["text"])
                if text:
                    out.append({"type": "text", "text": text})
            else:
                out.append(dict(part))
        return out
