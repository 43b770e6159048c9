"""The webhooks' SQL: endpoints, and the delivery outbox written with each status change."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from agentyard.core import ids
from agentyard.core.clock import utcnow
from agentyard.store import tables as t
from agentyard.store.rows import chat_of, run_of
from agentyard.webhooks import payload

Deferrer = Callable[[AsyncConnection, list[dict[str, Any]]], Awaitable[None]]
"""Called in the transaction that writes outbox rows (the scale-out queue defers their
jobs there, so a row is never committed without its job)."""

PENDING, DELIVERED, FAILED = "pending", "delivered", "failed"
_D = t.webhook_deliveries
_E = t.webhook_endpoints
_LISTENERS = (
    sa.select(
        t.runs.c.user_id,
        t.chats.c.webhook_url,
        sa.exists().where(_E.c.user_id == t.runs.c.user_id).label("has_endpoints"),
    )
    .select_from(t.runs.join(t.chats, t.chats.c.chat_id == t.runs.c.chat_id))
    .where(t.runs.c.run_id == sa.bindparam("run_id"))
)
"""Whether anybody listens to a run's status changes: built once, run at every change."""


async def record_status_change(
    conn: AsyncConnection, run_id: str, defer: Deferrer | None = None
) -> list[dict[str, Any]]:
    """Write the outbox rows of the run's current status, in the caller's transaction.

    One query on primary keys and an index when nobody listens: the run, whether its chat
    has a webhook, whether its user has endpoints."""
    head = (await conn.execute(_LISTENERS, {"run_id": run_id})).first()
    if head is None or (head.webhook_url is None and not head.has_endpoints):
        return []
    run_row = (await conn.execute(t.runs.select().where(t.runs.c.run_id == run_id))).one()
    run = run_of(run_row._mapping)
    chat_row = (await conn.execute(t.chats.select().where(t.chats.c.chat_id == run.chat_id))).one()
    chat = chat_of(chat_row._mapping)
    now = utcnow()
    body = payload.status_changed(run, chat, now)
    targets: list[tuple[str | None, str]] = []
    if chat.webhook_url:
        targets.append((None, chat.webhook_url))
    if head.has_endpoints:
        endpoints = (
            await conn.execute(
                sa.select(_E.c.endpoint_id, _E.c.url, _E.c.events)
                .where(_E.c.user_id == run.user_id)
                .order_by(_E.c.created_at)
            )
        ).all()
        targets += [
            (e.endpoint_id, e.url) for e in endpoints if payload.wants(e.events, run.status)
        ]
    rows = [
        {
            "delivery_id": ids.new_webhook_message_id(),
            "endpoint_id": endpoint_id,
            "user_id": run.user_id,
            "run_id": run.run_id,
            "url": url,
            "type": body["type"],
            "payload": body,
            "state": PENDING,
            "attempts": 0,
            "next_attempt_at": now,
            "attempt_log": [],
            "created_at": now,
        }
        for endpoint_id, url in targets
    ]
    if rows:
        await conn.execute(_D.insert(), rows)
        if defer is not None:
            await defer(conn, rows)
    return rows


class WebhookStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine

    # -- endpoints ------------------------------------------------------------------------------

    async def add_endpoint(self, values: dict[str, Any], limit: int) -> bool:
        """Insert unless the user already has ``limit`` endpoints (checked in the same
        transaction, so concurrent registrations cannot pass it together on SQLite)."""
        async with self.engine.begin() as conn:
            count = (
                await conn.execute(
                    sa.select(sa.func.count())
                    .select_from(_E)
                    .where(_E.c.user_id == values["user_id"])
                )
            ).scalar_one()
            if int(count) >= limit:
                return False
            await conn.execute(_E.insert().values(values))
        return True

    async def list_endpoints(self, user_id: str) -> list[dict[str, Any]]:
        query = _E.select().where(_E.c.user_id == user_id).order_by(_E.c.created_at)
        async with self.engine.connect() as conn:
            return [dict(r._mapping) for r in (await conn.execute(query)).all()]

    async def get_endpoint(self, endpoint_id: str) -> dict[str, Any] | None:
        async with self.engine.connect() as conn:
            row = (await conn.execute(_E.select().where(_E.c.endpoint_id == endpoint_id))).first()
        return None if row is None else dict(row._mapping)

    async def delete_endpoint(self, endpoint_id: str) -> None:
        """The endpoint and its deliveries: nothing more is sent to it."""
        async with self.engine.begin() as conn:
            await conn.execute(_D.delete().where(_D.c.endpoint_id == endpoint_id))
            await conn.execute(_E.delete().where(_E.c.endpoint_id == endpoint_id))

    # -- deliveries -----------------------------------------------------------------------------

    async def list_deliveries(
        self, endpoint_id: str, offset: int, limit: int
    ) -> list[dict[str, Any]]:
        query = (
            _D.select()
            .where(_D.c.endpoint_id == endpoint_id)
            .order_by(_D.c.created_at.desc(), _D.c.delivery_id.desc())
            .offset(offset)
            .limit(limit)
        )
        async with self.engine.connect() as conn:
            return [dict(r._mapping) for r in (await conn.execute(query)).all()]

    async def get_delivery(self, delivery_id: str) -> dict[str, Any] | None:
        async with self.engine.connect() as conn:
            row = (await conn.execute(_D.select().where(_D.c.delivery_id == delivery_id))).first()
        return None if row is None else dict(row._mapping)

    @staticmethod
    def _due(now: datetime) -> sa.ColumnElement[bool]:
        return sa.and_(
            _D.c.state == PENDING,
            _D.c.next_attempt_at <= now,
            sa.or_(_D.c.lease_until.is_(None), _D.c.lease_until < now),
        )

    async def due(
        self, now: datetime, limit: int, exclude_urls: set[str] | frozenset[str] = frozenset()
    ) -> list[tuple[str, str]]:
        """(delivery id, url) of due, unleased rows, oldest first."""
        query = sa.select(_D.c.delivery_id, _D.c.url).where(self._due(now))
        if exclude_urls:
            query = query.where(_D.c.url.not_in(sorted(exclude_urls)))
        query = query.order_by(_D.c.created_at, _D.c.delivery_id).limit(limit)
        async with self.engine.connect() as conn:
            return [(r.delivery_id, r.url) for r in (await conn.execute(query)).all()]

    async def claim(
        self, now: datetime, lease_until: datetime, delivery_ids: list[str]
    ) -> list[dict[str, Any]]:
        """Lease those of ``delivery_ids`` that are still due and unleased.

        One UPDATE guarded by state, due time and lease: two claimers never hold a row at
        once, and a claimer that died lets go when its lease lapses."""
        if not delivery_ids:
            return []
        async with self.engine.begin() as conn:
            rows = (
                await conn.execute(
                    _D.update()
                    .where(self._due(now), _D.c.delivery_id.in_(delivery_ids))
                    .values(lease_until=lease_until)
                    .returning(*_D.c)
                )
            ).all()
        claimed = [dict(r._mapping) for r in rows]
        claimed.sort(key=lambda r: (r["created_at"], r["delivery_id"]))
        return claimed

    async def record_attempt(self, delivery_id: str, values: dict[str, Any]) -> None:
        """Store an attempt's outcome and let go of the lease."""
        async with self.engine.begin() as conn:
            await conn.execute(
                _D.update()
                .where(_D.c.delivery_id == delivery_id)
                .values(lease_until=None, **values)
            )

    async def redeliver(self, delivery_id: str, now: datetime) -> bool:
        async with self.engine.begin() as conn:
            result = await conn.execute(
                _D.update()
                .where(_D.c.delivery_id == delivery_id)
                .values(state=PENDING, next_attempt_at=now, lease_until=None)
            )
        return bool(result.rowcount)

    async def release_leases(self) -> int:
        """Let go of every lease (the embedded server at start: its only claimer is gone)."""
        async with self.engine.begin() as conn:
            result = await conn.execute(
                _D.update().where(_D.c.lease_until.is_not(None)).values(lease_until=None)
            )
        return int(result.rowcount or 0)

    async def stranded(self, due_before: datetime, limit: int = 100) -> list[dict[str, Any]]:
        """Pending rows due long ago and not leased: their job was lost (scale-out)."""
        query = (
            _D.select()
            .where(
                _D.c.state == PENDING,
                _D.c.next_attempt_at < due_before,
                sa.or_(_D.c.lease_until.is_(None), _D.c.lease_until < utcnow()),
            )
            .order_by(_D.c.next_attempt_at)
            .limit(limit)
        )
        async with self.engine.connect() as conn:
            return [dict(r._mapping) for r in (await conn.execute(query)).all()]

    async def signing_secret(self, delivery: dict[str, Any]) -> str | None:
        """The sealed secret a delivery is signed with: its endpoint's, or its task's own."""
        async with self.engine.connect() as conn:
            if delivery["endpoint_id"] is not None:
                query = sa.select(_E.c.secret_sealed).where(
                    _E.c.endpoint_id == delivery["endpoint_id"]
                )
            else:
                query = (
                    sa.select(t.chats.c.webhook_secret_sealed)
                    .select_from(t.runs.join(t.chats, t.chats.c.chat_id == t.runs.c.chat_id))
                    .where(t.runs.c.run_id == delivery["run_id"])
                )
            value = (await conn.execute(query)).scalar_one_or_none()
        return None if value is None else str(value)
