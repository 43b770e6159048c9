"""The scripted model's Gemini API (``generateContent``, ``streamGenerateContent?alt=sse``):
where a request stands in its script, and the answers as JSON, SSE and error bodies.

A Gemini conversation is ``contents: [{role: "user" | "model", parts: [...]}]``; a part is
``text`` (``thought: true`` for reasoning), ``functionCall`` or ``functionResponse``. The
prompt is the latest user content with real text (the CLI's ``<session_context>`` removed),
the step the number of model turns since it, as for the other two APIs.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from collections.abc import Mapping
from typing import Any

from agentyard.testing.model_script import (
    FINAL_TEXT,
    Plan,
    count_turns,
    detect_cwd,
    prompt_text,
)
from agentyard.testing.model_wire import SSE, estimate_tokens

ROUTE = re.compile(r"^/v1(?:beta|alpha)?/models/([^/:]+):(generateContent|streamGenerateContent)$")
"""A Gemini model request's path: the model and the method."""

_STATUS = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    503: "UNAVAILABLE",
}

BAD_KEY = "API key not valid. Please pass a valid API key."
"""What the Gemini API answers (HTTP 400) to a key it does not know."""

_JSON_ANSWER = {
    "next_speaker": "user",
    "reasoning": "scripted",
    "complexity_score": 10,
    "complexity_reasoning": "scripted",
    "model_choice": "flash",
}
"""The answer to the CLI's own JSON side requests (routing, next-speaker checks)."""


def _texts(content: Mapping[str, Any]) -> list[str]:
    return [
        str(part["text"])
        for part in content.get("parts") or []
        if isinstance(part, dict) and isinstance(part.get("text"), str) and not part.get("thought")
    ]


def position(body: Mapping[str, Any]) -> tuple[str | None, int, str | None]:
    """(the prompt, the step, the agent's working directory) of a request body."""
    contents = [c for c in body.get("contents") or [] if isinstance(c, dict)]
    prompt: str | None = None
    start = 0
    texts: list[str] = []
    for i, content in enumerate(contents):
        if content.get("role", "user") == "user":
            texts.extend(_texts(content))
            text = prompt_text(_texts(content))
            if text:
                prompt, start = text, i + 1
    step = count_turns([c.get("role") == "model" for c in contents[start:]])
    return prompt, step, detect_cwd(texts)


def wants_json(body: Mapping[str, Any]) -> bool:
    config = body.get("generationConfig")
    return isinstance(config, dict) and config.get("responseMimeType") == "application/json"


def side_answer(body: Mapping[str, Any]) -> str:
    return json.dumps(_JSON_ANSWER) if wants_json(body) else ""


def error(status: int, message: str) -> dict[str, Any]:
    return {"error": {"code": status, "message": message, "status": _STATUS.get(status, "UNKNOWN")}}


def response(plan: Plan, model: str, body: Mapping[str, Any]) -> dict[str, Any]:
    """The whole answer (the non-streaming form)."""
    turn = plan.turn
    parts: list[dict[str, Any]] = []
    if turn.get("thinking"):
        parts.append({"text": turn["thinking"], "thought": True})
    if turn.get("text"):
        parts.append({"text": turn["text"]})
    for call in turn.get("tool_calls") or []:
        if isinstance(call, dict):
            args = call.get("input")
            parts.append(
                {
                    "functionCall": {
                        "id": "call_" + uuid.uuid4().hex[:12],
                        "name": call["name"],
                        "args": args if isinstance(args, dict) else {},
                    }
                }
            )
    if not parts:
        parts.append({"text": FINAL_TEXT})
    prompt_tokens = estimate_tokens(body.get("contents"))
    output_tokens = estimate_tokens(parts)
    return {
        "candidates": [
            {"content": {"role": "model", "parts": parts}, "finishReason": "STOP", "index": 0}
        ],
        "usageMetadata": {
            "promptTokenCount": prompt_tokens,
            "candidatesTokenCount": output_tokens,
            "totalTokenCount": prompt_tokens + output_tokens,
        },
        "modelVersion": model,
        "responseId": "resp_" + uuid.uuid4().hex[:16],
        "createTime": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def stream(answer: Mapping[str, Any]) -> SSE:
    """One SSE ``data:`` frame per part; the last carries the finish reason and usage."""
    candidate = answer["candidates"][0]
    parts = candidate["content"]["parts"]
    frames: SSE = []
    for i, part in enumerate(parts):
        chunk: dict[str, Any] = {
            "candidates": [{"content": {"role": "model", "parts": [part]}, "index": 0}],
            "modelVersion": answer["modelVersion"],
            "responseId": answer["responseId"],
        }
        if i == len(parts) - 1:
            chunk["candidates"][0]["finishReason"] = candidate["finishReason"]
            chunk["usageMetadata"] = answer["usageMetadata"]
        frames.append(("", chunk))
    return frames
