"""The tasks list, the new-task form, one task's page (live), cancel, follow-up, diff and
the workspace's files, read-only."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterable, AsyncIterator
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response, StreamingResponse

from agentyard.api import sse, views
from agentyard.api.body import optional_str, prompt_of
from agentyard.core.clock import utcnow
from agentyard.core.errors import AgentyardError, InvalidInput, NotFound
from agentyard.core.models import Chat, Message, Run
from agentyard.core.progress import estimate_progress
from agentyard.core.repo_rules import is_branch_name
from agentyard.core.status import RunStatus, parse_status
from agentyard.server import Agentyard
from agentyard.service import AgentChoice, Continuation, NewTask
from agentyard.web import render
from agentyard.web.common import PageRoute, Viewer, form_of, page, redirect, viewer, yard
from agentyard.workspace import files

router = APIRouter(route_class=PageRoute, include_in_schema=False)

PAGE_SIZE = 20
AGENT_ROWS = 5
"""Agent rows of the new-task form: two or more chosen make a multi-agent task."""
STATUSES = [s.value for s in RunStatus]
RECONNECT_MS = 1000
MAX_FILE_SHOWN = 1_048_576
"""A larger file is refused on the page (the API's files endpoints serve it)."""


def agents_of(app: Agentyard) -> list[dict[str, Any]]:
    return views.agents(app.runtimes)


def _status_filter(status: str | None) -> RunStatus | None:
    if not status:
        return None
    wanted = parse_status(status)
    if wanted is None:
        raise InvalidInput(f"status must be one of: {', '.join(STATUSES)}")
    return wanted


async def _rows(
    app: Agentyard, user: str, status: RunStatus | None, page_no: int
) -> tuple[list[dict[str, Any]], bool]:
    runs, has_more = await app.service.list_tasks(user, status, page_no, PAGE_SIZE)
    rows = []
    for run in runs:
        rows.append({"run": run, "chat": await app.service.chat_of(run)})
    return rows, has_more


async def _list_context(
    request: Request, user: Viewer, status: str | None, page_no: int
) -> dict[str, Any]:
    app = yard(request)
    rows, has_more = await _rows(app, user.user_id, _status_filter(status), page_no)
    return {
        "rows": rows,
        "has_more": has_more,
        "page_no": page_no,
        "status": status or "",
        "statuses": STATUSES,
    }


@router.get("/")
async def tasks_page(
    request: Request,
    status: str | None = None,
    page_no: int = Query(1, alias="page", ge=1, le=100_000),
    user: Viewer = Depends(viewer),
) -> Response:
    context = await _list_context(request, user, status, page_no)
    return page(
        request, "tasks.html", agents=agents_of(yard(request)), rows_n=AGENT_ROWS, **context
    )


@router.get("/ui/tasks/rows")
async def task_rows(
    request: Request,
    status: str | None = None,
    page_no: int = Query(1, alias="page", ge=1, le=100_000),
    user: Viewer = Depends(viewer),
) -> Response:
    return page(request, "_rows.html", **await _list_context(request, user, status, page_no))


def _new_task(data: dict[str, str]) -> tuple[NewTask, list[AgentChoice]]:
    choices = []
    for i in range(1, AGENT_ROWS + 1):
        agent = optional_str(data, f"agent{i}", max_len=40)
        model = optional_str(data, f"model{i}", max_len=200)
        if agent:
            choices.append(AgentChoice(agent=agent, model=(model or "").strip() or None))
    repo = (optional_str(data, "repoUrl", max_len=2000) or "").strip() or None
    branch = (optional_str(data, "branch", max_len=255) or "").strip() or None
    if branch is not None and not is_branch_name(branch):
        raise InvalidInput(f"Branch is not a valid branch name: {branch!r}")
    first = choices[0] if choices else AgentChoice(None, None)
    task = NewTask(
        prompt=prompt_of(data, "prompt"),
        agent=first.agent,
        model=first.model,
        title=(optional_str(data, "title", max_len=200) or "").strip() or None,
        repo_url=repo,
        selected_branch=branch,
        create_pull_request=data.get("pullRequest") == "on",
    )
    return task, choices


@router.post("/tasks")
async def create_task(request: Request, user: Viewer = Depends(viewer)) -> Response:
    data = await form_of(request)
    app = yard(request)
    try:
        task, choices = _new_task(data)
        if len(choices) >= 2:
            group_id, _ = await app.service.create_group(user.user_id, task, choices)
            return redirect(f"/groups/{group_id}")
        run = await app.service.create_task(user.user_id, task)
    except AgentyardError as exc:
        context = await _list_context(request, user, None, 1)
        return page(
            request,
            "tasks.html",
            400,
            agents=agents_of(app),
            rows_n=AGENT_ROWS,
            error=exc.message,
            form=data,
            **context,
        )
    return redirect(f"/tasks/{run.run_id}")


# -- one task ---------------------------------------------------------------------------------


def _split(messages: list[Message], run: Run) -> dict[str, Any]:
    """The chat's messages: earlier runs' (above), this run's, and whether later runs exist."""
    earlier: list[Message] = []
    later: list[str] = []
    seen_current = False
    for m in messages:
        if m.run_id == run.run_id:
            seen_current = True
        elif not seen_current:
            earlier.append(m)
        elif m.run_id not in later:
            later.append(m.run_id)
    return {"earlier": earlier, "later": later}


def _first_prompt(messages: list[Message]) -> str | None:
    """What the chat began with: its title when it has none."""
    for m in messages:
        if m.role == "user":
            return next((str(p["text"]) for p in m.parts if p.get("type") == "text"), None)
    return None


def run_context(app: Agentyard, run: Run, chat: Chat | None = None) -> dict[str, Any]:
    return {
        "run": run,
        "chat": chat,
        "active": not run.status.terminal,
        "progress": estimate_progress(
            run.status, run.started_at, utcnow(), app.settings.expected_run_seconds
        ),
        "expected_seconds": app.settings.expected_run_seconds,
        "git": run.git or {},
    }


async def conversation_of(app: Agentyard, run: Run) -> list[dict[str, Any]]:
    """A finished run's conversation from its events (its owner checked by the caller)."""
    _, stored = await app.service.logs(run.user_id, run.run_id)
    return render.conversation(s.data for s in stored)


async def _task_context(request: Request, user: Viewer, run_id: str) -> dict[str, Any]:
    app = yard(request)
    view = await app.service.get_task(user.user_id, run_id)
    terminal = view.run.status.terminal
    split = _split(view.messages, view.run)
    return {
        **run_context(app, view.run, view.chat),
        **split,
        "items": await conversation_of(app, view.run) if terminal else [],
        "title": view.chat.title or _first_prompt(view.messages) or view.run.prompt,
        # Only the chat's latest run continues (the service enforces it; this hides the form).
        "can_follow_up": terminal and not split["later"],
    }


@router.get("/tasks/{run_id}")
async def task_page(run_id: str, request: Request, user: Viewer = Depends(viewer)) -> Response:
    return page(request, "task.html", **await _task_context(request, user, run_id))


@router.get("/ui/tasks/{run_id}/panel")
async def task_panel(run_id: str, request: Request, user: Viewer = Depends(viewer)) -> Response:
    return page(request, "_panel.html", **await _task_context(request, user, run_id))


@router.get("/ui/tasks/{run_id}/stream")
async def task_stream(run_id: str, request: Request, user: Viewer = Depends(viewer)) -> Response:
    """The run's events for the browser (EventSource sends the cookie, not a bearer key);
    a dropped connection resumes from ``Last-Event-ID``."""
    app = yard(request)
    run = await app.service.get_run(user.user_id, run_id)
    start = sse.resume_point(request, None)
    response = sse.stream(app.service, run, start, app.settings.keepalive_seconds)
    if isinstance(response, StreamingResponse):
        response.body_iterator = _reconnect_soon(response.body_iterator)
    return response


async def _reconnect_soon(body: AsyncIterable[Any]) -> AsyncIterator[Any]:
    """A page whose stream broke reconnects after a second (browsers wait 3 s by default)."""
    yield f"retry: {RECONNECT_MS}\n\n"
    async for chunk in body:
        yield chunk


@router.post("/tasks/{run_id}/cancel")
async def cancel_task(run_id: str, request: Request, user: Viewer = Depends(viewer)) -> Response:
    await form_of(request)
    await yard(request).service.cancel(user.user_id, run_id)
    back = await yard(request).service.get_run(user.user_id, run_id)
    return redirect(f"/groups/{back.group_id}" if back.group_id else f"/tasks/{run_id}")


@router.post("/tasks/{run_id}/follow-up")
async def follow_up(run_id: str, request: Request, user: Viewer = Depends(viewer)) -> Response:
    data = await form_of(request)
    try:
        prompt = prompt_of(data, "prompt")
    except InvalidInput:
        raise InvalidInput("Write a follow-up message first.") from None
    run = await yard(request).service.continue_task(
        user.user_id, run_id, Continuation(prompt=prompt)
    )
    return redirect(f"/tasks/{run.run_id}")


@router.get("/ui/tasks/{run_id}/diff")
async def task_diff(
    run_id: str, request: Request, view: str = "unified", user: Viewer = Depends(viewer)
) -> Response:
    if view not in ("unified", "split"):
        raise InvalidInput("view must be unified or split")
    _, diff = await yard(request).service.diff(user.user_id, run_id)
    return page(
        request, "_diff.html", run_id=run_id, view=view, files=render.parse_diff(diff), diff=diff
    )


# -- the workspace, read-only -------------------------------------------------------------------


async def _workspace(request: Request, user: Viewer, run_id: str) -> tuple[Run, Path]:
    service = yard(request).service
    run = await service.get_run(user.user_id, run_id)
    chat = await service.chat_of(run)
    if not chat.workspace_path or not Path(chat.workspace_path).is_dir():
        raise NotFound("This task has no workspace yet.")
    return run, Path(chat.workspace_path)


@router.get("/tasks/{run_id}/files")
async def files_page(
    run_id: str, request: Request, path: str = "", user: Viewer = Depends(viewer)
) -> Response:
    run, root = await _workspace(request, user, run_id)
    if len(path) > 4096:
        raise InvalidInput("path is too long")
    context: dict[str, Any] = {"run": run, "path": path.strip("/"), "entries": None, "file": None}
    try:
        target = await asyncio.to_thread(files.resolve, root, path)
        if not path or await asyncio.to_thread(target.is_dir):
            context["entries"] = await asyncio.to_thread(files.list_files, root, path)
        else:
            shown = await asyncio.to_thread(files.read_file, root, path, MAX_FILE_SHOWN)
            if shown["encoding"] == "text":
                shown["html"] = render.highlight_file(shown["path"], shown["content"])
            context["file"] = shown
    except OSError as exc:
        raise InvalidInput(f"cannot read that in the workspace: {exc.strerror or exc}") from None
    parts = [p for p in context["path"].split("/") if p]
    context["crumbs"] = [("/".join(parts[: i + 1]), name) for i, name in enumerate(parts)]
    return page(request, "files.html", **context)
