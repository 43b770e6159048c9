"""The FastAPI application factory."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from fastapi.responses import JSONResponse
from starlette.types import ASGIApp

from agentyard import __version__
from agentyard.api import agent, agents, errors, files, git, groups, openapi, tasks, webhooks
from agentyard.api.body import BodyLimit
from agentyard.api.headers import HeaderLimit
from agentyard.server import Agentyard
from agentyard.settings import Settings
from agentyard.web import install as web


def create_app(settings: Settings, *, run_workers: bool = True) -> ASGIApp:
    yard = Agentyard(settings, run_workers=run_workers)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await yard.start()
        try:
            yield
        finally:
            await yard.stop()

    app = FastAPI(
        title="Agentyard",
        version=__version__,
        lifespan=lifespan,
        redirect_slashes=False,
        # /docs and /redoc are served by openapi.install, from packaged assets (no CDN).
        docs_url=None,
        redoc_url=None,
    )
    app.state.yard = yard
    errors.install(app)
    app.include_router(files.router)
    app.include_router(tasks.router)
    app.include_router(agent.router)
    app.include_router(agents.router)
    app.include_router(git.router)
    app.include_router(groups.router)
    app.include_router(webhooks.router)
    openapi.install(app)
    web.install(app, yard)  # the dashboard under / (its routes stay out of the OpenAPI)

    @app.get("/healthz")
    async def healthz() -> dict[str, Any]:
        return {"ok": True, "version": __version__}

    @app.get("/readyz")
    async def readyz() -> Any:
        described = yard.sandbox.describe()
        state = await yard.ready()  # false while the database or a slot/worker is down
        body = {**state, "version": __version__, "sandbox": described["sandbox"]}
        return JSONResponse(body, status_code=200 if state["ready"] else 503)

    # Outermost first: headers are capped before anything reads them, bodies by their route.
    bodies = BodyLimit(app, settings.max_body_bytes, settings.max_upload_bytes)
    return HeaderLimit(bodies, settings.max_header_count, settings.max_header_bytes)
