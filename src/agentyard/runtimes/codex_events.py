"""Codex's app-server notifications mapped onto the event vocabulary: text, reasoning,
tool calls with their outputs, file changes, token usage, and the reason a turn failed."""

from __future__ import annotations

import contextlib
import json
import shlex
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agentyard.core import events as ev
from agentyard.runtimes.base import Emit, RunOutcome
from agentyard.runtimes.lazy import LazyModule
from agentyard.runtimes.pricing import ModelPrice, cost_usd

if TYPE_CHECKING:
    import openai_codex.models as codex_models
    from openai_codex.models import Notification
else:
    codex_models = LazyModule("openai_codex.models")

KEY_ENV = "OPENAI_API_KEY"
"""The variable operators set for Codex's key (codex itself gets it under another name)."""

_TOKEN_FIELDS = (
    "inputTokens",
    "cachedInputTokens",
    "outputTokens",
    "reasoningOutputTokens",
    "totalTokens",
)
"""codex's token counts; its wire spelling is also the usage vocabulary of every runtime."""

_TOOL_ITEMS = frozenset(
    {"commandExecution", "fileChange", "mcpToolCall", "dynamicToolCall", "webSearch"}
)
"""Thread items that are tool calls: a call event at their start, the output at their end."""


def _params(notification: Notification) -> dict[str, Any]:
    """A notification's params as the wire spells them (camelCase), typed model or not."""
    payload = notification.payload
    if isinstance(payload, codex_models.UnknownNotification):
        return dict(payload.params)
    dump = getattr(payload, "model_dump", None)
    if dump is None:
        return {}
    params: dict[str, Any] = dump(by_alias=True, mode="json")
    return params


def _breakdown(raw: Any) -> dict[str, int]:
    raw = raw if isinstance(raw, dict) else {}
    counts: dict[str, int] = {}
    for key in _TOKEN_FIELDS:
        value = raw.get(key)
        counts[key] = int(value) if isinstance(value, (int, float)) else 0
    return counts


def _shell_command(command: str) -> str:
    """The model's command without codex's ``/bin/bash -c '...'`` wrapper."""
    try:
        argv = shlex.split(command)
    except ValueError:
        return command
    wrapped = len(argv) == 3 and Path(argv[0]).name in _SHELLS and argv[1] in ("-c", "-lc")
    return argv[2] if wrapped else command


_SHELLS = frozenset({"bash", "sh", "zsh"})


