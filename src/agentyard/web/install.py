"""Mounting the dashboard on the API's FastAPI application."""

from __future__ import annotations

import hashlib
from pathlib import Path

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from agentyard.server import Agentyard
from agentyard.web import account, groups, render, tasks
from agentyard.web.session import Sessions

STATIC = Path(__file__).parent / "static"

CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
_API_PREFIXES = ("/api/", "/docs", "/redoc", "/openapi.json", "/healthz", "/readyz")


class DashboardHeaders:
    """A strict Content-Security-Policy (no inline script, nothing from elsewhere) and
    no framing on every dashboard response; the JSON API's responses are left as they are."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] != "http" or path.startswith(_API_PREFIXES):
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers += [
                    (b"content-security-policy", CSP.encode()),
                    (b"x-frame-options", b"DENY"),
                    (b"x-content-type-options", b"nosniff"),
                    (b"referrer-policy", b"same-origin"),
                ]
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, with_headers)


def asset_urls() -> dict[str, str]:
    """``/static/<name>?v=<digest>``: a browser never keeps an old script for a new page."""
    return {
        path.name: f"/static/{path.name}?v={hashlib.sha256(path.read_bytes()).hexdigest()[:12]}"
        for path in STATIC.iterdir()
        if path.is_file()
    }


def install(app: FastAPI, yard: Agentyard) -> None:
    app.state.web_sessions = Sessions(
        yard.git.box.derive("dashboard-session"), yard.settings.session_hours * 3600
    )
    templates = render.environment()
    templates.globals["assets"] = asset_urls()
    app.state.web_templates = templates
    app.include_router(account.router)
    app.include_router(tasks.router)
    app.include_router(groups.router)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    app.add_middleware(DashboardHeaders)
