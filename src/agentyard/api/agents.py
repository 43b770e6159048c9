"""``/api/v1/agents``: the runtimes this server offers and whether each is ready."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request

from agentyard.api import views
from agentyard.api.auth import current_user, yard

router = APIRouter(prefix="/api/v1")


@router.get("/agents")
async def list_agents(request: Request, _: str = Depends(current_user)) -> dict[str, Any]:
    app = yard(request)
    return {"agents": views.agents(app.runtimes), "sandbox": app.sandbox.describe()}
