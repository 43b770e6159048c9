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
polling a finished run costs only the key check. A run still executing is always read.
"""

from __future__ import annotations

import json
import re
from collections import OrderedDict

from starlette.types import ASGIApp, Receive, Scope, Send

from agentyard.api import views
from agentyard.core import ids
from agentyard.core.status import RunStatus
from agentyard.server import Agentyard

_PATH = re.compile(r"/api/v1/tasks/([^/]+)/status")
_HEADERS = [(b"content-type", b"application/json")]
_FINAL_BODIES = 4096
"""How many ended runs' status bodies are remembered (a few hundred bytes each)."""


class StatusFastPath:
    def __init__(self, app: ASGIApp, yard: Agentyard) -> None:
        self.app = app
        self.yard = yard
        self._final: OrderedDict[str, tuple[str, bytes]] = OrderedDict()
        """Run id -> (its user, its status body), of runs that have ended."""

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
            run = await self.yard.store.get_run_state(run_id)
        except Exception:  # e.g. the database is away: the route answers, with its error
            return None
        if run is None or run.user_id != user or run.status is RunStatus.QUEUED:
            return None
        view = views.status(run, self.yard.settings.expected_run_seconds)
        # As the route's JSONResponse renders it.
        text = json.dumps(view, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
        body = text.encode()
        if run.status.terminal:
            self._final[run_id] = (user, body)
            if len(self._final) > _FINAL_BODIES:
                self._final.popitem(last=False)
        return body


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
