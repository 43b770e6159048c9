"""Bearer-key authentication: every request names its user by an API key."""

from __future__ import annotations

from fastapi import Request

from agentyard.core.errors import Unauthorized
from agentyard.server import Agentyard


def yard(request: Request) -> Agentyard:
    app: Agentyard = request.app.state.yard
    return app


async def current_user(request: Request) -> str:
    header = request.headers.get("authorization", "")
    scheme, _, secret = header.partition(" ")
    if scheme.lower() != "bearer" or not secret.strip():
        raise Unauthorized("Unauthorized")
    user = await yard(request).authenticate(secret.strip())
    if user is None:
        raise Unauthorized("Unauthorized")
    return user
