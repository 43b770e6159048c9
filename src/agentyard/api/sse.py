"""Server-sent events: ``id: <seq>`` frames from the event log, keep-alives, resume.

Every event ready for a subscriber goes out in one write (a subscriber behind catches up in
one, not one per frame), and the body's writes go to the HTTP server's own ``send``
(:data:`RAW_SEND`): the middlewares between look only at the response's start, and would
otherwise each take a turn at every frame of every subscriber.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

from fastapi import Request
from fastapi.responses import Response, StreamingResponse
from starlette.types import Receive, Scope, Send

from agentyard.api.headers import RAW_SEND
from agentyard.core import events as ev
from agentyard.core.errors import InvalidInput
from agentyard.core.models import Run
from agentyard.service import Service

HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no", "Connection": "keep-alive"}


MAX_SEQ = 2**31 - 1
SHUTDOWN_COMMENT = b": server shutting down; reconnect\n\n"
KEEPALIVE_COMMENT = b": keep-alive\n\n"


class EventStream(StreamingResponse):
    """A streaming response whose start goes through the middlewares (the access log sees
    its status) and whose body goes straight to the connection. The HTTP server's ``send``
    still waits while the client's socket is full, so a slow client is never buffered for."""

    _raw_send: Send | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        self._raw_send = scope.get(RAW_SEND)
        await super().__call__(scope, receive, send)

    async def stream_response(self, send: Send) -> None:
        await send(
            {"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers}
        )
        raw: Send = self._raw_send or send
        async for chunk in self.body_iterator:
            data = chunk if isinstance(chunk, bytes) else str(chunk).encode()
            await raw({"type": "http.response.body", "body": data, "more_body": True})
        await raw({"type": "http.response.body", "body": b"", "more_body": False})


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

    async def body() -> AsyncIterator[bytes]:
        if hello is not None:
            yield frame(hello).encode()
        finished = False
        async for batch in service.follow_batches(run.run_id, after, keepalive):
            if batch is None:
                yield KEEPALIVE_COMMENT
                continue
            finished = batch[-1].type == ev.FINISH
            frames = [i.frame for i in batch if include_deltas or i.type != ev.TEXT_DELTA]
            if frames:
                yield b"".join(frames)
        if not finished:
            # The server is shutting down: a clean end, so that the client reconnects
            # (with Last-Event-ID) to this or another server.
            yield SHUTDOWN_COMMENT

    return EventStream(body(), media_type="text/event-stream", headers=HEADERS)
