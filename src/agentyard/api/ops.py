"""Operations endpoints, all without an API key: ``/healthz`` (the process answers),
``/readyz`` (it can serve: 503 otherwise, for load balancers) and ``/metrics``
(Prometheus text, behind ``AGENTYARD_METRICS_TOKEN`` when that is set)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from agentyard import __version__
from agentyard.api.auth import yard
from agentyard.api.errors import error_response
from agentyard.core import apikeys
from agentyard.metrics import CONTENT_TYPE

router = APIRouter()


@router.get("/healthz")
async def healthz() -> dict[str, Any]:
    return {"ok": True, "version": __version__}


@router.get("/readyz")
async def readyz(request: Request) -> Any:
    app = yard(request)
    state = await app.ready()
    described = app.sandbox.describe()
    body = {**state, "version": __version__, "sandbox": described["sandbox"]}
    return JSONResponse(body, status_code=200 if state["ready"] else 503)


@router.get("/metrics")
async def metrics(request: Request) -> Response:
    app = yard(request)
    token = app.settings.metrics_token
    if token is not None:
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not apikeys.same(given.strip(), token.get_secret_value()):
            response = error_response(401, "Unauthorized")
            response.headers["WWW-Authenticate"] = "Bearer"
            return response
    return Response(await app.metrics_text(), media_type=CONTENT_TYPE)
