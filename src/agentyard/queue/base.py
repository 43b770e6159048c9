"""TaskQueue: how a created run reaches an executor, and how cancel reaches it."""

from __future__ import annotations

from typing import Protocol

from sqlalchemy.ext.asyncio import AsyncConnection

from agentyard.core.models import Run

SHUTTING_DOWN = "server shutting down"
"""The ``statusDetail`` of a run interrupted because its server or worker stopped."""


def shutdown_error(grace_seconds: float) -> str:
    """The ``error`` of such a run: what happened, and that it can be continued."""
    within = (
        f" and did not finish within the {grace_seconds:g} s grace period" if grace_seconds else ""
    )
    return (
        f"The server shut down while the run was executing{within}; continue the task to resume it"
    )


class TaskQueue(Protocol):
    async def start(self) -> None:
        """Begin executing runs (no-op for a queue whose executors live elsewhere)."""

    def drain(self, grace_seconds: float) -> None:
        """Shutting down: take no more runs; those executing here may finish within
        ``grace_seconds``, then they are interrupted (``statusDetail`` SHUTTING_DOWN).
        Queued runs stay queued for the next executor. Idempotent."""

    def hurry(self) -> None:
        """End the grace period now (a second signal): interrupt what still executes."""

    async def stop(self) -> None:
        """Drain (at once if no drain began), wait for it to end, then release everything."""

    async def in_transaction(self, conn: AsyncConnection, run: Run) -> None:
        """Called in the transaction that inserts a run (to enqueue it atomically)."""

    async def enqueued(self, run_id: str) -> None:
        """A queued run was committed; wake an executor."""

    async def cancel(self, run_id: str) -> bool:
        """Stop a run wherever it executes; True once it has ended ``cancelled``."""
