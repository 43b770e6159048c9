"""A scripted model server: the Anthropic Messages and OpenAI Responses APIs, replaying a script.

Tests drive the real Claude CLI and codex binary against it on 127.0.0.1; users point Agentyard
at it to try the product offline (``agentyard scripted-model --script FILE``).

A script is ``{"scenarios": [{"match": REGEX?, "turns": [TURN, ...]}, ...]}``. A request's
scenario is the first whose ``match`` is found in the current prompt (the latest user message
with real text, not only tool results), else the first without ``match``. Its step is the
number of model turns since that prompt, so the server holds no conversation state: a resumed
or continued session, which resends the whole history, lands on the right turn. A TURN is
``{"delay": s, "status": code, "error": msg, "thinking": str, "text": str,
"tool_calls": [{"name": ..., "input": ...}], "anthropic": {...}, "openai": {...},
"models": {MODEL: {...}}}`` (every key optional; ``anthropic``/``openai`` override the others
for one API, since Claude Code and codex have different tools, and ``models`` for one model).
``{cwd}`` in any string of it becomes the agent's working directory, read from the request.
Past the last turn the answer is the text ``done``.
"""

from __future__ import annotations

import contextlib
import gzip
import json
import re
import socket
import sys
import threading
import time
import uuid
import zlib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit

FINAL_TEXT = "done"
"""The answer once a scenario has no turn left (or when no scenario applies)."""

SIDE_TEXT = "Scripted session"
"""The answer to side requests (no tools offered: titles, summaries)."""

ANTHROPIC = "anthropic"
OPENAI = "openai"

_IDLE_TIMEOUT = 300.0
"""Seconds an idle keep-alive connection is kept open."""
_POLL_SECONDS = 0.05
"""How often the serving loop checks for ``stop()``."""

# Context the CLIs add to user messages; it is not the prompt, so it never selects a scenario.
_WRAPPER_BLOCKS = re.compile(
    r"<(system-reminder|environment_context|user_instructions|permissions instructions|"
    r"collaboration_mode|skills_instructions|apps_instructions|turn_aborted)>.*?</\1>",
    re.DOTALL,
)
_AGENTS_MD_PREFIX = "# AGENTS.md instructions for "
_INTERRUPTED = re.compile(r"^\[Request interrupted by user[^\]]*\]$")

# Where the CLIs state the working directory (see ``detect_cwd``).
_CODEX_CWD = re.compile(r"<cwd>\s*([^<\n]+?)\s*</cwd>")
_CLAUDE_CWD = (
    re.compile(r"^[ \t]*-?[ \t]*Primary working directory:[ \t]*(/[^\n]*?)[ \t]*$", re.MULTILINE),
    re.compile(r"^[ \t]*-?[ \t]*Working directory:[ \t]*(/[^\n]*?)[ \t]*$", re.MULTILINE),
)

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


class ScriptError(ValueError):
    """The script is not of the documented shape."""


# --------------------------------------------------------------------------- the script


