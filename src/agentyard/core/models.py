"""Domain records: a run, its chat, a message, a stored event."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property
from typing import Any

from agentyard.core import ids
from agentyard.core.events import Event
from agentyard.core.status import RunStatus


@dataclass
class Chat:
    chat_id: str
    user_id: str
    created_at: datetime
    title: str | None = None
    repo_url: str | None = None
    base_branch: str | None = None
    created_branch: str | None = None
    workspace_path: str | None = None
    env_encrypted: str | None = field(default=None, repr=False)
    """The chat's environment variables, sealed (JSON inside); never shown."""
    webhook_url: str | None = None
    """The task's own webhook (``webhookUrl``), inherited by follow-ups."""
    webhook_secret_sealed: str | None = field(default=None, repr=False)
    """Its signing secret, sealed; shown once, in the create response."""


@dataclass
class Run:
    run_id: str
    chat_id: str
    user_id: str
    agent: str
    model: str | None
    prompt: str
    status: RunStatus
    user_message_id: str
    assistant_message_id: str
    created_at: datetime
    group_id: str | None = None
    status_detail: str | None = None
    error: str | None = None
    previous_run_id: str | None = None
    session_id: str | None = None
    usage: dict[str, Any] | None = None
    cost_usd: float | None = None
    totals: dict[str, Any] | None = None
    git: dict[str, Any] | None = None
    options: dict[str, Any] = field(default_factory=dict)
    event_seq: int = 0
    worker_id: str | None = None
    heartbeat_at: datetime | None = None
    started_at: datetime | None = None
    completed_at: datetime | None = None

    @classmethod
    def queued(
        cls,
        chat_id: str,
        user_id: str,
        agent: str,
        model: str | None,
        prompt: str,
        created_at: datetime,
        *,
        previous_run_id: str | None = None,
        options: dict[str, Any] | None = None,
    ) -> Run:
        """A new run waiting in the queue: ids of its own, and of its two messages."""
        return cls(
            run_id=ids.new_run_id(),
            chat_id=chat_id,
            user_id=user_id,
            agent=agent,
            model=model,
            prompt=prompt,
            status=RunStatus.QUEUED,
            user_message_id=ids.new_message_id(),
            assistant_message_id=ids.new_message_id(),
            created_at=created_at,
            previous_run_id=previous_run_id,
            options=options or {},
        )

    def user_message(self) -> Message:
        """The run's prompt, as the user's message in its chat."""
        return Message(
            message_id=self.user_message_id,
            chat_id=self.chat_id,
            run_id=self.run_id,
            role="user",
            parts=[{"type": "text", "text": self.prompt}],
            created_at=self.created_at,
        )


@dataclass(frozen=True)
class RunState:
    """What ``/status`` shows of a run, and whose run it is: a narrow read of its row."""

    run_id: str
    user_id: str
    status: RunStatus
    error: str | None
    status_detail: str | None
    started_at: datetime | None
    completed_at: datetime | None


@dataclass
class Message:
    message_id: str
    chat_id: str
    run_id: str
    role: str
    parts: list[dict[str, Any]]
    created_at: datetime


@dataclass(frozen=True)
class StoredEvent:
    run_id: str
    seq: int
    data: Event
    created_at: datetime

    @property
    def type(self) -> str:
        return str(self.data.get("type"))

    @cached_property
    def json(self) -> str:
        """The event as compact JSON, serialised once however many streams send it."""
        return json.dumps(self.data, separators=(",", ":"))

    @cached_property
    def frame(self) -> bytes:
        """The event as an SSE frame (``id:`` and ``data:``), encoded once for every stream."""
        return f"id: {self.seq}\ndata: {self.json}\n\n".encode()
