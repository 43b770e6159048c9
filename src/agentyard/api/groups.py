"""``/api/v1/groups``: a multi-agent task's runs side by side, and the decision."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request

from agentyard.api import views
from agentyard.api.auth import current_user, yard
from agentyard.api.body import json_object, optional_str
from agentyard.core.errors import InvalidInput
from agentyard.groups import GroupView

router = APIRouter(prefix="/api/v1/groups")


def _view(view: GroupView, expected_seconds: float) -> dict[str, Any]:
    record = view.record
    return {
        "taskId": view.group_id,
        "status": view.status,
        "agentCount": len(view.runs),
        "selectedRunId": record.get("selected_run_id"),
        "prUrl": record.get("pr_url"),
        "prNumber": record.get("pr_number"),
        "runs": [
            {
                **views.status(run, expected_seconds),
                "agent": run.agent,
                "model": run.model,
                "chatId": run.chat_id,
                "usage": run.usage,
                "costUsd": run.cost_usd,
                "diffStats": views.diff_stats(run),
            }
            for run in view.runs
        ],
    }


@router.get("/{group_id}")
async def get_group(group_id: str, request: Request, user: str = Depends(current_user)) -> Any:
    app = yard(request)
    return _view(await app.groups.get(user, group_id), app.settings.expected_run_seconds)


@router.get("/{group_id}/compare")
async def compare(group_id: str, request: Request, user: str = Depends(current_user)) -> Any:
    return await yard(request).groups.compare(user, group_id)


@router.post("/{group_id}/select")
async def select(group_id: str, request: Request, user: str = Depends(current_user)) -> Any:
    data = await json_object(request)
    run_id = optional_str(data, "runId")
    if not run_id:
        raise InvalidInput("'runId' is required")
    pull_request = data.get("createPullRequest", False)
    if not isinstance(pull_request, bool):
        raise InvalidInput("'createPullRequest' must be true or false")
    app = yard(request)
    view = await app.groups.select(user, group_id, run_id, pull_request)
    return _view(view, app.settings.expected_run_seconds)


@router.patch("/{group_id}")
async def update_group(group_id: str, request: Request, user: str = Depends(current_user)) -> Any:
    data = await json_object(request)
    if data.get("action") != "cancel":
        raise InvalidInput("'action' must be \"cancel\"")
    app = yard(request)
    view = await app.groups.cancel(user, group_id)
    return _view(view, app.settings.expected_run_seconds)
