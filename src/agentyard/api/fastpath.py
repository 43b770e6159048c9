"""``GET /api/v1/tasks/{id}/status`` answered before the framework's routing.

It is the request clients poll, many times a run: here it costs the key check (remembered,
see ``store.keycache``), one read of the run and one ``json.dumps``, without the routing,
dependency injection and response validation of every other route. Only the plain success
is answered here (the caller's own run, not waiting in the queue): anything else (no or a
bad key, someone else's run, an unknown id, a queued run whose detail needs more queries)
goes on to the route itself, so that every error and every body stays the route's own.
It sits outside the framework's own middleware, inside the access log, which records it
like any other request.

A run's status body is final once the run has ended (a terminal status never changes, nor
do its error, detail and times): the bodies of recently ended runs are remembered, so that
polling a finished run costs only the key check. A running run's row is remembered with the
database's change mark (``Store.change_mark``: SQLite's ``data_version``, which moves with
every commit of any process), and read again as soon as the mark has moved; its body, whose
progress moves with the time, is rendered again when the progress has. Where the database
has no such mark (PostgreSQL), a running run is read every time.
"""

from __future__ import annotations

import json
import re
from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime
from typing import TypeVar

from starlette.types import ASGIApp, Receive, Scope, Send

from agentyard.api import views
from agentyard.core import ids
from agentyard.core.clock import utcnow
from agentyard.core.models import RunState
from agentyard.core.progress import estimate_progress
from agentyard.core.status import RunStatus
from agentyard.server import Agentyard

_PATH = re.compile(r"/api/v1/tasks/([^/]+)/status")
_HEADERS = [(b"content-type", b"application/json")]
T = TypeVar("T")

_REMEMBERED = 4096
"""How many ended runs' status bodies, and running runs' rows, are remembered (a few hundred
bytes each)."""


@dataclass(frozen=True)
class _Running:
    """A running run's row as read after the database's change ``mark``, and its body at
    ``progress``."""

    mark: object
    run: RunState
    progress: int
    body: bytes


class StatusFastPath:
    def __init__(self, app: ASGIApp, yard: Agentyard) -> None:
        self.app = app
        self.yard = yard
        self._final: OrderedDict[str, tuple[str, bytes]] = OrderedDict()
        """Run id -> (its user, its status body), of runs that have ended."""
        self._running: OrderedDict[str, _Running] = OrderedDict()
        """Run id -> its row and body, of runs running when last read."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "GET":
            match = _PATH.fullmatch(scope["path"])
            if match is not None:
                body = await self._status(scope, match.group(1))
                if body is not None:
                    length = (b"content-length", str(len(body)).encode())
                    start = {"type": "http.response.start", "status": 200}
                    await send({**start, "headers": [length, *_HEADERS]})
                    await send({"type": "http.response.body", "body": body})
                    return
        await self.app(scope, receive, send)

    async def _status(self, scope: Scope, run_id: str) -> bytes | None:
        """The status body, or None for the route to answer (with its own error)."""
        secret = _bearer(scope)
        if secret is None or not ids.is_run_id(run_id):
            return None
        try:
            user = await self.yard.authenticate(secret)
            if user is None:
                return None
            final = self._final.get(run_id)
            if final is not None:
                return final[1] if final[0] == user else None
            # The mark first: a commit after it moves it, whether the read sees it or not.
            mark = self.yard.store.change_mark()
            known = self._running.get(run_id)
            run: RunState | None
            if known is not None and mark is not None and known.mark == mark:
                run = known.run
            else:
                known = None
                run = await self.yard.store.get_run_state(run_id)
        except Exception:  # e.g. the database is away: the route answers, with its error
            return None
        if run is None or run.user_id != user or run.status is RunStatus.QUEUED:
            return None
        now = utcnow()
        expected = self.yard.settings.expected_run_seconds
        if run.status.terminal:
            self._running.pop(run_id, None)
            body = _render(run, now, expected)
            _remember(self._final, run_id, (user, body))
            return body
        progress = estimate_progress(run.status, run.started_at, now, expected)
        if known is not None and known.progress == progress:
            return known.body
        body = _render(run, now, expected)
        if mark is not None:
            _remember(self._running, run_id, _Running(mark, run, progress, body))
        return body


def _render(run: RunState, now: datetime, expected_seconds: float) -> bytes:
    view = views.status(run, expected_seconds, now)
    # As the route's JSONResponse renders it.
    text = json.dumps(view, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    return text.encode()


def _remember(memory: OrderedDict[str, T], run_id: str, value: T) -> None:
    memory[run_id] = value
    memory.move_to_end(run_id)
    if len(memory) > _REMEMBERED:
        memory.popitem(last=False)


def _bearer(scope: Scope) -> str | None:
    """The secret of an ``Authorization: Bearer`` header, as ``auth.current_user`` reads it."""
    for name, value in scope["headers"]:
        if name == b"authorization":
            header: str = value.decode("latin-1")
            scheme, _, secret = header.partition(" ")
            if scheme.lower() != "bearer" or not secret.strip():
                return None
            return secret.strip()
    return None
