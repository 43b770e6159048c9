"""Request bodies: JSON parsing, size limits per route, and text no database can store."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, TypeVar

from fastapi import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from agentyard.core.errors import InvalidInput, PayloadTooLarge

MAX_JSON_DEPTH = 64
"""How deeply a request's JSON may nest: no body the API takes comes near it, and walking a
deeper one (here or in the database driver) would exhaust the stack."""

F = TypeVar("F", bound=Callable[..., Any])
_BODY_LIMIT = "_agentyard_body_limit"
_UPLOAD = "upload"


def upload_body(endpoint: F) -> F:
    """Declares a route whose body is a file upload: it may be as large as
    ``max_upload_bytes``; every other route's body is held to ``max_body_bytes``."""
    setattr(endpoint, _BODY_LIMIT, _UPLOAD)
    return endpoint


async def json_object(request: Request) -> dict[str, Any]:
    """The request's JSON object, or a 400 that says what is wrong with it."""
    raw = await request.body()
    if not raw.strip():
        raise InvalidInput("request body must be a JSON object")
    try:
        data = json.loads(raw)
    except RecursionError:
        raise InvalidInput(_too_deep()) from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidInput(f"invalid JSON body: {exc}") from None
    if not isinstance(data, dict):
        raise InvalidInput("request body must be a JSON object")
    if _depth(data) > MAX_JSON_DEPTH:
        raise InvalidInput(_too_deep())
    check_storable(data)
    return data


def _too_deep() -> str:
    return f"invalid JSON body: nested deeper than {MAX_JSON_DEPTH} levels"


def _depth(value: Any) -> int:
    """How deeply ``value`` nests (a scalar is 0), without recursion; stops counting past
    the limit."""
    deepest = 0
    pending: list[tuple[Any, int]] = [(value, 0)]
    while pending:
        item, level = pending.pop()
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        level += 1
        deepest = max(deepest, level)
        if deepest > MAX_JSON_DEPTH:
            break
        pending.extend((child, level) for child in children)
    return deepest


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
    """413 for a request body over its route's limit, by Content-Length or as it streams in.

    The limit is the one the resolved route declares (:func:`upload_body`): a body is first
    read by the route's handler, after routing has put the route's endpoint in the scope, so
    the limit is looked up then, never guessed from what the path contains. Content-Length
    is checked before anything is read, then the chunks are counted as they arrive.
    """

    def __init__(self, app: ASGIApp, max_bytes: int, upload_max_bytes: int) -> None:
        self.app = app
        self.default_max = max_bytes
        self.upload_max = upload_max_bytes

    def limit(self, scope: Scope) -> int:
        declared = getattr(scope.get("endpoint"), _BODY_LIMIT, None)
        return self.upload_max if declared == _UPLOAD else self.default_max

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = _content_length(scope)
        seen = 0
        limit: int | None = None

        async def limited() -> Message:
            # Raised inside the app, so the error mapping answers 413 like any domain error.
            nonlocal seen, limit
            if limit is None:
                limit = self.limit(scope)
                if length is not None and length > limit:
                    raise PayloadTooLarge(f"request body exceeds {limit} bytes")
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise PayloadTooLarge(f"request body exceeds {limit} bytes")
            return message

        await self.app(scope, limited, send)


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", []):
        if name == b"content-length" and value.isdigit():
            return int(value)
    return None
