"""EventWriter: one run's events on their way into the event log.

The agent never waits for the database while it is healthy and reachable: events go into a
bounded in-memory buffer and one writer task appends them in order, in batches (so a chatty
agent costs one transaction per batch, not per line). When the database is away the writer
retries with backoff and the buffer holds what the agent produces meanwhile; once the
database is back the events are stored in order, each with its gap-free ``seq``, and only then
published. Past the buffer's size or the outage limit, or on a full disk, the writer gives up
and the next ``emit`` (or ``flush``) raises :class:`DatabaseFault`, which ends the run.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections import deque
from typing import Any

from agentyard.core.events import Event
from agentyard.events.log import EventLog
from agentyard.store.faults import DatabaseFault, RetryPolicy

_BATCH = 500
_HIGH_WATER = 2000
"""While the database keeps up, an agent ahead by this many events waits for it."""
_YIELD_EVERY = 100


def _size(event: Event) -> int:
    delta = event.get("delta")
    return 200 + (len(delta) if isinstance(delta, str) else 0)


class EventWriter:
    def __init__(
        self,
        log: EventLog,
        run_id: str,
        policy: RetryPolicy,
        max_buffer_bytes: int,
        stored_seq: int | None = None,
    ) -> None:
        self.stored_seq = stored_seq
        """The ``seq`` of the run's last stored event, when known (the writer is then the
        run's only appender): a batch retried after a lost answer is not stored twice."""
        self.log = log
        self.run_id = run_id
        self.policy = policy
        self.max_buffer_bytes = max_buffer_bytes
        self._pending: deque[tuple[Event, int]] = deque()
        self._bytes = 0
        self._values: dict[str, Any] = {}
        self._chat: tuple[str, dict[str, Any]] | None = None
        self._failure: BaseException | None = None
        self._outage = False
        self._wake = asyncio.Event()
        self._progress = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._unyielded = 0

    @property
    def pending(self) -> int:
        return len(self._pending)

    async def emit(self, *events: Event, **run_values: Any) -> None:
        """Queue events (and values for the run's row) for storing, in order."""
        self._check()
        for event in events:
            size = _size(event)
            self._pending.append((event, size))
            self._bytes += size
        self._values.update(run_values)
        if self._bytes > self.max_buffer_bytes:
            self._failure = DatabaseFault(
                "the database could not keep up: the run's event buffer "
                f"({self.max_buffer_bytes} bytes) is full"
            )
            raise self._failure
        self._ensure_task()
        self._wake.set()
        self._unyielded += len(events)
        if self._unyielded >= _YIELD_EVERY:
            # A runtime may emit thousands of lines from one read without ever suspending:
            # let the rest of the server (requests, heartbeats) in between.
            self._unyielded = 0
            await asyncio.sleep(0)
        # Back-pressure only while the database answers: during an outage the agent goes on
        # and the buffer absorbs its output.
        while len(self._pending) > _HIGH_WATER and not self._outage and self._failure is None:
            self._progress.clear()
            await self._progress.wait()
        self._check()

    def update_chat(self, chat_id: str, **values: Any) -> None:
        """Values for the run's chat, stored with the run's next write (``emit`` soon after,
        which sends it). Lost only if the run ends before that write, when nothing needs them:
        they say where the chat's workspace is, which the next run finds again."""
        self._chat = (chat_id, {**(self._chat[1] if self._chat else {}), **values})

    async def flush(self) -> None:
        """Wait until everything queued is stored; raise why if it cannot be."""
        while (self._pending or self._values or self._chat) and self._failure is None:
            self._ensure_task()
            self._wake.set()
            self._progress.clear()
            await self._progress.wait()
        self._check()

    def discard(self) -> None:
        """Forget what could not be stored (the run is ending without it)."""
        self._pending.clear()
        self._bytes = 0
        self._values.clear()
        self._chat = None

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    def _check(self) -> None:
        if self._failure is not None:
            raise self._failure

    def _ensure_task(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._write(), name=f"events-{self.run_id}")

    def _retrying(self) -> None:
        self._outage = True
        self._progress.set()  # an emitter held back by back-pressure may go on

    async def _write(self) -> None:
        try:
            while True:
                await self._wake.wait()
                # One turn of the loop first: whoever woke the writer goes on to its next
                # wait (a run starting its agent: the start overlaps this write), and what it
                # queues meanwhile goes into the same transaction.
                await asyncio.sleep(0)
                self._wake.clear()
                while self._pending or self._values or self._chat:
                    batch = list(itertools.islice(self._pending, _BATCH))
                    values, self._values = self._values, {}
                    chat, self._chat = self._chat, None
                    attempts = 0

                    async def append(
                        batch: list[tuple[Event, int]] = batch,
                        values: dict[str, Any] = values,
                        chat: tuple[str, dict[str, Any]] | None = chat,
                    ) -> list[Any]:
                        nonlocal attempts
                        attempts += 1
                        return await self.log.append(
                            self.run_id,
                            *(event for event, _ in batch),
                            run_values=values or None,
                            retry_after_seq=self.stored_seq if attempts > 1 else None,
                            chat_values=chat,
                        )

                    try:
                        stored = await self.policy.run(
                            append, what="append events", on_retry=self._retrying
                        )
                    except Exception as exc:  # RunEnded, DatabaseFault, or a bug
                        self._failure = exc
                        return
                    if stored and self.stored_seq is not None:
                        self.stored_seq = stored[-1].seq
                    for _ in batch:
                        _, size = self._pending.popleft()
                        self._bytes -= size
                    self._outage = False
                    self._progress.set()
        finally:
            self._progress.set()
