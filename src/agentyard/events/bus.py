"""In-process wake-ups for event subscribers.

A subscriber gets the stored events its process published, in a bounded buffer; when the
buffer overflows (a slow client) or a wake-up carries no events (another process appended),
the subscriber reads the events table instead. So the run never waits for a subscriber.
"""

from __future__ import annotations

import asyncio
from collections import deque

from agentyard.core.models import StoredEvent


class Subscription:
    def __init__(self, run_id: str, capacity: int) -> None:
        self.run_id = run_id
        self.capacity = capacity
        self.buffer: deque[StoredEvent] = deque()
        self.stale = False
        """True when the buffer cannot be trusted to be complete: read the table."""
        self.wake = asyncio.Event()

    def push(self, events: list[StoredEvent] | None) -> None:
        if events is None or len(self.buffer) + len(events) > self.capacity:
            self.buffer.clear()
            self.stale = True
        else:
            self.buffer.extend(events)
        self.wake.set()


class LocalBus:
    def __init__(self, capacity: int = 1000) -> None:
        self.capacity = capacity
        self._subs: dict[str, set[Subscription]] = {}
        self.closing = False
        """Set at shutdown: every follower ends (a stream closes cleanly, clients reconnect)."""

    def close(self) -> None:
        """End every follower now (the server is shutting down)."""
        self.closing = True
        self.wake_all()

    @property
    def subscribers(self) -> int:
        """Followers in this process (each one an open event stream)."""
        return sum(len(subs) for subs in self._subs.values())

    def subscribe(self, run_id: str) -> Subscription:
        sub = Subscription(run_id, self.capacity)
        self._subs.setdefault(run_id, set()).add(sub)
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        subs = self._subs.get(sub.run_id)
        if subs is not None:
            subs.discard(sub)
            if not subs:
                del self._subs[sub.run_id]

    def publish(self, run_id: str, events: list[StoredEvent] | None) -> None:
        """Wake the run's subscribers; ``None`` means "new events, read them from the table"."""
        for sub in self._subs.get(run_id, ()):
            sub.push(events)

    def wake_all(self) -> None:
        for subs in self._subs.values():
            for sub in subs:
                sub.push(None)
