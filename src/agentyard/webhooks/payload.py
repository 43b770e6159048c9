"""The message of a run's status change, built from the run and chat as they are after it."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from agentyard.api.views import github
from agentyard.core.clock import iso
from agentyard.core.models import Chat, Run
from agentyard.core.status import RunStatus

EVENTS = tuple(s.value for s in RunStatus)
"""What an endpoint may subscribe to (or ``*``, every one)."""


def event_type(status: RunStatus) -> str:
    return f"run.{status.value}"


def status_changed(run: Run, chat: Chat, now: datetime) -> dict[str, Any]:
    return {
        "type": event_type(run.status),
        "timestamp": iso(now),
        "runId": run.run_id,
        "taskId": run.run_id,
        "groupId": run.group_id,
        "chatId": run.chat_id,
        "status": run.status.value,
        "statusDetail": run.status_detail,
        "error": run.error,
        "completedAt": iso(run.completed_at),
        "github": github(chat, run),
        "usage": run.usage,
        "costUsd": run.cost_usd,
    }


def wants(events: list[str], status: RunStatus) -> bool:
    return "*" in events or status.value in events
