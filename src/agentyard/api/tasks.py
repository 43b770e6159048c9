"""``/api/v1/tasks``: create, list, get, status, continue, cancel/rename, logs, stream."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse, Response

from agentyard.api import sse, views
from agentyard.api.auth import current_user, yard
from agentyard.api.body import json_object, optional_str, prompt_of
from agentyard.core import acp_policy, envvars, idempotency
from agentyard.core import events as ev
from agentyard.core.errors import InvalidInput
from agentyard.core.models import Run
from agentyard.core.repo_rules import is_branch_name
from agentyard.core.status import RunStatus, parse_status
from agentyard.service import AgentChoice, Continuation, NewTask, Service
from agentyard.webhooks import signing

router = APIRouter(prefix="/api/v1/tasks")

_STATUSES = ", ".join(s.value for s in RunStatus)
CREATE_FIELDS = frozenset(
    {
        "type",
        "message",
        "prompt",
        "model",
        "agent",
        "title",
        "repoUrl",
        "selectedBranch",
        "createPullRequest",
        "selectedAgents",
        envvars.FIELD,
        "maxDuration",
        "maxCostUsd",
        "webhookUrl",
        acp_policy.FIELD,
    }
)
CONTINUE_FIELDS = frozenset(
    {
        "prompt",
        "message",
        "model",
        "agent",
        envvars.FIELD,
        "maxDuration",
        "maxCostUsd",
        acp_policy.FIELD,
    }
)
_NOT_SUPPORTED = {
    "installDependencies": "dependencies are not installed by the server (the agent may do it)",
    "keepAlive": "workspaces are kept until their chat is deleted",
}
_MAX_DURATION = 7 * 24 * 3600.0


@router.post("")
async def create_task(request: Request, user: str = Depends(current_user)) -> Any:
    data = await json_object(request)
    _known_fields(data, CREATE_FIELDS)
    kind = optional_str(data, "type")
    if kind not in (None, "claude", "agent"):
        raise InvalidInput("'type' must be \"claude\" (agent task); chat mode is not supported")
    task = NewTask(
        prompt=prompt_of(data, "message", "prompt"),
        model=optional_str(data, "model", max_len=200),
        agent=optional_str(data, "agent", max_len=40),
        title=optional_str(data, "title", max_len=200),
        repo_url=optional_str(data, "repoUrl", max_len=2000),
        selected_branch=_branch(optional_str(data, "selectedBranch", max_len=255)),
        create_pull_request=_flag(data, "createPullRequest"),
        env=envvars.parse(data.get(envvars.FIELD)),
        max_duration=_limit(data, "maxDuration", _MAX_DURATION),
        max_cost_usd=_limit(data, "maxCostUsd", 1e6),
        acp_permission=acp_policy.parse(data.get(acp_policy.FIELD)),
        **_webhook(data),
    )
    service = yard(request).service
    group = data.get("selectedAgents") is not None
    choices = _agent_choices(data) if group else []
    shape = _group_created if group else _created

    def render(runs: list[Run]) -> dict[str, Any]:
        return {**shape(runs), **_webhook_secret(task)}

    receipt = await _receipt(request, service, user, data, render)
    if isinstance(receipt, Response):
        return receipt
    if group:
        _, runs = await service.create_group(user, task, choices, receipt)
        return render(runs)
    return render([await service.create_task(user, task, receipt)])


def _webhook(data: dict[str, Any]) -> dict[str, Any]:
    """A task's own ``webhookUrl``, with the signing secret made for it now."""
    url = optional_str(data, "webhookUrl", max_len=2000)
    if url is None:
        return {}
    return {"webhook_url": url, "webhook_secret": signing.new_secret()}


def _webhook_secret(task: NewTask) -> dict[str, Any]:
    """Shown once, in the create response (and its idempotent replays, sealed meanwhile),
    and only when the task has its own webhook."""
    return {"webhookSecret": task.webhook_secret} if task.webhook_secret else {}


def _created(runs: list[Run]) -> dict[str, Any]:
    run = runs[0]
    return {
        "taskId": run.run_id,
        "runId": run.run_id,
        "chatId": run.chat_id,
        "assistantMessageId": run.assistant_message_id,
        "status": run.status.value,
        "agentCount": 1,
    }


