"""``/api/v1/webhooks``: the caller's signed webhook endpoints and their deliveries."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse

from agentyard.api.auth import current_user, yard
from agentyard.api.body import json_object, optional_str
from agentyard.core.errors import InvalidInput

router = APIRouter(prefix="/api/v1/webhooks")


@router.post("", status_code=201)
async def register(request: Request, user: str = Depends(current_user)) -> JSONResponse:
    data = await json_object(request)
    url = optional_str(data, "url")
    if url is None:
        raise InvalidInput("'url' is required")
    description = optional_str(data, "description")
    created = await yard(request).webhooks.register(user, url, data.get("events"), description)
    return JSONResponse(created, status_code=201)


@router.get("")
async def list_endpoints(request: Request, user: str = Depends(current_user)) -> dict[str, Any]:
    return {"webhooks": await yard(request).webhooks.endpoints(user)}


@router.get("/{endpoint_id}")
async def get_endpoint(
    endpoint_id: str, request: Request, user: str = Depends(current_user)
) -> dict[str, Any]:
    return await yard(request).webhooks.get(user, endpoint_id)


@router.delete("/{endpoint_id}")
async def delete_endpoint(
    endpoint_id: str, request: Request, user: str = Depends(current_user)
) -> dict[str, Any]:
    await yard(request).webhooks.delete(user, endpoint_id)
    return {"success": True, "id": endpoint_id}


@router.get("/{endpoint_id}/deliveries")
async def deliveries(
    endpoint_id: str,
    request: Request,
    page: int = Query(1, ge=1, le=1_000_000),
    limit: int = Query(20, ge=1, le=100),
    user: str = Depends(current_user),
) -> dict[str, Any]:
    items, has_more = await yard(request).webhooks.deliveries(user, endpoint_id, page, limit)
    return {"deliveries": items, "page": page, "limit": limit, "hasMore": has_more}


@router.post("/{endpoint_id}/deliveries/{delivery_id}/redeliver")
async def redeliver(
    endpoint_id: str, delivery_id: str, request: Request, user: str = Depends(current_user)
) -> dict[str, Any]:
    """The delivery, pending again: its new attempt is made at once, in the background."""
    return await yard(request).webhooks.redeliver(user, endpoint_id, delivery_id)
