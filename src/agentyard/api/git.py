"""``/api/v1/git``: the caller's GitHub connection."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request

from agentyard.api.auth import current_user, yard
from agentyard.api.body import json_object, optional_str

router = APIRouter(prefix="/api/v1/git")


@router.post("/config")
async def connect(request: Request, user: str = Depends(current_user)) -> dict[str, Any]:
    data = await json_object(request)
    token = optional_str(data, "githubToken", max_len=1000) or ""
    return await yard(request).git.connect(user, token)


@router.get("/config")
async def config(request: Request, user: str = Depends(current_user)) -> dict[str, Any]:
    return await yard(request).git.config(user)


@router.get("/status")
async def status(request: Request, user: str = Depends(current_user)) -> dict[str, Any]:
    return await yard(request).git.status(user)


@router.delete("/clean")
async def clean(request: Request, user: str = Depends(current_user)) -> dict[str, Any]:
    return await yard(request).git.disconnect(user)


@router.get("/repos")
async def repos(
    request: Request, include_orgs: bool = True, user: str = Depends(current_user)
) -> dict[str, Any]:
    return await yard(request).git.repos(user, include_orgs)


@router.get("/branches")
async def branches(
    request: Request,
    owner: str | None = None,
    repo: str | None = None,
    protected_only: bool = False,
    user: str = Depends(current_user),
) -> dict[str, Any]:
    return await yard(request).git.branches(user, owner, repo, protected_only)
