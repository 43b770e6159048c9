"""A multi-agent task: one live column per run, the per-file comparison, the winner."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response

from agentyard.core.errors import InvalidInput
from agentyard.groups import GroupView
from agentyard.server import Agentyard
from agentyard.web import render
from agentyard.web.common import PageRoute, Viewer, form_of, page, redirect, viewer, yard
from agentyard.web.tasks import conversation_of, run_context

router = APIRouter(route_class=PageRoute, include_in_schema=False)


async def _columns(app: Agentyard, view: GroupView) -> list[dict[str, Any]]:
    columns = []
    for run in view.runs:
        column = run_context(app, run)
        column["items"] = [] if column["active"] else await conversation_of(app, run)
        columns.append(column)
    return columns


async def _group_context(app: Agentyard, view: GroupView) -> dict[str, Any]:
    return {
        "group": view,
        "selected": view.record.get("selected_run_id"),
        "columns": await _columns(app, view),
        "prompt": view.record.get("prompt") or (view.runs[0].prompt if view.runs else ""),
    }


@router.get("/groups/{group_id}")
async def group_page(group_id: str, request: Request, user: Viewer = Depends(viewer)) -> Response:
    app = yard(request)
    view = await app.groups.get(user.user_id, group_id)
    return page(request, "group.html", **await _group_context(app, view))


@router.get("/ui/groups/{group_id}/head")
async def group_head(group_id: str, request: Request, user: Viewer = Depends(viewer)) -> Response:
    view = await yard(request).groups.get(user.user_id, group_id)
    return page(request, "_grouphead.html", group=view, selected=view.record.get("selected_run_id"))


@router.get("/ui/groups/{group_id}/runs/{run_id}")
async def group_column(
    group_id: str, run_id: str, request: Request, user: Viewer = Depends(viewer)
) -> Response:
    app = yard(request)
    view = await app.groups.get(user.user_id, group_id)
    column = next((c for c in await _columns(app, view) if c["run"].run_id == run_id), None)
    if column is None:
        raise InvalidInput(f"run {run_id} is not part of group {group_id}")
    return page(
        request,
        "_column.html",
        group=view,
        selected=view.record.get("selected_run_id"),
        col=column,
        items=column["items"],
    )


@router.get("/ui/groups/{group_id}/compare")
async def compare(group_id: str, request: Request, user: Viewer = Depends(viewer)) -> Response:
    app = yard(request)
    result = await app.groups.compare(user.user_id, group_id)
    for entry in result["files"]:
        for change in entry["runs"].values():
            if change is not None:
                parsed = render.parse_diff(change["diff"])
                change["parsed"] = parsed[0] if parsed else None
    return page(request, "_compare.html", comparison=result)


@router.post("/groups/{group_id}/select")
async def select(group_id: str, request: Request, user: Viewer = Depends(viewer)) -> Response:
    data = await form_of(request)
    run_id = data.get("runId", "").strip()
    if not run_id:
        raise InvalidInput("Choose a run to select.")
    pull_request = data.get("pullRequest") == "on"
    await yard(request).groups.select(user.user_id, group_id, run_id, pull_request)
    return redirect(f"/groups/{group_id}")


@router.post("/groups/{group_id}/cancel")
async def cancel(group_id: str, request: Request, user: Viewer = Depends(viewer)) -> Response:
    await form_of(request)
    await yard(request).groups.cancel(user.user_id, group_id)
    return redirect(f"/groups/{group_id}")
