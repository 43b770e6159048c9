"""A multi-agent task: one live column per run, the per-file comparison, the winner."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response, StreamingResponse

from agentyard.api import sse
from agentyard.core.errors import InvalidInput
from agentyard.core.models import StoredEvent
from agentyard.groups import GroupView
from agentyard.server import Agentyard
from agentyard.web import render
from agentyard.web.common import PageRoute, Viewer, form_of, page, redirect, viewer, yard
from agentyard.web.tasks import RECONNECT_MS, conversation_of, run_context

router = APIRouter(route_class=PageRoute, include_in_schema=False)


async def _columns(app: Agentyard, view: GroupView) -> list[dict[str, Any]]:
    columns = []
    for index, run in enumerate(view.runs):
        column = run_context(app, run)
        column["index"] = index  # its place in the group's stream
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


def _resume_points(request: Request, count: int) -> list[int]:
    """Where each run's events resume: ``Last-Event-ID`` is their seqs joined by dots."""
    header = (request.headers.get("last-event-id") or "").strip()
    if not header:
        return [0] * count
    parts = header.split(".")
    if len(parts) != count or not all(p.isdigit() and len(p) <= 10 for p in parts):
        raise InvalidInput(f"Last-Event-ID must be {count} event ids joined by dots")
    points = [int(p) for p in parts]
    if any(p > sse.MAX_SEQ for p in points):
        raise InvalidInput(f"event ids must be at most {sse.MAX_SEQ}")
    return points


@router.get("/ui/groups/{group_id}/stream")
async def group_stream(group_id: str, request: Request, user: Viewer = Depends(viewer)) -> Response:
    """Every run of the group on one connection (a browser opens only six per server): each
    frame carries the run's index; its id is every run's last seq, so a reconnection
    resumes each run where it was."""
    app = yard(request)
    view = await app.groups.get(user.user_id, group_id)
    seqs = _resume_points(request, len(view.runs))
    pending = [
        (i, run)
        for i, run in enumerate(view.runs)
        if not (run.status.terminal and seqs[i] >= run.event_seq)
    ]
    if not pending:
        return Response(status_code=204)  # everything shown: the browser stops reconnecting
    keepalive = app.settings.keepalive_seconds

    async def body() -> AsyncIterator[str]:
        yield f"retry: {RECONNECT_MS}\n\n"
        # (run index, event or None for a keep-alive tick, whether that run's events ended)
        queue: asyncio.Queue[tuple[int, StoredEvent | None, bool]] = asyncio.Queue(1000)

        async def pump(i: int, run_id: str) -> None:
            try:
                async for item in app.service.follow(run_id, seqs[i], keepalive):
                    await queue.put((i, item, False))
            finally:
                await queue.put((i, None, True))

        tasks = [asyncio.create_task(pump(i, run.run_id)) for i, run in pending]
        open_runs = len(tasks)
        loop = asyncio.get_running_loop()
        last_tick = 0.0
        try:
            while open_runs:
                i, item, ended = await queue.get()
                if ended:
                    open_runs -= 1
                elif item is None:
                    if loop.time() - last_tick >= keepalive / 2:  # one per round, not per run
                        last_tick = loop.time()
                        yield ": keep-alive\n\n"
                else:
                    seqs[i] = item.seq
                    ids = ".".join(str(n) for n in seqs)
                    yield f'id: {ids}\ndata: {{"run":{i},"event":{item.json}}}\n\n'
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    return StreamingResponse(body(), media_type="text/event-stream", headers=sse.HEADERS)


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
