"""What the sync and async clients share: defaults, paths, the SSE parser, resumption."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

from agentyard.client.models import Event

DEFAULT_URL = "http://127.0.0.1:8080"
KEY_FILE = Path(".agentyard") / "admin.key"
API = "/api/v1"

TERMINAL = frozenset({"completed", "failed", "cancelled", "interrupted"})
"""Statuses that never change."""


def default_url(url: str | None = None) -> str:
    return (url or os.environ.get("AGENTYARD_URL") or DEFAULT_URL).rstrip("/")


def default_key(key: str | None = None) -> str | None:
    """The key given, else ``AGENTYARD_KEY``, else the local server's ``admin.key`` (in
    ``AGENTYARD_DATA_DIR``, else ``./.agentyard``: where ``make serve`` writes it), else none."""
    if key:
        return key
    if os.environ.get("AGENTYARD_KEY"):
        return os.environ["AGENTYARD_KEY"].strip()
    data_dir = os.environ.get("AGENTYARD_DATA_DIR")
    path = Path(data_dir) / "admin.key" if data_dir else KEY_FILE
    try:
        return path.read_text().strip() or None
    except OSError:
        return None


def headers(key: str | None) -> dict[str, str]:
    from agentyard import __version__

    out = {"User-Agent": f"agentyard-client/{__version__}"}
    if key:
        out["Authorization"] = f"Bearer {key}"
    return out


def seg(value: str) -> str:
    """One path segment: a run id with a slash must not reach another endpoint."""
    return quote(value, safe="")


def file_path(path: str) -> str:
    """A workspace path inside a URL: slashes kept, everything else escaped."""
    return quote(path.lstrip("/"), safe="/")


def params(**values: Any) -> dict[str, Any]:
    """Query parameters without the ones left unset; booleans as the API spells them."""
    return {
        k: (str(v).lower() if isinstance(v, bool) else v)
        for k, v in values.items()
        if v is not None
    }


class SseParser:
    """Server-sent events, fed one line at a time; yields the data frames with an id."""

    def __init__(self) -> None:
        self._id: int | None = None
        self._data: list[str] = []

    def feed(self, line: str) -> Event | None:
        if line == "":
            data, event_id = self._data, self._id
            self._id, self._data = None, []
            # Frames without an id (the /agent/stream ``resume`` hello) are not run events.
            if data and event_id is not None:
                return Event.of(event_id, json.loads("\n".join(data)))
        elif line.startswith("id:"):
            self._id = int(line[3:].strip())
        elif line.startswith("data:"):
            self._data.append(line[5:].lstrip())
        return None


@dataclass
class Resume:
    """Where a stream is: the last event it delivered, and its retries since progress.

    A stream resumes from ``last`` after any break, and drops any event at or below it, so no
    event is lost or delivered twice, however often the connection drops.
    """

    last: int = 0
    failures: int = 0
    finished: bool = False
    max_failures: int = 20
    delays: list[float] = field(default_factory=lambda: [0.1, 0.25, 0.5, 1.0, 2.0])

    def headers(self) -> dict[str, str]:
        return {"Last-Event-ID": str(self.last)} if self.last else {}

    def accept(self, event: Event) -> bool:
        """Whether ``event`` is new (then it is the stream's latest)."""
        if event.seq <= self.last:
            return False
        self.last = event.seq
        self.failures = 0
        self.finished = event.type == "finish"
        return True

    def next_delay(self) -> float | None:
        """Seconds before the next attempt, or None to give up."""
        self.failures += 1
        if self.failures > self.max_failures:
            return None
        return self.delays[min(self.failures - 1, len(self.delays) - 1)]
