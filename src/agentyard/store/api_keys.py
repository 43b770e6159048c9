"""The API keys table: each key stored as its hash, live until revoked, and looked up through
the verified-key cache (``keycache.VerifiedKeys``): the request path's one database read."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from agentyard.core.clock import utcnow
from agentyard.store import tables as t
from agentyard.store.keycache import VerifiedKeys

if TYPE_CHECKING:
    from agentyard.store.store import Store

_KEYS = t.api_keys
_KEY_BY_HASH = sa.select(_KEYS.c.key_id, _KEYS.c.user_id).where(
    _KEYS.c.key_hash == sa.bindparam("key_hash"), _KEYS.c.revoked_at.is_(None)
)
_KEY_BY_ID = sa.select(_KEYS.c.key_id, _KEYS.c.user_id).where(
    _KEYS.c.key_id == sa.bindparam("key_id"), _KEYS.c.revoked_at.is_(None)
)


class ApiKeyStore:
    def __init__(self, store: Store, cache: VerifiedKeys) -> None:
        self.store = store
        self.cache = cache
        """Live keys verified recently (off unless given a time to live)."""

    async def add(self, key_id: str, user_id: str, name: str, key_hash: str) -> None:
        async with self.store.transaction() as conn:
            await conn.execute(
                _KEYS.insert().values(
                    key_id=key_id,
                    user_id=user_id,
                    name=name,
                    key_hash=key_hash,
                    created_at=utcnow(),
                )
            )

    async def user_for_hash(self, key_hash: str) -> str | None:
        found = await self.for_hash(key_hash)
        return None if found is None else found[1]

    async def for_hash(self, key_hash: str) -> tuple[str, str] | None:
        """The live key with that hash as (key id, user id), or None."""
        found = self.cache.by_hash(key_hash)
        if found is not None:
            return found
        return await self._live(_KEY_BY_HASH, {"key_hash": key_hash}, key_hash)

    async def user_for_id(self, key_id: str) -> str | None:
        """The user of a key that has not been revoked, or None."""
        found = self.cache.by_id(key_id)
        if found is not None:
            return found
        key = await self._live(_KEY_BY_ID, {"key_id": key_id}, None)
        return None if key is None else key[1]

    async def _live(
        self, statement: sa.Select[Any], params: dict[str, Any], key_hash: str | None
    ) -> tuple[str, str] | None:
        """(key id, user id) of the live key the statement reads, remembered as verified."""
        generation = self.cache.generation
        row = await self.store.first(statement, params)
        if row is None:
            return None
        key_id, user_id = str(row["key_id"]), str(row["user_id"])
        self.cache.remember(generation, key_hash, key_id, user_id)
        return key_id, user_id

    async def list(self, user_id: str) -> list[dict[str, Any]]:
        """The user's keys, oldest first, without their hashes."""
        query = (
            sa.select(_KEYS.c.key_id, _KEYS.c.name, _KEYS.c.created_at, _KEYS.c.revoked_at)
            .where(_KEYS.c.user_id == user_id)
            .order_by(_KEYS.c.created_at, _KEYS.c.key_id)
        )
        async with self.store.engine.connect() as conn:
            return [dict(r._mapping) for r in (await conn.execute(query)).all()]

    async def revoke(self, user_id: str, key_id: str) -> bool:
        """Revoke one live key of the user's; False when there is none such."""
        async with self.store.transaction() as conn:
            result = await conn.execute(
                _KEYS.update()
                .where(
                    _KEYS.c.key_id == key_id,
                    _KEYS.c.user_id == user_id,
                    _KEYS.c.revoked_at.is_(None),
                )
                .values(revoked_at=utcnow())
            )
        if result.rowcount:
            self.cache.revoked()
        return bool(result.rowcount)

    async def count(self) -> int:
        async with self.store.engine.connect() as conn:
            query = sa.select(sa.func.count()).select_from(_KEYS)
            return int((await conn.execute(query)).scalar_one())
