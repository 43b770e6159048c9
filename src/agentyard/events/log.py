"""EventLog: the single way events are written and read.

Every event is stored with a gap-free per-run ``seq`` before anyone is told of it; readers
resume from any ``seq`` and always see the table's order.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable
from typing import Any

from agentyard.core import details
from agentyard.core import events as ev
from agentyard.core.events import Event
from agentyard.core.models import StoredEvent
from agentyard.core.status import RunStatus
from agentyard.events.bus import LocalBus
from agentyard.metrics import Metrics
from agentyard.store.faults import is_transient
from agentyard.store.store import Store

_PAGE = 500
_FOLD_PAGE = 500
_RETRY_READ_SECONDS = 0.5


class EventLog:
    def __init__(self, store: Store, bus: LocalBus, metrics: Metrics | None = None) -> None:
        self.store = store
        self.bus = bus
        self.metrics = metrics

    async def append(
        self,
        run_id: str,
        *events: Event,
        run_values: dict[str, Any] | None = None,
        retry_after_seq: int | None = None,
        chat_values: tuple[str, dict[str, Any]] | None = None,
    ) -> list[StoredEvent]:
        """Store, then publish (``retry_after_seq``, ``chat_values``: see
        ``Store.append_events``)."""
        stored = await self.store.append_events(
            run_id, list(events), run_values, retry_after_seq, chat_values
        )
        self._published(run_id, stored)
        return stored

    async def finish(
        self,
        run_id: str,
        status: RunStatus,
        *,
        error: str | None = None,
        status_detail: str | None = None,
        sources: Iterable[RunStatus] | None = None,
        **values: Any,
    ) -> bool:
        """End the run (status + ``error`` event if any + ``finish``) unless it already ended;
        its assistant message is folded from its events at the same time. Without a
        ``status_detail``, the detail says what the status and error do."""
        if status_detail is None:
            status_detail = details.ended(status, error)
        final: list[Event] = []
        if error and status is not RunStatus.CANCELLED:
            final.append(ev.error(error))
        final.append(ev.finish(run_id, status.value))
        stored = await self.store.finish_run(
            run_id,
            status,
            error=error,
            status_detail=status_detail,
            events=final,
            assistant_parts=await self.assistant_parts(run_id),
            sources=sources,
            **values,
        )
        if stored is None:
            return False
        self._published(run_id, stored)
        return True

    def _published(self, run_id: str, stored: list[StoredEvent]) -> None:
        if self.metrics is not None:
            self.metrics.events_appended.inc(len(stored))
        self.bus.publish(run_id, stored)

    async def assistant_parts(self, run_id: str) -> list[dict[str, Any]]:
        """The run's assistant message so far, folded from its events.

        Page by page, so that a run with a huge output never holds the event loop (the
        database awaits between pages let every other request through)."""
        folder = ev.MessageFolder()
        last = 0
        while True:
            page = await self.store.read_events(run_id, last, _FOLD_PAGE)
            folder.feed(item.data for item in page)
            if len(page) < _FOLD_PAGE:
                break
            last = page[-1].seq
            await asyncio.sleep(0)
        return folder.parts()

    async def read(self, run_id: str, after_seq: int = 0) -> list[StoredEvent]:
        return await self.store.read_events(run_id, after_seq)

    async def follow(
        self, run_id: str, after_seq: int = 0, keepalive: float = 15.0
    ) -> AsyncIterator[StoredEvent | None]:
        """Events after ``after_seq``, live, until ``finish``; ``None`` marks a keep-alive tick."""
        async for batch in self.follow_batches(run_id, after_seq, keepalive):
            if batch is None:
                yield None
                continue
            for item in batch:
                yield item

    async def follow_batches(
        self, run_id: str, after_seq: int = 0, keepalive: float = 15.0
    ) -> AsyncIterator[list[StoredEvent] | None]:
        """Like :meth:`follow`, but every event ready at once comes in one list (a page of
        the table, or all the live events buffered since the last look): a stream writes
        them in one go, so that a subscriber behind catches up in one write, not one each.
        A list is never empty; the last one ends with ``finish``."""
        sub = self.bus.subscribe(run_id)  # before reading, so nothing slips between the two
        last = after_seq
        # One timer per keep-alive interval, not one per wait: a stream that sent something
        # since the timer was set is only looked at again a keep-alive after that.
        loop = asyncio.get_running_loop()
        quiet_since = loop.time()
        tick = False
        timer: asyncio.TimerHandle

        def check() -> None:
            nonlocal timer, tick
            due = quiet_since + keepalive
            if loop.time() >= due:
                tick = True
                sub.wake.set()
                due = loop.time() + keepalive
            timer = loop.call_at(due, check)

        timer = loop.call_at(quiet_since + keepalive, check)
        try:
            while not self.bus.closing:
                # Catch up from the table; a wake-up arriving meanwhile marks it stale again.
                sub.stale = False
                while True:
                    try:
                        page = await self.store.read_events(run_id, last, _PAGE)
                    except Exception as exc:
                        if not is_transient(exc):
                            raise
                        # The database is away: the stream stays open (keep-alives) and
                        # picks up where it was once the table can be read again.
                        yield None
                        await asyncio.sleep(min(keepalive, _RETRY_READ_SECONDS))
                        if self.bus.closing:
                            return
                        continue
                    for n, item in enumerate(page):
                        if item.type == ev.FINISH:
                            yield page[: n + 1]
                            return
                    if page:
                        last = page[-1].seq
                        yield page
                    if len(page) < _PAGE:
                        break
                # Then take live events from the buffer while they follow on without a gap.
                while not sub.stale:
                    batch: list[StoredEvent] = []
                    finished = False
                    while sub.buffer and not sub.stale:
                        item = sub.buffer.popleft()
                        if item.seq <= last:
                            continue
                        if item.seq != last + 1:
                            sub.stale = True
                            break
                        batch.append(item)
                        last = item.seq
                        if item.type == ev.FINISH:
                            finished = True
                            break
                    if batch:
                        yield batch
                        quiet_since = loop.time()
                    if finished:
                        return
                    if sub.stale:
                        break
                    sub.wake.clear()
                    if sub.buffer or sub.stale:
                        continue
                    if not tick:
                        await sub.wake.wait()
                    if tick:
                        tick = False
                        yield None
                        quiet_since = loop.time()
                        # A cheap re-read guards against a wake-up lost between processes.
                        sub.stale = True
                    if self.bus.closing:
                        return
        finally:
            timer.cancel()
            self.bus.unsubscribe(sub)
