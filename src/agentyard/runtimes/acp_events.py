"""ACP ``session/update`` notifications mapped onto the event vocabulary.

The mapper reads the wire JSON (camelCase, as the agent sent it), not the SDK's typed models:
agents send kinds and fields outside the pinned schema (the reference notes every agent
measured does), and a strict model would drop the whole update. Known kinds become the
native events; anything else is kept as a ``data-acp`` event rather than lost.

- ``agent_message_chunk`` → ``text-start``/``text-delta``/``text-end``, one block per run of
  chunks (a new block when the kind or the ``messageId`` changes, or the turn ends);
- ``agent_thought_chunk`` → ``reasoning-*``, the same grouping;
- ``tool_call``/``tool_call_update`` → ``tool-call-start``, ``tool-input-available`` (when the
  input is first known or changes), ``tool-output-available`` once the call is completed or
  failed (its text, diffs and terminal references), and ``files`` for the diffs;
- ``plan`` → ``data-plan``; ``usage_update`` → ``data-usage`` (and the run's cost);
- ``user_message_chunk`` (agents echo the prompt) is ignored; everything else → ``data-acp``.
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Any

from agentyard.core import events as ev
from agentyard.runtimes.base import Emit

DATA_PLAN = "data-plan"
DATA_USAGE = "data-usage"
DATA_PERMISSION = "data-permission"
DATA_ACP = "data-acp"

_TEXT_KINDS = {"agent_message_chunk": "text", "agent_thought_chunk": "reasoning"}
_EVENTS = {
    "text": (ev.TEXT_START, ev.TEXT_DELTA, ev.TEXT_END),
    "reasoning": (ev.REASONING_START, ev.REASONING_DELTA, ev.REASONING_END),
}
_ENDED = frozenset({"completed", "failed"})


def _content_text(block: Any) -> str:
    """A content block as text; non-text blocks (image, audio, resources) as a placeholder."""
    if not isinstance(block, dict):
        return ""
    kind = block.get("type")
    if kind == "text":
        return str(block.get("text") or "")
    if kind in ("image", "audio"):
        return f"[{kind}: {block.get('mimeType') or 'unknown type'}]"
    if kind == "resource_link":
        return f"[resource: {block.get('uri') or block.get('name') or '?'}]"
    if kind == "resource":
        resource = block.get("resource")
        if isinstance(resource, dict):
            if isinstance(resource.get("text"), str):
                return str(resource["text"])
            return f"[resource: {resource.get('uri') or '?'}]"
    return f"[{kind or 'content'}]"


class AcpMapper:
    """Turns one run's updates into events and remembers what the outcome needs."""

    def __init__(self, workspace: Path, emit: Emit) -> None:
        self.workspace = workspace
        self.emit = emit
        self.cost: dict[str, Any] | None = None
        """The latest ``usage_update`` cost (session-cumulative, per the schema)."""
        self.context: dict[str, Any] | None = None
        self._block: tuple[str, str, str | None] | None = None
        """The open text/reasoning block: (kind, block id, the agent's messageId)."""
        self._blocks = 0
        self._tools: dict[str, dict[str, Any]] = {}
        """Tool calls seen: id -> {"name", "input", "ended"}."""

    async def update(self, update: Any) -> None:
        if not isinstance(update, dict):
            await self.emit({"type": DATA_ACP, "data": {"update": update}})
            return
        kind = update.get("sessionUpdate")
        if kind in _TEXT_KINDS:
            await self._chunk(_TEXT_KINDS[str(kind)], update)
        elif kind == "user_message_chunk":
            return  # the prompt echoed back (or history): not the agent's output
        elif kind in ("tool_call", "tool_call_update"):
            await self.close_block()
            await self._tool(update)
        elif kind == "plan":
            await self.emit({"type": DATA_PLAN, "data": {"entries": update.get("entries") or []}})
        elif kind == "usage_update":
            self._usage(update)
            await self.emit({"type": DATA_USAGE, "data": _without(update, "sessionUpdate")})
        else:
            await self.emit({"type": DATA_ACP, "data": update})

    async def permission(self, record: dict[str, Any], tool_call: dict[str, Any]) -> None:
        """A permission request (some agents announce a call only there: it starts the call),
        and the policy's answer, for the audit trail."""
        await self.close_block()
        if tool_call.get("toolCallId"):
            await self._tool({**tool_call, "sessionUpdate": "tool_call", "status": None})
        await self.emit({"type": DATA_PERMISSION, "data": record})

    async def close_block(self) -> None:
        """End the open text or reasoning block (another kind follows, or the turn ended)."""
        if self._block is not None:
            kind, block_id, _ = self._block
            self._block = None
            await self.emit({"type": _EVENTS[kind][2], "id": block_id})

    async def _chunk(self, kind: str, update: dict[str, Any]) -> None:
        text = _content_text(update.get("content"))
        if not text:
            return
        message_id = update.get("messageId")
        message_id = str(message_id) if message_id is not None else None
        block = self._block
        if block is None or block[0] != kind or (message_id and block[2] != message_id):
            await self.close_block()
            self._blocks += 1
            block = (kind, f"{kind}-{self._blocks}", message_id)
            self._block = block
            await self.emit({"type": _EVENTS[kind][0], "id": block[1]})
        await self.emit({"type": _EVENTS[kind][1], "id": block[1], "delta": text})

    async def _tool(self, update: dict[str, Any]) -> None:
        call_id = str(update.get("toolCallId") or "")
        if not call_id:
            await self.emit({"type": DATA_ACP, "data": update})
            return
        tool = self._tools.get(call_id)
        if tool is None:
            # An update may come before its tool_call (agents reorder): it starts the call.
            name = _tool_name(update)
            tool = {"name": name, "input": None, "ended": False}
            self._tools[call_id] = tool
            await self.emit({"type": ev.TOOL_CALL_START, "toolCallId": call_id, "toolName": name})
        tool_input = self._input(update, tool["input"])
        if tool_input is not None and tool_input != tool["input"]:
            tool["input"] = tool_input
            await self.emit(
                {
                    "type": ev.TOOL_INPUT_AVAILABLE,
                    "toolCallId": call_id,
                    "toolName": tool["name"],
                    "input": tool_input,
                }
            )
        status = update.get("status")
        if status in _ENDED and not tool["ended"]:
            tool["ended"] = True
            if tool["input"] is None:
                tool["input"] = {}
                await self.emit(*ev.tool_call(call_id, tool["name"], {})[1:])
            await self._output(call_id, tool["name"], update, str(status))

    def _input(self, update: dict[str, Any], known: dict[str, Any] | None) -> dict[str, Any] | None:
        """The call's input: its ``rawInput``, else what the call says about itself."""
        raw = update.get("rawInput")
        if raw is not None:
            return raw if isinstance(raw, dict) else {"input": raw}
        if known is not None:
            return None  # a later update without rawInput changes nothing
        described = {key: update[key] for key in ("title", "kind", "locations") if update.get(key)}
        return described or None

    async def _output(self, call_id: str, name: str, update: dict[str, Any], status: str) -> None:
        texts: list[str] = []
        diffs: list[dict[str, Any]] = []
        terminals: list[str] = []
        for item in update.get("content") or []:
            if not isinstance(item, dict):
                continue
            kind = item.get("type")
            if kind == "content":
                texts.append(_content_text(item.get("content")))
            elif kind == "diff":
                meta = item.get("_meta")
                said = meta.get("kind") if isinstance(meta, dict) else None
                old = item.get("oldText")
                diffs.append(
                    {
                        "path": self._relative(str(item.get("path") or "")),
                        "oldText": old,
                        "newText": item.get("newText"),
                        "kind": str(said) if said else ("add" if not old else "update"),
                    }
                )
            elif kind == "terminal":
                terminals.append(str(item.get("terminalId") or ""))
        output: dict[str, Any] = {"status": status}
        if texts:
            output["content"] = "\n".join(t for t in texts if t)
        if diffs:
            output["diffs"] = diffs
        if terminals:
            output["terminals"] = terminals
        if "rawOutput" in update:
            output["rawOutput"] = update["rawOutput"]
        if status == "failed":
            output["isError"] = True
        await self.emit(ev.tool_output(call_id, name, output))
        if diffs and status == "completed":
            changed = [{"path": d["path"], "kind": d["kind"]} for d in diffs if d["path"]]
            await self.emit(ev.files(changed))

    def _usage(self, update: dict[str, Any]) -> None:
        cost = update.get("cost")
        if isinstance(cost, dict) and isinstance(cost.get("amount"), (int, float)):
            self.cost = cost
        self.context = {k: update.get(k) for k in ("used", "size") if k in update}

    def _relative(self, raw: str) -> str:
        path = Path(raw)
        if not raw or not path.is_absolute():
            return raw
        for root in (self.workspace, self.workspace.resolve()):
            with contextlib.suppress(ValueError):
                return str(path.relative_to(root))
        return raw  # outside the workspace: say where


def _tool_name(update: dict[str, Any]) -> str:
    """The call's tool: ACP names a tool only by its ``kind`` (``edit``, ``execute``, ...);
    an ``other`` call (or one without a kind) is named by its title."""
    kind = update.get("kind")
    if isinstance(kind, str) and kind and kind != "other":
        return kind
    title = update.get("title")
    return str(title)[:80] if title else "tool"


def _without(data: dict[str, Any], *keys: str) -> dict[str, Any]:
    return {k: v for k, v in data.items() if k not in keys}


def shorten(value: Any, limit: int = 500) -> str:
    """A JSON value for an error message, cut to ``limit`` characters."""
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return text if len(text) <= limit else text[:limit] + "…"
