"""Scale-out delivery: a procrastinate job (``agentyard.webhook``) per attempt.

The first attempt's job is deferred in the transaction that writes the outbox row, locked
per URL so one receiver gets a run's messages in order; a retry is deferred again with
``schedule_at`` and no lock (a failing message never holds up the next ones). Should a job
be lost, the periodic ``requeue`` defers one for every due row that has none.
"""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import httpx
import procrastinate
import sqlalchemy as sa
import structlog
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from agentyard.core.clock import utcnow
from agentyard.store.webhooks import PENDING
from agentyard.webhooks.delivery import Deliverer, new_client

log = structlog.get_logger(__name__)

TASK = "agentyard.webhook"
STRANDED_AFTER = timedelta(seconds=60)

_DEFER = sa.text(
    "SELECT unnest(procrastinate_defer_jobs_v1(ARRAY[ROW(:queue, :task, 0, :lock, NULL,"
    " CAST(:args AS jsonb), CAST(:at AS timestamptz))::procrastinate_job_to_defer_v1]))"
)
_HAS_JOB = (
    "SELECT 1 FROM procrastinate_jobs WHERE task_name = :task"
    " AND args->>'delivery_id' = :id AND status IN ('todo', 'doing')"
)


class WebhookJobs:
    def __init__(
        self, app: procrastinate.App, queue: str, engine: AsyncEngine, deliverer: Deliverer
    ) -> None:
        self.queue = queue
        self.engine = engine
        self.deliverer = deliverer
        self._client: httpx.AsyncClient | None = None
        app.task(name=TASK, queue=queue)(self._deliver)

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def defer_in(self, conn: AsyncConnection, rows: list[dict[str, Any]]) -> None:
        """First attempts, in the transaction that writes their outbox rows."""
        for row in rows:
            await self._defer(conn, row["delivery_id"], _lock(row), None)

    async def defer(self, rows: list[dict[str, Any]]) -> None:
        """Attempts due now (a redelivery), unlocked."""
        async with self.engine.begin() as conn:
            for row in rows:
                await self._defer(conn, row["delivery_id"], None, None)

    async def requeue(self) -> int:
        """A job for every due pending row that has none (its job was lost)."""
        count = 0
        for row in await self.deliverer.store.stranded(utcnow() - STRANDED_AFTER):
            async with self.engine.begin() as conn:
                exists = (
                    await conn.execute(sa.text(_HAS_JOB), {"task": TASK, "id": row["delivery_id"]})
                ).first()
                if exists is None:
                    await self._defer(conn, row["delivery_id"], None, None)
                    count += 1
        if count:
            log.warning("webhook deliveries without a job; deferred again", count=count)
        return count

    async def _defer(
        self, conn: AsyncConnection, delivery_id: str, lock: str | None, at: Any
    ) -> None:
        await conn.execute(
            _DEFER,
            {
                "queue": self.queue,
                "task": TASK,
                "lock": lock,
                "args": json.dumps({"delivery_id": delivery_id}),
                "at": at,
            },
        )

    async def _deliver(self, delivery_id: str) -> None:
        claimed = await self.deliverer.claim([delivery_id])
        if not claimed:
            return  # delivered, failed, leased by another job, or not due yet
        if self._client is None:
            self._client = new_client()
        state = await self.deliverer.attempt(claimed[0], self._client)
        if state != PENDING:
            return
        after = await self.deliverer.store.get_delivery(delivery_id)
        if after is not None and after["state"] == PENDING:
            async with self.engine.begin() as conn:
                await self._defer(conn, delivery_id, None, after["next_attempt_at"])


def _lock(row: dict[str, Any]) -> str:
    return "webhook:" + (row["endpoint_id"] or f"run:{row['run_id']}")
