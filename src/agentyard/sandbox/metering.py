"""What a model response used, read off the bytes the model proxy relays.

Streamed (server-sent events) and whole JSON responses alike, for the three wire formats
the proxy routes: Anthropic Messages (``message_start`` / ``message_delta`` usage), OpenAI
Responses (``response.completed``) and Gemini (``usageMetadata``, cumulative per chunk).
Only lines that mention usage are parsed, so relaying stays cheap.
"""

from __future__ import annotations

import json
from typing import Any

_MAX_LINE = 1_048_576
_MARKERS = (b'"usage"', b'"usageMetadata"')


class UsageTap:
    """Fed the response body as it passes; ``result()`` is its token counts, if any."""

    def __init__(self, route: str) -> None:
        self.route = route
        self.model: str | None = None
        self.input_tokens = 0
        self.cached_tokens = 0
        self.output_tokens = 0
        self.seen = False
        self._partial = bytearray()

    def feed(self, chunk: bytes) -> None:
        self._partial += chunk
        if b"\n" not in chunk:
            if len(self._partial) > _MAX_LINE:
                self._partial.clear()  # no usage line is this long: not worth holding
            return
        *lines, rest = bytes(self._partial).split(b"\n")
        self._partial = bytearray(rest)
        for line in lines:
            self._line(line)

    def close(self) -> None:
        if self._partial:
            self._line(bytes(self._partial))
            self._partial.clear()

    def result(self) -> tuple[str | None, dict[str, int]] | None:
        if not self.seen:
            return None
        return self.model, {
            "inputTokens": self.input_tokens,
            "cachedInputTokens": self.cached_tokens,
            "outputTokens": self.output_tokens,
        }

    def _line(self, line: bytes) -> None:
        if not any(marker in line for marker in _MARKERS):
            return
        text = line.strip()
        if text.startswith(b"data:"):
            text = text[5:].strip()
        try:
            data = json.loads(text)
        except ValueError:
            return
        if isinstance(data, dict):
            self._read(data)

    def _read(self, data: dict[str, Any]) -> None:
        kind = data.get("type")
        if kind == "message_start" and isinstance(data.get("message"), dict):
            message = data["message"]
            self._model(message.get("model"))
            self._anthropic(message.get("usage"))
        elif kind == "message_delta":
            self._anthropic(data.get("usage"))
        elif kind == "response.completed" and isinstance(data.get("response"), dict):
            response = data["response"]
            self._model(response.get("model"))
            self._openai(response.get("usage"))
        elif isinstance(data.get("usageMetadata"), dict):
            self._model(data.get("modelVersion"))
            meta = data["usageMetadata"]
            self.seen = True
            self.input_tokens = _int(meta.get("promptTokenCount"))
            self.cached_tokens = _int(meta.get("cachedContentTokenCount"))
            self.output_tokens = _int(meta.get("candidatesTokenCount")) + _int(
                meta.get("thoughtsTokenCount")
            )
        elif isinstance(data.get("usage"), dict):  # a whole (not streamed) response
            self._model(data.get("model"))
            if self.route == "anthropic":
                self._anthropic(data["usage"])
            else:
                self._openai(data["usage"])

    def _model(self, value: Any) -> None:
        if isinstance(value, str) and value:
            self.model = value

    def _anthropic(self, usage: Any) -> None:
        if not isinstance(usage, dict):
            return
        self.seen = True
        cached = _int(usage.get("cache_read_input_tokens"))
        fresh = _int(usage.get("input_tokens")) + _int(usage.get("cache_creation_input_tokens"))
        if "input_tokens" in usage or "cache_read_input_tokens" in usage:
            self.input_tokens = fresh + cached
            self.cached_tokens = cached
        if "output_tokens" in usage:
            # message_delta's count is the message's total so far.
            self.output_tokens = _int(usage.get("output_tokens"))

    def _openai(self, usage: Any) -> None:
        if not isinstance(usage, dict):
            return
        self.seen = True
        self.input_tokens = _int(usage.get("input_tokens", usage.get("prompt_tokens")))
        details = usage.get("input_tokens_details") or usage.get("prompt_tokens_details") or {}
        self.cached_tokens = _int(details.get("cached_tokens")) if isinstance(details, dict) else 0
        self.output_tokens = _int(usage.get("output_tokens", usage.get("completion_tokens")))


def _int(value: Any) -> int:
    return max(0, int(value)) if isinstance(value, (int, float)) else 0