def load_script(script: Mapping[str, Any] | Path | str) -> dict[str, Any]:
    """Read (from a JSON file, if given a path) and check a script; returns a plain dict."""
    if isinstance(script, (Path, str)):
        try:
            data: Any = json.loads(Path(script).read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise ScriptError(f"cannot read script {str(script)!r}: {exc}") from exc
    else:
        data = json.loads(json.dumps(script))  # a private deep copy, JSON types only
    if not isinstance(data, dict) or not isinstance(data.get("scenarios"), list):
        raise ScriptError('a script is an object with a "scenarios" list')
    for i, scenario in enumerate(data["scenarios"]):
        where = f"scenarios[{i}]"
        if not isinstance(scenario, dict):
            raise ScriptError(f"{where} is not an object")
        match = scenario.get("match")
        if match is not None:
            if not isinstance(match, str):
                raise ScriptError(f"{where}.match is not a string")
            try:
                re.compile(match)
            except re.error as exc:
                raise ScriptError(f"{where}.match is not a valid regex: {exc}") from exc
        turns = scenario.get("turns", [])
        if not isinstance(turns, list) or not all(isinstance(t, dict) for t in turns):
            raise ScriptError(f"{where}.turns is not a list of objects")
        for j, turn in enumerate(turns):
            _check_turn(turn, f"{where}.turns[{j}]")
    return data


def _check_turn(turn: Mapping[str, Any], where: str) -> None:
    delay = turn.get("delay", 0)
    if not isinstance(delay, (int, float)) or delay < 0:
        raise ScriptError(f"{where}.delay is not a non-negative number")
    status = turn.get("status")
    if status is not None and (not isinstance(status, int) or not 100 <= status <= 599):
        raise ScriptError(f"{where}.status is not an HTTP status code")
    for key in ("text", "thinking", "error"):
        if turn.get(key) is not None and not isinstance(turn[key], str):
            raise ScriptError(f"{where}.{key} is not a string")
    calls = turn.get("tool_calls", [])
    if not isinstance(calls, list):
        raise ScriptError(f"{where}.tool_calls is not a list")
    for k, call in enumerate(calls):
        if not isinstance(call, dict) or not isinstance(call.get("name"), str):
            raise ScriptError(f"{where}.tool_calls[{k}] needs a string name")
    for api in (ANTHROPIC, OPENAI):
        override = turn.get(api)
        if override is not None:
            if not isinstance(override, dict) or ANTHROPIC in override or OPENAI in override:
                raise ScriptError(f"{where}.{api} is not a plain turn object")
            _check_turn(override, f"{where}.{api}")
    models = turn.get("models")
    if models is not None:
        if not isinstance(models, dict):
            raise ScriptError(f"{where}.models is not an object of model -> turn")
        for model, override in models.items():
            if not isinstance(override, dict) or "models" in override:
                raise ScriptError(f"{where}.models[{model!r}] is not a plain turn object")
            _check_turn(override, f"{where}.models[{model!r}]")


@dataclass(frozen=True)
class Plan:
    """How the script answers one request."""

    api: str
    scenario: int | None
    step: int | None
    prompt: str | None
    cwd: str | None
    turn: Mapping[str, Any]
    """The turn to play, ``{cwd}`` already replaced."""
    side: bool = False


def plan_request(script: Mapping[str, Any], api: str, body: Mapping[str, Any]) -> Plan:
    """Choose the scenario and turn for a request body of either API."""
    if api == ANTHROPIC:
        prompt, step, cwd = _anthropic_position(body)
    else:
        prompt, step, cwd = _openai_position(body)
    if not body.get("tools"):
        return Plan(api, None, None, prompt, cwd, {"text": SIDE_TEXT}, side=True)
    index = _choose_scenario(script, prompt or "")
    if index is None:
        return Plan(api, None, step, prompt, cwd, {"text": FINAL_TEXT})
    turns: list[dict[str, Any]] = script["scenarios"][index].get("turns", [])
    turn: Mapping[str, Any] = turns[step] if step < len(turns) else {"text": FINAL_TEXT}
    override = turn.get(api)
    if isinstance(override, dict):  # e.g. Claude's Write, codex's apply_patch in one script
        turn = {**turn, **override}
    by_model = turn.get("models")
    if isinstance(by_model, dict) and isinstance(by_model.get(body.get("model")), dict):
        turn = {**turn, **by_model[body["model"]]}  # e.g. one agent of a group made slow
    if cwd is not None:
        turn = _replace_cwd(turn, cwd)
    return Plan(api, index, step, prompt, cwd, turn)


def _choose_scenario(script: Mapping[str, Any], prompt: str) -> int | None:
    default: int | None = None
    for i, scenario in enumerate(script.get("scenarios", [])):
        match = scenario.get("match")
        if match is None:
            if default is None:
                default = i
        elif re.search(match, prompt):
            return i
    return default


def _replace_cwd(value: Any, cwd: str) -> Any:
    if isinstance(value, str):
        return value.replace("{cwd}", cwd)
    if isinstance(value, list):
        return [_replace_cwd(v, cwd) for v in value]
    if isinstance(value, dict):
        return {k: _replace_cwd(v, cwd) for k, v in value.items()}
    return value


def _prompt_text(texts: list[str]) -> str:
    """The user's own words in a message: the CLIs' context blocks removed."""
    kept = []
    for text in texts:
        if text.lstrip().startswith(_AGENTS_MD_PREFIX):
            continue
        stripped = _WRAPPER_BLOCKS.sub("", text).strip()
        if stripped and not _INTERRUPTED.match(stripped):
            kept.append(stripped)
    return "\n".join(kept)


def detect_cwd(texts: list[str]) -> str | None:
    """The agent's working directory, as the CLIs state it (the latest statement wins).

    codex: ``<cwd>/abs/path</cwd>`` inside the ``<environment_context>`` user message.
    Claude Code: a `` - Primary working directory: /abs/path`` line in the ``# Environment``
    ``<system-reminder>`` of the first user message (older versions put ``Working directory:
    /abs/path`` in an ``<env>`` block of the system prompt).
    """
    for pattern in (_CODEX_CWD, *_CLAUDE_CWD):
        for text in reversed(texts):
            found = pattern.findall(text)
            if found:
                return str(found[-1])
    return None


def _count_turns(is_model: list[bool]) -> int:
    """How many model turns a history holds: runs of consecutive model-made items."""
    count, previous = 0, False
    for flag in is_model:
        if flag and not previous:
            count += 1
        previous = flag
    return count


def _anthropic_texts(content: Any) -> list[str]:
    if isinstance(content, str):
        return [content]
    if isinstance(content, list):
        return [
            str(block.get("text", ""))
            for block in content
            if isinstance(block, dict) and block.get("type") == "text"
        ]
    return []


def _anthropic_position(body: Mapping[str, Any]) -> tuple[str | None, int, str | None]:
    messages = [m for m in body.get("messages") or [] if isinstance(m, dict)]
    prompt: str | None = None
    start = 0
    for i, message in enumerate(messages):
        if message.get("role") == "user":
            text = _prompt_text(_anthropic_texts(message.get("content")))
            if text:
                prompt, start = text, i + 1
    step = _count_turns([m.get("role") == "assistant" for m in messages[start:]])
    texts = _anthropic_texts(body.get("system"))
    for message in messages:
        if message.get("role") == "user":
            texts.extend(_anthropic_texts(message.get("content")))
    return prompt, step, detect_cwd(texts)


_OPENAI_MODEL_ITEMS = frozenset(
    {
        "function_call",
        "custom_tool_call",
        "reasoning",
        "local_shell_call",
        "web_search_call",
        "tool_search_call",
    }
)


def _openai_texts(item: Mapping[str, Any]) -> list[str]:
    content = item.get("content")
    if isinstance(content, str):
        return [content]
    if isinstance(content, list):
        return [
            str(part.get("text", ""))
            for part in content
            if isinstance(part, dict) and isinstance(part.get("text"), str)
        ]
    return []


def _openai_position(body: Mapping[str, Any]) -> tuple[str | None, int, str | None]:
    raw = body.get("input")
    if isinstance(raw, str):
        return raw, 0, detect_cwd([raw])
    items = [i for i in raw or [] if isinstance(i, dict)]
    prompt: str | None = None
    start = 0
    for i, item in enumerate(items):
        if item.get("type", "message") == "message" and item.get("role") == "user":
            text = _prompt_text(_openai_texts(item))
            if text:
                prompt, start = text, i + 1

    def is_model(item: Mapping[str, Any]) -> bool:
        kind = item.get("type", "message")
        return kind in _OPENAI_MODEL_ITEMS or (
            kind == "message" and item.get("role") == "assistant"
        )

    step = _count_turns([is_model(i) for i in items[start:]])
    texts: list[str] = []
    if isinstance(body.get("instructions"), str):
        texts.append(body["instructions"])
    for item in items:
        if item.get("role") in ("user", "developer", "system"):
            texts.extend(_openai_texts(item))
    return prompt, step, detect_cwd(texts)


# --------------------------------------------------------------------------- responses

SSE = list[tuple[str, dict[str, Any]]]


def _new_id(prefix: str) -> str:
    return prefix + uuid.uuid4().hex[:24]


def _estimate_tokens(value: Any) -> int:
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
            "input_tokens": _estimate_tokens(body.get("messages")),
            "output_tokens": _estimate_tokens(content),
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 0,
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
    input_tokens = _estimate_tokens(body.get("input"))
    output_tokens = _estimate_tokens(output)
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
        elif kind == "function_call":
            add(
                "response.output_item.added",
                output_index=index,
                item={**item, "arguments": "", "status": "in_progress"},
            )
            where = {"item_id": item["id"], "output_index": index}
            add("response.function_call_arguments.delta", **where, delta=item["arguments"])
            add("response.function_call_arguments.done", **where, arguments=item["arguments"])
        elif kind == "custom_tool_call":
            add(
                "response.output_item.added",
                output_index=index,
                item={**item, "input": "", "status": "in_progress"},
            )
            where = {"item_id": item["id"], "output_index": index}
            add("response.custom_tool_call_input.delta", **where, delta=item["input"])
            add("response.custom_tool_call_input.done", **where, input=item["input"])
        else:
            add("response.output_item.added", output_index=index, item=item)
        add("response.output_item.done", output_index=index, item=item)
    add("response.completed", response=response)
    return events


# --------------------------------------------------------------------------- the server


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128
    model: ScriptedModelServer


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    timeout = _IDLE_TIMEOUT
    server: _HTTPServer
    server_version = "ScriptedModel/1"

    def setup(self) -> None:
        super().setup()
        self.server.model._track(self.connection, True)

    def finish(self) -> None:
        self.server.model._track(self.connection, False)
        with contextlib.suppress(OSError):
            super().finish()

    def log_message(self, format: str, *args: Any) -> None:
        pass  # requests are in the request log; ``echo`` prints one line each

    def do_GET(self) -> None:
        path = urlsplit(self.path).path
        model = self.server.model
        if path == "/_health":
            self._send_json(200, {"ok": True})
        elif path == "/_requests":
            self._send_json(200, model.requests)
        else:
            self._send_json(404, {"error": {"message": f"no route GET {path}"}})

    def do_DELETE(self) -> None:
        if urlsplit(self.path).path == "/_requests":
            self._send_json(200, {"cleared": self.server.model.clear_requests()})
        else:
            self._send_json(404, {"error": {"message": f"no route DELETE {self.path}"}})

    def do_POST(self) -> None:
        path = urlsplit(self.path).path.rstrip("/")
        try:
            raw = self._read_body()
            body = json.loads(raw) if raw else {}
        except (ValueError, OSError) as exc:
            self._send_json(400, {"error": {"message": f"bad request body: {exc}"}})
            return
        if not isinstance(body, dict):
            self._send_json(400, {"error": {"message": "the body is not a JSON object"}})
            return
        model = self.server.model
        try:
            if path == "/_script":
                model.set_script(body)
                self._send_json(200, {"ok": True})
            elif path == "/v1/messages/count_tokens":
                model._record(
                    self.path, "anthropic-count-tokens", body, None, 200, dict(self.headers.items())
                )
                self._send_json(200, {"input_tokens": _estimate_tokens(body)})
            elif path == "/v1/messages":
                self._answer(ANTHROPIC, body)
            elif path in ("/v1/responses", "/responses"):
                self._answer(OPENAI, body)
            else:
                self._send_json(404, {"error": {"message": f"no route POST {path}"}})
        except ScriptError as exc:
            self._send_json(400, {"error": {"message": str(exc)}})
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    def _answer(self, api: str, body: dict[str, Any]) -> None:
        model = self.server.model
        plan = plan_request(model.script, api, body)
        turn = plan.turn
        status = int(turn.get("status") or 200)
        model._record(self.path, api, body, plan, status, dict(self.headers.items()))
        delay = float(turn.get("delay") or 0)
        if delay > 0 and not model._sleep(delay):
            self.close_connection = True
            return
        name = str(body.get("model") or "scripted-model")
        if status >= 400:
            message = str(turn.get("error") or f"scripted HTTP {status}")
            error = (
                anthropic_error(status, message)
                if api == ANTHROPIC
                else openai_error(status, message)
            )
            self._send_json(status, error)
            return
        if api == ANTHROPIC:
            message_obj = anthropic_message(plan, name, body)
            if body.get("stream"):
                self._send_sse(anthropic_stream(message_obj))
            else:
                self._send_json(200, message_obj)
        else:
            response = openai_response(openai_output(plan), name, body)
            if body.get("stream", True):
                self._send_sse(openai_stream(response))
            else:
                self._send_json(200, response)

    def _read_body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            raw = b""
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline().strip():
                        pass  # trailers
                    break
                raw += self.rfile.read(size)
                self.rfile.readline()
        else:
            raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        encoding = self.headers.get("Content-Encoding", "").lower()
        if encoding == "gzip":
            raw = gzip.decompress(raw)
        elif encoding == "deflate":
            raw = zlib.decompress(raw)
        elif encoding not in ("", "identity"):
            raise ValueError(f"unsupported Content-Encoding {encoding!r}")
        return raw

    def _send_json(self, status: int, payload: Any) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _send_sse(self, events: SSE) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream; charset=utf-8")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        for kind, data in events:
            chunk = f"event: {kind}\ndata: {json.dumps(data)}\n\n".encode()
            self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
        self.wfile.write(b"0\r\n\r\n")


class ScriptedModelServer:
    """The scripted model on an HTTP server in a background thread.

    ``with ScriptedModelServer(script) as server:`` gives ``server.url`` (the Anthropic base
    URL; codex's provider ``base_url`` is ``server.url + "/v1"``) and ``server.requests``.
    """

    def __init__(
        self,
        script: Mapping[str, Any] | Path | str,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        echo: Callable[[str], None] | None = None,
    ) -> None:
        self._script = load_script(script)
        self._lock = threading.Lock()
        self._requests: list[dict[str, Any]] = []
        self._connections: set[socket.socket] = set()
        self._stopping = threading.Event()
        self._echo = echo
        self._thread: threading.Thread | None = None
        self._httpd = _HTTPServer((host, port), _Handler)
        self._httpd.model = self

    # -- public surface

    @property
    def host(self) -> str:
        return str(self._httpd.server_address[0])

    @property
    def port(self) -> int:
        return int(self._httpd.server_address[1])

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def script(self) -> dict[str, Any]:
        return self._script

    def set_script(self, script: Mapping[str, Any] | Path | str) -> None:
        """Replace the script (the request log is kept)."""
        self._script = load_script(script)

    @property
    def requests(self) -> list[dict[str, Any]]:
        """Every request received so far, oldest first (a copy)."""
        with self._lock:
            return list(self._requests)

    def clear_requests(self) -> int:
        with self._lock:
            count = len(self._requests)
            self._requests.clear()
            return count

    def start(self) -> ScriptedModelServer:
        """Serve in a background thread; returns at once."""
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._httpd.serve_forever,
                args=(_POLL_SECONDS,),
                name=f"scripted-model:{self.port}",
                daemon=True,
            )
            self._thread.start()
        return self

    def serve_forever(self) -> None:
        """Serve in this thread until ``stop()`` (from another thread) or Ctrl-C."""
        try:
            self._httpd.serve_forever(_POLL_SECONDS)
        finally:
            self._close()

    def stop(self) -> None:
        """Stop serving, drop open connections and wake delayed answers."""
        self._stopping.set()
        if self._thread is not None:
            self._httpd.shutdown()
            self._thread.join(timeout=5)
            self._thread = None
        self._close()

    def __enter__(self) -> ScriptedModelServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- used by the handler

    def _close(self) -> None:
        self._stopping.set()
        with self._lock:
            connections = list(self._connections)
        for conn in connections:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        self._httpd.server_close()

    def _track(self, conn: socket.socket, alive: bool) -> None:
        with self._lock:
            if alive:
                self._connections.add(conn)
            else:
                self._connections.discard(conn)

    def _sleep(self, seconds: float) -> bool:
        """Wait (without holding up other requests); False if the server stopped meanwhile."""
        return not self._stopping.wait(seconds)

    def _record(
        self,
        path: str,
        api: str,
        body: dict[str, Any],
        plan: Plan | None,
        status: int,
        headers: Mapping[str, str],
    ) -> None:
        entry: dict[str, Any] = {
            "time": time.time(),
            "method": "POST",
            "path": path,
            "api": api,
            "model": body.get("model"),
            "scenario": plan.scenario if plan else None,
            "step": plan.step if plan else None,
            "side": plan.side if plan else False,
            "prompt": plan.prompt if plan else None,
            "cwd": plan.cwd if plan else None,
            "status": status,
            "headers": {k.lower(): v for k, v in headers.items()},
            "body": body,
        }
        with self._lock:
            entry["index"] = len(self._requests)
            self._requests.append(entry)
        if self._echo is not None:
            where = (
                "side request"
                if entry["side"]
                else (f"scenario {entry['scenario']} step {entry['step']}")
            )
            self._echo(f"{api} {path} model={entry['model']} -> {where} (HTTP {status})")


def serve(script_path: Path, host: str, port: int) -> None:
    """Serve ``script_path`` on ``host:port`` until interrupted (the CLI's ``scripted-model``)."""

    def echo(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    server = ScriptedModelServer(script_path, host, port, echo=echo)
    print(
        f"Scripted model on {server.url}\n"
        f"  Claude: ANTHROPIC_BASE_URL={server.url} ANTHROPIC_API_KEY=any\n"
        f"  Codex:  provider base_url={server.url}/v1 wire_api=responses\n"
        f"  Log:    GET {server.url}/_requests",
        file=sys.stderr,
        flush=True,
    )
    with contextlib.suppress(KeyboardInterrupt):
        server.serve_forever()


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