def _group_created(runs: list[Run]) -> dict[str, Any]:
    group_id = runs[0].group_id
    return {
        "taskId": group_id,
        "groupId": group_id,
        "runId": runs[0].run_id,
        "chatId": runs[0].chat_id,
        "assistantMessageId": runs[0].assistant_message_id,
        "status": "queued",
        "agentCount": len(runs),
        "runs": [
            {
                "runId": r.run_id,
                "chatId": r.chat_id,
                "agent": r.agent,
                "model": r.model,
                "assistantMessageId": r.assistant_message_id,
            }
            for r in runs
        ],
    }


def _continued(runs: list[Run]) -> dict[str, Any]:
    run = runs[0]
    return {
        "taskId": run.run_id,
        "runId": run.run_id,
        "chatId": run.chat_id,
        "assistantMessageId": run.assistant_message_id,
        "previousRunId": run.previous_run_id,
        "status": run.status.value,
    }


async def _receipt(
    request: Request,
    service: Service,
    user: str,
    data: dict[str, Any],
    render: Callable[[list[Run]], dict[str, Any]],
) -> idempotency.Receipt | Response | None:
    """The request's idempotency receipt (None without a key), or the first response made
    under its key, replayed."""
    key = idempotency.parse_key(request.headers.get(idempotency.HEADER))
    if key is None:
        return None
    route = f"{request.method} {request.url.path}"
    receipt = service.receipts.receipt(key, route, data, render)
    stored = await service.receipts.replay(user, receipt)
    if stored is None:
        return receipt
    return JSONResponse(
        stored.body,
        status_code=stored.status_code,
        headers={idempotency.REPLAYED_HEADER: "true"},
    )


def _known_fields(data: dict[str, Any], known: frozenset[str]) -> None:
    """400 naming a field this route does not take (a typo must not be silently dropped)."""
    for name in data:
        if name in known:
            continue
        if name in _NOT_SUPPORTED:
            if data[name] in (None, False):
                continue  # asks for nothing: what the reference's clients send by default
            raise InvalidInput(f"'{name}' is not supported: {_NOT_SUPPORTED[name]}")
        raise InvalidInput(
            f"unknown field {name!r}; this request takes: {', '.join(sorted(known))}"
        )


def _limit(data: dict[str, Any], name: str, largest: float) -> float | None:
    value = data.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InvalidInput(f"'{name}' must be a number")
    if not 0 < value <= largest:
        raise InvalidInput(f"'{name}' must be greater than 0 and at most {largest:g}")
    return float(value)


def _branch(name: str | None) -> str | None:
    if name is not None and not is_branch_name(name):
        raise InvalidInput(f"'selectedBranch' is not a valid branch name: {name!r}")
    return name


def _flag(data: dict[str, Any], name: str) -> bool:
    value = data.get(name, False)
    if not isinstance(value, bool):
        raise InvalidInput(f"'{name}' must be true or false")
    return value


def _agent_choices(data: dict[str, Any]) -> list[AgentChoice]:
    entries = data["selectedAgents"]
    if not isinstance(entries, list):
        raise InvalidInput("'selectedAgents' must be an array of {agent, model}")
    choices = []
    for i, entry in enumerate(entries):
        if not isinstance(entry, dict):
            raise InvalidInput(f"'selectedAgents[{i}]' must be an object with agent and model")
        extra = sorted(set(entry) - {"agent", "model"})
        if extra:
            raise InvalidInput(f"unknown field 'selectedAgents[{i}].{extra[0]}'")
        choices.append(
            AgentChoice(
                agent=optional_str(entry, "agent", max_len=40),
                model=optional_str(entry, "model", max_len=200),
            )
        )
    return choices


