"""Server-sent events: ``id: <seq>`` frames from the event log, keep-alives, resume."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

from fastapi import Request
from fastapi.responses import Response, StreamingResponse

from agentyard.core import events as ev
from agentyard.core.errors import InvalidInput
from agentyard.core.models import Run
from agentyard.service import Service

HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no", "Connection": "keep-alive"}


MAX_SEQ = 2**31 - 1
SHUTDOWN_COMMENT = ": server shutting down; reconnect\n\n"


def resume_point(request: Request, after: int | None) -> int:
    """Where a stream starts: ``?after=N`` or the ``Last-Event-ID`` header, else 0."""
    if after is not None:
        if not 0 <= after <= MAX_SEQ:
            raise InvalidInput(f"'after' must be between 0 and {MAX_SEQ}")
        return after
    header = request.headers.get("last-event-id")
    if header is None or not header.strip():
        return 0
    try:
        value = int(header.strip())
    except ValueError:
        raise InvalidInput("Last-Event-ID must be an integer event id") from None
    if not 0 <= value <= MAX_SEQ:
        raise InvalidInput(f"Last-Event-ID must be between 0 and {MAX_SEQ}")
    return value


def frame(data: dict[str, Any], seq: int | None = None) -> str:
    head = f"id: {seq}\n" if seq is not None else ""
    return f"{head}data: {json.dumps(data, separators=(',', ':'))}\n\n"


def stream(
    service: Service,
    run: Run,
    after: int,
    keepalive: float,
    include_deltas: bool = True,
    hello: dict[str, Any] | None = None,
) -> Response:
    # A finished run whose client already holds the last event: nothing more will ever come,
    # and 204 tells an EventSource to stop reconnecting.
    if run.status.terminal and after >= run.event_seq:
        return Response(status_code=204)

    async def body() -> AsyncIterator[str]:
        if hello is not None:
            yield frame(hello)
        finished = False
        async for item in service.follow(run.run_id, after, keepalive):
            if item is None:
                yield ": keep-alive\n\n"
                continue
            finished = item.type == ev.FINISH
            if include_deltas or item.type != ev.TEXT_DELTA:
                yield f"id: {item.seq}\ndata: {item.json}\n\n"
        if not finished:
            # The server is shutting down: a clean end, so that the client reconnects
            # (with Last-Event-ID) to this or another server.
            yield SHUTDOWN_COMMENT

    return StreamingResponse(body(), media_type="text/event-stream", headers=HEADERS)
