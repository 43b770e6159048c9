"""A cap on a request's headers, before authentication or routing sees them."""

from __future__ import annotations

from starlette.types import ASGIApp, Receive, Scope, Send

from agentyard.api.errors import error_response

RAW_SEND = "agentyard.raw_send"
"""Scope key of the HTTP server's own ``send`` (set here, outermost): an event stream's
body goes straight to it (``agentyard.api.sse``)."""


class HeaderLimit:
    """431 for a request with more headers, or more header bytes, than allowed.

    The HTTP server parses headers without a bound of its own (httptools), and everything
    after this (authentication, routing, the error mapping) walks them: the outermost layer
    refuses a request whose headers are out of proportion before any of that runs.
    """

    def __init__(self, app: ASGIApp, max_count: int, max_bytes: int) -> None:
        self.app = app
        self.max_count = max_count
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            scope[RAW_SEND] = send  # event streams write their bodies straight to it
            headers = scope.get("headers", [])
            problem = None
            if len(headers) > self.max_count:
                problem = f"more than {self.max_count} request headers"
            elif sum(len(name) + len(value) for name, value in headers) > self.max_bytes:
                problem = f"request headers exceed {self.max_bytes} bytes"
            if problem is not None:
                await error_response(431, problem)(scope, receive, send)
                return
        await self.app(scope, receive, send)
