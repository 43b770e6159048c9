"""TaskQueue: how a created run reaches an executor, and how cancel reaches it."""

from __future__ import annotations

import asyncio
from collections.abc import Collection
from typing import Any, Protocol

import structlog
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


log = structlog.get_logger(__name__)


async def grace(
    active: Collection[asyncio.Future[Any]], seconds: float, hurry: asyncio.Event
) -> None:
    """Let the runs executing here end on their own, for ``seconds`` at most or until
    ``hurry`` is set (a second signal): the first part of a drain."""
    if not active or seconds <= 0:
        return
    log.info("waiting for runs to finish", runs=len(active), grace_seconds=seconds)
    all_done = asyncio.ensure_future(asyncio.wait(active))
    hurried = asyncio.ensure_future(hurry.wait())
    await asyncio.wait([all_done, hurried], timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
    all_done.cancel()
    hurried.cancel()


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
