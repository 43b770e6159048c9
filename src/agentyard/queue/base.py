"""TaskQueue: how a created run reaches an executor, and how cancel reaches it."""

from __future__ import annotations

from typing import Protocol

from sqlalchemy.ext.asyncio import AsyncConnection

from agentyard.core.models import Run


class TaskQueue(Protocol):
    async def start(self) -> None:
        """Begin executing runs (no-op for a queue whose executors live elsewhere)."""

    async def stop(self) -> None:
        """Stop taking runs; runs still executing are left to reconciliation."""

    async def in_transaction(self, conn: AsyncConnection, run: Run) -> None:
        """Called in the transaction that inserts a run (to enqueue it atomically)."""

    async def enqueued(self, run_id: str) -> None:
        """A queued run was committed; wake an executor."""

    async def cancel(self, run_id: str) -> bool:
        """Stop a run wherever it executes; True once it has ended ``cancelled``."""
