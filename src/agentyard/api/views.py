"""Wire views: domain records rendered as the Agent API's camelCase JSON."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from agentyard.core.clock import iso, utcnow
from agentyard.core.models import Chat, Message, Run, RunState
from agentyard.core.progress import estimate_progress
from agentyard.runtimes.base import AgentRuntime


def summary(run: Run) -> dict[str, Any]:
    return {
        "taskId": run.run_id,
        "runId": run.run_id,
        "chatId": run.chat_id,
        "status": run.status.value,
        "agent": run.agent,
        "model": run.model,
        "createdAt": iso(run.created_at),
        "startedAt": iso(run.started_at),
        "completedAt": iso(run.completed_at),
        "assistantMessageId": run.assistant_message_id,
    }


def github(chat: Chat, run: Run) -> dict[str, Any] | None:
    if not chat.repo_url:
        return None
    owner, _, repo = urlsplit(chat.repo_url).path.strip("/").removesuffix(".git").rpartition("/")
    git = run.git or {}
    return {
        "repoUrl": chat.repo_url,
        "owner": owner,
        "repo": repo,
        "baseBranch": chat.base_branch,
        "createdBranch": chat.created_branch,
        "pushed": bool(git.get("pushed")),
        "commits": git.get("commits", []),
        "prUrl": git.get("prUrl"),
        "prNumber": git.get("prNumber"),
        "prError": git.get("prError"),
    }


def diff_stats(run: Run) -> dict[str, Any] | None:
    git = run.git or {}
    if "headSha" not in git:
        return None
    return {k: git[k] for k in ("filesChanged", "linesAdded", "linesRemoved", "commits", "files")}


def message(m: Message) -> dict[str, Any]:
    return {"id": m.message_id, "role": m.role, "parts": m.parts, "createdAt": iso(m.created_at)}


def task(run: Run, chat: Chat, messages: list[Message]) -> dict[str, Any]:
    view = summary(run)
    view.update(
        {
            "title": chat.title,
            "prompt": run.prompt,
            "previousRunId": run.previous_run_id,
            "error": run.error,
            "statusDetail": run.status_detail,
            "workerId": run.worker_id,
            "maxDuration": run.options.get("maxDuration"),
            "maxCostUsd": run.options.get("maxCostUsd"),
            "acpPermission": run.options.get("acpPermission"),
            "github": github(chat, run),
            "diffStats": diff_stats(run),
            "usage": run.usage,
            "costUsd": run.cost_usd,
            "messages": [message(m) for m in messages],
            "inMemory": None,
        }
    )
    return view


def status(
    run: Run | RunState, expected_seconds: float, now: datetime | None = None
) -> dict[str, Any]:
    return {
        "runId": run.run_id,
        "status": run.status.value,
        "progress": estimate_progress(
            run.status, run.started_at, now or utcnow(), expected_seconds
        ),
        "error": run.error,
        "statusDetail": run.status_detail,
        "startedAt": iso(run.started_at),
        "completedAt": iso(run.completed_at),
    }


def agents(runtimes: Mapping[str, AgentRuntime]) -> list[dict[str, Any]]:
    """The runtimes this server offers and whether each is ready (``/api/v1/agents``, and
    the dashboard's new-task form)."""
    out = []
    for name, runtime in runtimes.items():
        state = runtime.availability()
        out.append(
            {
                "agent": name,
                "configured": state.configured,
                "detail": state.detail,
                "defaultModel": state.default_model,
            }
        )
    return out
