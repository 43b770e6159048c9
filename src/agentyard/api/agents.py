"""``/api/v1/agents``: the runtimes this server offers and whether each is ready."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request

from agentyard.api.auth import current_user, yard

router = APIRouter(prefix="/api/v1")


@router.get("/agents")
async def list_agents(request: Request, _: str = Depends(current_user)) -> dict[str, Any]:
    agents = []
    for name, runtime in yard(request).runtimes.items():
        state = runtime.availability()
        agents.append(
            {
                "agent": name,
                "configured": state.configured,
                "detail": state.detail,
                "defaultModel": state.default_model,
            }
        )
    return {"agents": agents, "sandbox": yard(request).sandbox.describe()}
