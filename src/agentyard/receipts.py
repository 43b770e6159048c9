"""Idempotent creates, on the service's side: a request's receipt, the replay of the first
response made under its key, one request per key in flight in this process, the record
written in the transaction that inserts the runs, and the hourly purge of old records.

(The receipt and fingerprint themselves are :mod:`agentyard.core.idempotency`.)
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from contextlib import asynccontextmanager, contextmanager
from typing import Any

import structlog

from agentyard.core import envvars, idempotency
from agentyard.core.clock import utcnow
from agentyard.core.errors import Conflict, InvalidInput
from agentyard.core.models import Run
from agentyard.store.faults import public_message
from agentyard.store.store import Store

log = structlog.get_logger(__name__)

_PURGE_EVERY_SECONDS = 3600.0


class Receipts:
    def __init__(self, store: Store, secrets: envvars.Box | None) -> None:
        self.store = store
        self.secrets = secrets
        self._in_flight: set[tuple[str, str]] = set()
        """(user, Idempotency-Key) of the create requests being handled in this process."""
        self._purged_at = 0.0
        """When this process last forgot idempotency records past their lifetime."""

    def receipt(
        self,
        key: str,
        route: str,
        body: Mapping[str, Any],
        render: Callable[[list[Run]], dict[str, Any]],
    ) -> idempotency.Receipt:
        """What a create request under ``key`` keeps: its fingerprint and its response."""
        if self.secrets is None:
            raise InvalidInput(f"this server does not accept '{idempotency.HEADER}'")
        mac_key = self.secrets.derive("idempotency")
        return idempotency.Receipt(key, route, idempotency.fingerprint(mac_key, body), render)

    async def replay(self, user_id: str, receipt: idempotency.Receipt) -> idempotency.Stored | None:
        """The first response made under the receipt's key (422 if by another request, 409
        while it is still being made); None for a key not used yet."""
        if (user_id, receipt.key) in self._in_flight:
            raise _in_flight()
        row = await self.store.get_receipt(user_id, receipt.key)
        if row is None:
            return None
        assert self.secrets is not None
        plain = self.secrets.open(row["response_sealed"])
        if plain is None:
            raise Conflict(
                f"the first response to this {idempotency.HEADER} cannot be decrypted "
                "(was AGENTYARD_SECRET_KEY changed?); use a new key"
            )
        stored = idempotency.Stored(
            route=row["route"],
            fingerprint=dict(row["fingerprint"]),
            status_code=int(row["status_code"]),
            body=json.loads(plain),
        )
        receipt.check_replay(stored)
        return stored

    @contextmanager
    def flight(self, user_id: str, receipt: idempotency.Receipt | None) -> Iterator[None]:
        """While a create request under the receipt's key is handled (a second is a 409)."""
        if receipt is None:
            yield
            return
        flight = (user_id, receipt.key)
        if flight in self._in_flight:
            raise _in_flight()
        self._in_flight.add(flight)
        try:
            yield
        finally:
            self._in_flight.discard(flight)

    @asynccontextmanager
    async def keeping(
        self, user_id: str, receipt: idempotency.Receipt | None, runs: list[Run]
    ) -> AsyncIterator[dict[str, Any] | None]:
        """The idempotency record to insert with ``runs``; a key taken meanwhile (by
        another process) is a 409, and nothing was inserted."""
        if receipt is None:
            yield None
            return
        assert self.secrets is not None
        record = {
            "user_id": user_id,
            "key": receipt.key,
            "route": receipt.route,
            "fingerprint": receipt.fingerprint,
            "status_code": receipt.status_code,
            "response_sealed": self.secrets.seal(json.dumps(receipt.render(runs))),
            "run_id": runs[0].run_id,
            "created_at": utcnow(),
        }
        try:
            yield record
        except idempotency.KeyInUse:
            raise _in_flight() from None
        await self._purge()

    async def _purge(self) -> None:
        """Now and then (on a create with a key), forget the records past their lifetime."""
        now = time.monotonic()
        if now - self._purged_at < _PURGE_EVERY_SECONDS:
            return
        self._purged_at = now
        try:
            await self.store.purge_receipts()
        except Exception as exc:  # the next create tries again; the request has succeeded
            log.warning("purging idempotency records failed", error=public_message(exc))


def _in_flight() -> Conflict:
    return Conflict(
        f"a request with this {idempotency.HEADER} is still in flight; "
        "retry once it has been answered"
    )
