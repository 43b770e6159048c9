"""The embedded delivery loop: in the process that runs the LocalQueue, the outbox is the
queue (as queued runs are for LocalQueue).

Due rows are leased one per URL at a time, so one receiver sees a run's messages in the
order they were written, and a slow receiver holds up only itself. A crash mid-attempt
leaves a lease, which the next start lets go of (this process was the only claimer).
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import httpx
import structlog

from agentyard.core.clock import utcnow
from agentyard.store.faults import public_message
from agentyard.webhooks.delivery import Deliverer, Outcome, new_client

log = structlog.get_logger(__name__)


class Dispatcher:
    def __init__(
        self,
        deliverer: Deliverer,
        poll_seconds: float = 1.0,
        max_parallel: int = 16,
        on_outcome: Outcome | None = None,
    ) -> None:
        self.deliverer = deliverer
        if on_outcome is not None:
            # Told after every attempt: delivered, retrying or failed (a metrics counter).
            deliverer.on_outcome = on_outcome
        self.poll_seconds = poll_seconds
        self.max_parallel = max_parallel
        self._wake = asyncio.Event()
        self._loop_task: asyncio.Task[None] | None = None
        self._attempts: dict[str, asyncio.Task[None]] = {}
        """In flight, by URL: at most one per URL."""

    async def start(self) -> None:
        released = await self.deliverer.store.release_leases()
        if released:
            log.warning("webhook deliveries left mid-attempt; retrying them", count=released)
        self._loop_task = asyncio.create_task(self._run(), name="webhook-dispatcher")

    async def stop(self) -> None:
        if self._loop_task is not None:
            self._loop_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._loop_task
            self._loop_task = None
        # Attempts cut short keep their lease; the next start lets go of it.

    def wake(self) -> None:
        self._wake.set()

    async def _run(self) -> None:
        async with new_client() as client:
            try:
                while True:
                    try:
                        started = await self._dispatch(client)
                    except Exception as exc:
                        log.warning("dispatching webhooks failed", error=public_message(exc))
                        started = 0
                    if not started:
                        self._wake.clear()
                        with contextlib.suppress(TimeoutError):
                            await asyncio.wait_for(self._wake.wait(), self.poll_seconds)
            finally:
                for task in self._attempts.values():
                    task.cancel()
                await asyncio.gather(*self._attempts.values(), return_exceptions=True)
                self._attempts.clear()

    async def _dispatch(self, client: httpx.AsyncClient) -> int:
        room = self.max_parallel - len(self._attempts)
        if room <= 0:
            return 0
        due = await self.deliverer.store.due(utcnow(), room * 4, set(self._attempts))
        first: dict[str, str] = {}
        for delivery_id, url in due:
            first.setdefault(url, delivery_id)
        ids = list(first.values())[:room]
        claimed = await self.deliverer.claim(ids)
        for row in claimed:
            url = row["url"]
            self._attempts[url] = asyncio.create_task(
                self._attempt(row, client), name=f"webhook-{row['delivery_id']}"
            )
        return len(claimed)

    async def _attempt(self, row: dict[str, Any], client: httpx.AsyncClient) -> None:
        try:
            await self.deliverer.attempt(row, client)
        except Exception as exc:
            # The lease lapses and the row is tried again.
            log.warning(
                "webhook attempt failed to complete",
                delivery_id=row["delivery_id"],
                error=public_message(exc),
            )
        finally:
            self._attempts.pop(row["url"], None)
            self._wake.set()
