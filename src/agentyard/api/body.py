"""Request bodies: JSON parsing, size limit, and text no database can store."""

from __future__ import annotations

import json
from typing import Any

from fastapi import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from agentyard.api.errors import error_response
from agentyard.core.errors import InvalidInput, PayloadTooLarge


async def json_object(request: Request) -> dict[str, Any]:
    """The request's JSON object, or a 400 that says what is wrong with it."""
    raw = await request.body()
    if not raw.strip():
        raise InvalidInput("request body must be a JSON object")
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidInput(f"invalid JSON body: {exc}") from None
    if not isinstance(data, dict):
        raise InvalidInput("request body must be a JSON object")
    check_storable(data)
    return data


def check_storable(value: Any, where: str = "body") -> None:
    """Reject text that neither SQLite nor PostgreSQL can store faithfully."""
    if isinstance(value, str):
        if "\x00" in value:
            raise InvalidInput(f"{where} contains a NUL character")
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise InvalidInput(f"{where} contains a lone surrogate (invalid Unicode)") from None
    elif isinstance(value, dict):
        for key, item in value.items():
            check_storable(key, where)
            check_storable(item, f"{where}.{key}" if where != "body" else str(key))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            check_storable(item, f"{where}[{i}]")


def optional_str(data: dict[str, Any], name: str, *, max_len: int | None = None) -> str | None:
    value = data.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidInput(f"'{name}' must be a string")
    if max_len is not None and len(value) > max_len:
        raise InvalidInput(f"'{name}' must be at most {max_len} characters")
    return value


def prompt_of(data: dict[str, Any], *names: str) -> str:
    for name in names:
        value = optional_str(data, name)
        if value is not None and value.strip():
            return value
    raise InvalidInput(f"'{names[0]}'" + "".join(f" or '{n}'" for n in names[1:]) + " is required")


class BodyLimit:
    """413 for a request body over the limit, by Content-Length or as it streams in."""

    def __init__(self, app: ASGIApp, max_bytes: int, upload_max_bytes: int) -> None:
        self.app = app
        self.default_max = max_bytes
        self.upload_max = upload_max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        # Workspace file uploads and writes may be larger than API bodies.
        limit = self.upload_max if "/files/" in scope.get("path", "") else self.default_max
        for name, value in scope.get("headers", []):
            if name == b"content-length" and value.isdigit() and int(value) > limit:
                await self._reject(scope, receive, send, limit)
                return
        seen = 0

        async def limited() -> Message:
            # Raised inside the app, so the error mapping answers 413 like any domain error.
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise PayloadTooLarge(f"request body exceeds {limit} bytes")
            return message

        await self.app(scope, limited, send)

    async def _reject(self, scope: Scope, receive: Receive, send: Send, limit: int) -> None:
        response = error_response(413, f"request body exceeds {limit} bytes")
        await response(scope, receive, send)
