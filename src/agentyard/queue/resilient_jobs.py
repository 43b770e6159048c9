"""A procrastinate job manager that rides out database outages.

procrastinate's worker stops (and aborts every job it runs) when one of its side tasks
fails: a heartbeat during a PostgreSQL restart, the LISTEN connection, or a job fetch that
hits a foreign-key violation because another process pruned this worker's row while the
database was away. Here those calls retry or skip a beat instead; the heartbeat re-registers
the worker under its own id when its row is gone; and a job's final status is retried until
it lands, so the worker just goes on once the database is back.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, TypeVar

import structlog
from procrastinate import jobs, manager

from agentyard.store.faults import causes, is_transient, public_message, sqlstate

log = structlog.get_logger(__name__)

T = TypeVar("T")

# A heartbeat that also brings a pruned worker back under its own id.
_REVIVE_WORKER = (
    "INSERT INTO procrastinate_workers (id, last_heartbeat) OVERRIDING SYSTEM VALUE"
    " VALUES (%(worker_id)s, NOW()) ON CONFLICT (id) DO UPDATE SET last_heartbeat = NOW()"
)
_FOREIGN_KEY_VIOLATION = "23503"
_RETRY_SECONDS = 1.0


def _pruned(exc: BaseException) -> bool:
    return any(sqlstate(item) == _FOREIGN_KEY_VIOLATION for item in causes(exc))


class ResilientJobManager(manager.JobManager):
    last_failure: float | None = None
    """When the database last failed this manager (monotonic); ``/readyz`` reports it."""

    def _failed(self, what: str, exc: BaseException) -> None:
        if self.last_failure is None:
            log.warning("job queue: database unavailable", what=what, error=public_message(exc))
        self.last_failure = time.monotonic()

    def _recovered(self) -> None:
        if self.last_failure is not None:
            log.info("job queue: database reachable again")
        self.last_failure = None

    async def _until_done(self, what: str, op: Callable[[], Awaitable[T]]) -> T:
        while True:
            try:
                result = await op()
            except Exception as exc:
                if not is_transient(exc):
                    raise
                self._failed(what, exc)
                await asyncio.sleep(_RETRY_SECONDS)
                continue
            self._recovered()
            return result

    async def update_heartbeat(self, worker_id: int) -> None:
        try:
            await self.connector.execute_query_async(query=_REVIVE_WORKER, worker_id=worker_id)
        except Exception as exc:
            if not is_transient(exc):
                raise
            self._failed("heartbeat", exc)  # a missed beat; the next one may land
            return
        self._recovered()

    async def fetch_job(self, queues: Iterable[str] | None, worker_id: int) -> jobs.Job | None:
        try:
            job = await super().fetch_job(queues=queues, worker_id=worker_id)
        except Exception as exc:
            if _pruned(exc):
                # Pruned while the database was away: come back under the same id.
                log.warning("job queue: this worker was pruned; re-registering", worker=worker_id)
                await self.update_heartbeat(worker_id)
                return None
            if not is_transient(exc):
                raise
            self._failed("fetch a job", exc)
            return None
        self._recovered()
        return job

    async def finish_job(self, job: jobs.Job, status: jobs.Status, delete_job: bool) -> None:
        await self._until_done(
            "finish a job",
            lambda: manager.JobManager.finish_job(
                self, job=job, status=status, delete_job=delete_job
            ),
        )

    async def register_worker(self) -> int:
        return await self._until_done(
            "register the worker", lambda: manager.JobManager.register_worker(self)
        )

    async def unregister_worker(self, worker_id: int) -> None:
        try:
            await super().unregister_worker(worker_id)
        except Exception as exc:
            if not is_transient(exc):
                raise
            # Its heartbeat stops: any process prunes the row later.
            self._failed("unregister the worker", exc)

    async def prune_stalled_workers(self, seconds_since_heartbeat: float) -> list[int]:
        try:
            pruned: list[int] = await super().prune_stalled_workers(seconds_since_heartbeat)
        except Exception as exc:
            if not is_transient(exc):
                raise
            self._failed("prune stalled workers", exc)
            return []
        return pruned

    async def listen_for_jobs(self, *, on_notification: Any, queues: Any = None) -> None:
        # procrastinate's listener gives up when it cannot (re)connect; polling covers the
        # gap, and listening starts again once the database answers.
        while True:
            try:
                await super().listen_for_jobs(on_notification=on_notification, queues=queues)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self._failed("listen for jobs", exc)
            await asyncio.sleep(_RETRY_SECONDS)
