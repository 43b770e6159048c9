"""The FastAPI application factory."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from starlette.types import ASGIApp

from agentyard import __version__
from agentyard.api import agent, agents, errors, files, git, groups, openapi, ops, tasks, webhooks
from agentyard.api.access import AccessLog
from agentyard.api.body import BodyLimit
from agentyard.api.fastpath import StatusFastPath
from agentyard.api.headers import HeaderLimit
from agentyard.server import Agentyard
from agentyard.settings import Settings
from agentyard.web import install as web


def create_app(
    settings: Settings, *, run_workers: bool = True, yard: Agentyard | None = None
) -> ASGIApp:
    """The ASGI application over ``yard`` (default: a new Agentyard of ``settings``)."""
    yard = yard or Agentyard(settings, run_workers=run_workers)

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
    app.include_router(ops.router)
    openapi.install(app)
    web.install(app, yard)  # the dashboard under / (its routes stay out of the OpenAPI)
    # Outermost first: headers are capped before anything reads them, bodies by their
    # route; every request is logged; the polled status is answered before the framework.
    logged = AccessLog(StatusFastPath(app, yard=yard), metrics=yard.metrics)
    bodies = BodyLimit(logged, settings.max_body_bytes, settings.max_upload_bytes)
    return HeaderLimit(bodies, settings.max_header_count, settings.max_header_bytes)