class CodexMapper:
    """Turns app-server notifications into events and remembers what the outcome needs."""

    def __init__(self, workspace: Path, emit: Emit, provider_url: str) -> None:
        self.workspace = workspace
        self.emit = emit
        self.provider_url = provider_url
        self.thread_id: str | None = None
        self.turn: dict[str, Any] | None = None
        self.errors: list[str] = []
        self.first_usage: dict[str, Any] | None = None
        self.last_usage: dict[str, Any] | None = None
        self._open_texts: set[str] = set()
        self._streamed: set[str] = set()
        self._tools: dict[str, str] = {}
        """Tool calls announced so far: item id -> tool name."""

    async def handle(self, notification: Notification) -> None:
        method = notification.method
        params = _params(notification)
        if method == "item/started":
            await self._started(params.get("item") or {})
        elif method == "item/completed":
            await self._completed(params.get("item") or {})
        elif method == "item/agentMessage/delta":
            await self._delta(str(params.get("itemId")), str(params.get("delta") or ""))
        elif method == "thread/tokenUsage/updated":
            usage = params.get("tokenUsage")
            if isinstance(usage, dict):
                if self.first_usage is None:
                    self.first_usage = usage
                self.last_usage = usage
        elif method == "error":
            error = params.get("error")
            if not params.get("willRetry") and isinstance(error, dict):
                self.errors.append(_error_text(error, self.provider_url))
        elif method == "turn/completed":
            turn = params.get("turn")
            self.turn = turn if isinstance(turn, dict) else {}

    async def _started(self, item: dict[str, Any]) -> None:
        kind, item_id = item.get("type"), str(item.get("id"))
        if kind == "agentMessage":
            await self._open_text(item_id)
        elif kind in _TOOL_ITEMS and (kind != "webSearch" or item.get("query")):
            await self._tool_call(item)  # a search's query may only be known at its end

    async def _completed(self, item: dict[str, Any]) -> None:
        kind, item_id = item.get("type"), str(item.get("id"))
        if kind == "agentMessage":
            text = str(item.get("text") or "")
            if item_id not in self._streamed and text:
                await self._delta(item_id, text)
            if item_id in self._open_texts:
                self._open_texts.discard(item_id)
                await self.emit({"type": ev.TEXT_END, "id": item_id})
        elif kind == "reasoning":
            parts = item.get("summary") or item.get("content") or []
            text = "\n\n".join(str(p) for p in parts if p)
            if text:
                await self.emit(*ev.reasoning(item_id, text))
        elif kind in _TOOL_ITEMS:
            await self._tool_call(item)
            await self._tool_output(item)

    async def _open_text(self, item_id: str) -> None:
        if item_id not in self._open_texts:
            self._open_texts.add(item_id)
            await self.emit({"type": ev.TEXT_START, "id": item_id})

    async def _delta(self, item_id: str, delta: str) -> None:
        if not delta:
            return
        await self._open_text(item_id)
        self._streamed.add(item_id)
        await self.emit({"type": ev.TEXT_DELTA, "id": item_id, "delta": delta})

    async def _tool_call(self, item: dict[str, Any]) -> None:
        item_id = str(item.get("id"))
        if item_id in self._tools:
            return
        name, tool_input = self._tool_input(item)
        self._tools[item_id] = name
        await self.emit(*ev.tool_call(item_id, name, tool_input))

    def _tool_input(self, item: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        kind = item.get("type")
        if kind == "commandExecution":
            command = str(item.get("command") or "")
            return "bash", {"command": _shell_command(command), "cwd": item.get("cwd")}
        if kind == "fileChange":
            changes = [
                {**self._changed(change), "diff": change.get("diff")}
                for change in item.get("changes") or []
                if isinstance(change, dict)
            ]
            return "apply_patch", {"changes": changes}
        if kind == "webSearch":
            return "web_search", {"query": item.get("query")}
        arguments = item.get("arguments")
        tool_input = arguments if isinstance(arguments, dict) else {"arguments": arguments}
        if kind == "mcpToolCall":
            return f"mcp__{item.get('server')}__{item.get('tool')}", tool_input
        return str(item.get("tool") or "tool"), tool_input

    async def _tool_output(self, item: dict[str, Any]) -> None:
        item_id, kind = str(item.get("id")), item.get("type")
        name = self._tools[item_id]
        status = item.get("status")
        output: dict[str, Any]
        if kind == "commandExecution":
            output = {
                "stdout": item.get("aggregatedOutput") or "",
                "exitCode": item.get("exitCode"),
                "status": status,
            }
        elif kind == "fileChange":
            output = {"status": status}
        elif kind == "mcpToolCall":
            error = item.get("error")
            output = {
                "result": item.get("result"),
                "error": error.get("message") if isinstance(error, dict) else None,
                "status": status,
            }
        elif kind == "webSearch":
            output = {"action": item.get("action"), "results": item.get("results")}
        else:
            output = {
                "content": item.get("contentItems"),
                "success": item.get("success"),
                "status": status,
            }
        await self.emit(ev.tool_output(item_id, name, output))
        if kind == "fileChange" and status == "completed":
            changed = [
                self._changed(change)
                for change in item.get("changes") or []
                if isinstance(change, dict)
            ]
            if changed:
                await self.emit(ev.files(changed))

    def _changed(self, change: dict[str, Any]) -> dict[str, Any]:
        kind_info = change.get("kind")
        kind = kind_info.get("type") if isinstance(kind_info, dict) else kind_info
        changed: dict[str, Any] = {
            "path": self._relative(str(change.get("path") or "")),
            "kind": str(kind or "update"),
        }
        move_path = kind_info.get("move_path") if isinstance(kind_info, dict) else None
        if move_path:
            changed["movePath"] = self._relative(str(move_path))
        return changed

    def _relative(self, raw: str) -> str:
        path = Path(raw)
        if not path.is_absolute():
            return raw
        for root in (self.workspace, self.workspace.resolve()):
            with contextlib.suppress(ValueError):
                return str(path.relative_to(root))
        with contextlib.suppress(ValueError, OSError):
            return str(path.resolve().relative_to(self.workspace.resolve()))
        return raw  # outside the workspace: say where

    def failure(self, error: str) -> RunOutcome:
        return RunOutcome(ok=False, error=error, session_id=self.thread_id)

    async def close_texts(self) -> None:
        """End text blocks a failed turn left open."""
        for item_id in sorted(self._open_texts):
            await self.emit({"type": ev.TEXT_END, "id": item_id})
        self._open_texts.clear()

    def outcome(
        self,
        model: str,
        price: ModelPrice,
        prior_totals: Mapping[str, Any] | None,
        seconds: float,
    ) -> RunOutcome:
        usage, totals = self._usage(prior_totals)
        cost = cost_usd(usage, price)
        usage.update(durationMs=int(seconds * 1000), model=model)
        error = self._error()
        return RunOutcome(
            ok=error is None,
            error=error,
            session_id=self.thread_id,
            usage=usage,
            cost_usd=cost,
            totals=totals,
        )

    def _error(self) -> str | None:
        """Why the turn did not complete, or None if it did."""
        reported = self.errors[-1] if self.errors else None
        if self.turn is None:
            return reported or "codex ended the turn without a result"
        status = self.turn.get("status")
        if status == "completed":
            return None
        if status == "failed":
            error = self.turn.get("error")
            said = _error_text(error, self.provider_url) if isinstance(error, dict) else ""
            return said or reported or "the codex turn failed"
        return f"the codex turn ended {status}"

    def _usage(
        self, prior_totals: Mapping[str, Any] | None
    ) -> tuple[dict[str, Any], dict[str, Any] | None]:
        """This run's tokens, and the thread's totals to hand to the next run.

        codex counts per thread. The thread's count before this run is measured as the first
        update's ``total`` minus its ``last`` (the request that caused it); that equals the
        previous run's ``totals`` unless that run ended without reporting them (cancelled),
        in which case it is the right baseline and ``prior_totals`` is not.
        """
        zero = dict.fromkeys(_TOKEN_FIELDS, 0)
        if self.first_usage is None or self.last_usage is None:
            same_thread = prior_totals and prior_totals.get("sessionId") == self.thread_id
            return zero, dict(prior_totals) if same_thread and prior_totals else None
        first_total = _breakdown(self.first_usage.get("total"))
        first_last = _breakdown(self.first_usage.get("last"))
        end_total = _breakdown(self.last_usage.get("total"))
        usage: dict[str, Any] = {
            key: max(0, end_total[key] - max(0, first_total[key] - first_last[key])) for key in zero
        }
        totals: dict[str, Any] = {"sessionId": self.thread_id, **end_total}
        return usage, totals


def _error_text(error: Mapping[str, Any], provider_url: str) -> str:
    """A turn error as a person reads it: the provider's own message where codex kept it."""
    message = str(error.get("message") or "").strip()
    with contextlib.suppress(ValueError, LookupError, TypeError, AttributeError):
        # An HTTP 4xx arrives as the provider's raw JSON body.
        body = json.loads(message)["error"]
        kind = body.get("code") or body.get("type")
        message = str(body["message"]) + (f" ({kind})" if kind else "")
    details = str(error.get("additionalDetails") or "").strip()
    if details and details not in message:
        message = f"{message} ({details})" if message else details
    cause = _cause(error.get("codexErrorInfo"), provider_url)
    if cause:
        message = f"{message} [{cause}]" if message else cause
    return message


_CAUSES = {
    # codex words a provider's HTTP 5xx as "high demand" and drops the body.
    "internalServerError": "the model provider answered with a server error (HTTP 5xx)",
    "serverOverloaded": "the model provider is overloaded",
    "unauthorized": f"the model provider refused the key (HTTP 401): check {KEY_ENV}",
    "rateLimitExceeded": "rate limited by the model provider (HTTP 429)",
    "usageLimitExceeded": "usage limit of the model provider reached",
    "contextWindowExceeded": "the conversation no longer fits the model's context window",
}


def _cause(info: Any, provider_url: str) -> str | None:
    """What codex's ``codexErrorInfo`` says happened (a name, or a one-key object)."""
    if isinstance(info, str):
        return _CAUSES.get(info)
    if isinstance(info, dict) and len(info) == 1:
        name, detail = next(iter(info.items()))
        status = detail.get("httpStatusCode") if isinstance(detail, dict) else None
        if status:
            return f"HTTP {status} from the model provider at {provider_url}"
        if name in ("httpConnectionFailed", "responseStreamConnectionFailed"):
            return f"cannot reach the model provider at {provider_url}"
        return str(name)
    return None
