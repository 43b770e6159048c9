"""Idempotency records: written in the transaction that inserts their run(s)."""

from __future__ import annotations

from typing import Any

import sqlalchemy.exc as sa_exc
from sqlalchemy.ext.asyncio import AsyncConnection

from agentyard.core import idempotency
from agentyard.core.clock import utcnow
from agentyard.store import tables as t

_keys = t.idempotency_keys


async def insert(conn: AsyncConnection, receipt: dict[str, Any]) -> None:
    """The record, first in its transaction: a concurrent request with the same key waits on
    it (PostgreSQL) or on the write lock (SQLite), then fails here (``KeyInUse``)."""
    expired = receipt["created_at"] - idempotency.LIFETIME
    # A key past its lifetime is free again.
    await conn.execute(
        _keys.delete().where(
            _keys.c.user_id == receipt["user_id"],
            _keys.c.key == receipt["key"],
            _keys.c.created_at < expired,
        )
    )
    try:
        await conn.execute(_keys.insert().values(receipt))
    except sa_exc.IntegrityError:  # the whole transaction is rolled back
        raise idempotency.KeyInUse(receipt["key"]) from None


async def get(conn: AsyncConnection, user_id: str, key: str) -> dict[str, Any] | None:
    row = (
        await conn.execute(
            _keys.select().where(
                _keys.c.user_id == user_id,
                _keys.c.key == key,
                _keys.c.created_at >= utcnow() - idempotency.LIFETIME,
            )
        )
    ).first()
    return None if row is None else dict(row._mapping)


async def purge(conn: AsyncConnection) -> int:
    result = await conn.execute(
        _keys.delete().where(_keys.c.created_at < utcnow() - idempotency.LIFETIME)
    )
    return int(result.rowcount or 0)