@router.get("")
async def list_tasks(
    request: Request,
    page: int = Query(1, ge=1, le=1_000_000),
    limit: int = Query(20, ge=1, le=100),
    status: str | None = None,
    user: str = Depends(current_user),
) -> dict[str, Any]:
    wanted = None
    if status is not None:
        wanted = parse_status(status)
        if wanted is None:
            raise InvalidInput(f"'status' must be one of: {_STATUSES}")
    runs, has_more = await yard(request).service.list_tasks(user, wanted, page, limit)
    return {
        "tasks": [views.summary(r) for r in runs],
        "page": page,
        "limit": limit,
        "hasMore": has_more,
    }


@router.get("/{run_id}")
async def get_task(run_id: str, request: Request, user: str = Depends(current_user)) -> Any:
    view = await yard(request).service.get_task(user, run_id)
    return views.task(view.run, view.chat, view.messages)


@router.get("/{run_id}/status")
async def task_status(run_id: str, request: Request, user: str = Depends(current_user)) -> Any:
    app = yard(request)
    run = await app.service.get_run(user, run_id)
    return views.status(run, app.settings.expected_run_seconds)


@router.post("/{run_id}/continue")
async def continue_task(run_id: str, request: Request, user: str = Depends(current_user)) -> Any:
    data = await json_object(request)
    _known_fields(data, CONTINUE_FIELDS)
    follow_up = Continuation(
        prompt=prompt_of(data, "prompt", "message"),
        model=optional_str(data, "model", max_len=200),
        agent=optional_str(data, "agent", max_len=40),
        env=envvars.parse(data.get(envvars.FIELD)),
        max_duration=_limit(data, "maxDuration", _MAX_DURATION),
        max_cost_usd=_limit(data, "maxCostUsd", 1e6),
        acp_permission=acp_policy.parse(data.get(acp_policy.FIELD)),
    )
    service = yard(request).service
    receipt = await _receipt(request, service, user, data, _continued)
    if isinstance(receipt, Response):
        return receipt
    return _continued([await service.continue_task(user, run_id, follow_up, receipt)])


@router.patch("/{run_id}")
async def update_task(run_id: str, request: Request, user: str = Depends(current_user)) -> Any:
    data = await json_object(request)
    action = data.get("action")
    title = data.get("title")
    if action is not None and action != "cancel":
        raise InvalidInput("'action' must be \"cancel\"")
    if title is not None and (not isinstance(title, str) or not 1 <= len(title.strip()) <= 200):
        raise InvalidInput("'title' must be a string of 1 to 200 characters")
    if action is None and title is None:
        raise InvalidInput("nothing to do: give action \"cancel\" and/or a 'title'")
    service = yard(request).service
    result: dict[str, Any] = {}
    if title is not None:
        run = await service.rename(user, run_id, title.strip())
        result = {"success": True, "status": run.status.value, "message": "Title updated"}
    if action == "cancel":
        outcome = await service.cancel(user, run_id)
        result = {
            "success": outcome.success,
            "status": outcome.status.value,
            "message": outcome.message,
        }
    return result


@router.get("/{run_id}/diff")
async def task_diff(run_id: str, request: Request, user: str = Depends(current_user)) -> Any:
    run, diff = await yard(request).service.diff(user, run_id)
    return {"runId": run.run_id, "diff": diff, "diffStats": views.diff_stats(run)}


@router.get("/{run_id}/logs")
async def task_logs(
    run_id: str,
    request: Request,
    includeDeltas: bool = True,
    user: str = Depends(current_user),
) -> Any:
    run, stored = await yard(request).service.logs(user, run_id)
    items = [dict(s.data, seq=s.seq) for s in stored if includeDeltas or s.type != ev.TEXT_DELTA]
    return {
        "runId": run.run_id,
        "chatId": run.chat_id,
        "status": run.status.value,
        "source": "reconstructed" if run.status.terminal else "buffer",
        "eventCount": len(items),
        "events": items,
        "error": run.error,
    }


@router.get("/{run_id}/logs/stream")
async def stream_logs(
    run_id: str,
    request: Request,
    after: int | None = None,
    includeDeltas: bool = True,
    user: str = Depends(current_user),
) -> Response:
    app = yard(request)
    run = await app.service.get_run(user, run_id)
    start = sse.resume_point(request, after)
    return sse.stream(app.service, run, start, app.settings.keepalive_seconds, includeDeltas)
