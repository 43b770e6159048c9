"""Verified API keys are remembered for a few seconds, and a revocation is never outlived
beyond the documented bound: at once through this process's store or on the same data
directory, within the time to live elsewhere."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from agentyard.accounts import ApiKeys
from agentyard.core import apikeys
from agentyard.core.clock import utcnow
from agentyard.store import tables as t
from agentyard.store.db import create_engine, migrate
from agentyard.store.keycache import VerifiedKeys, mark_revoked
from agentyard.store.store import Store


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def cached(tmp_path: Path, clock: Clock) -> AsyncIterator[Store]:
    url = f"sqlite+aiosqlite:///{tmp_path / 'test.db'}"
    migrate(url)
    store = Store(create_engine(url), VerifiedKeys(5.0, tmp_path, clock))
    yield store
    await store.close()


async def revoke_behind_its_back(store: Store, key_id: str) -> None:
    """A revocation the store is not told of (another host's server)."""
    async with store.engine.begin() as conn:
        await conn.execute(
            t.api_keys.update().where(t.api_keys.c.key_id == key_id).values(revoked_at=utcnow())
        )


async def test_a_key_revoked_through_the_store_stops_at_once(cached: Store) -> None:
    keys = ApiKeys(cached, None, "admin")
    key_id, secret = await keys.create("alice", "laptop")
    assert await cached.api_keys.user_for_hash(apikeys.hash_key(secret)) == "alice"
    assert await keys.user_of(key_id) == "alice"  # both now remembered
    await keys.revoke("alice", key_id)
    assert await cached.api_keys.user_for_hash(apikeys.hash_key(secret)) is None
    assert await keys.identify(secret) is None
    assert await keys.user_of(key_id) is None


async def test_a_revocation_on_the_same_data_dir_stops_the_key_at_once(
    cached: Store, tmp_path: Path
) -> None:
    """``agentyard keys revoke`` writes the database, then replaces the stamp file."""
    key_id, secret = await ApiKeys(cached, None, "admin").create("alice", "laptop")
    key_hash = apikeys.hash_key(secret)
    assert await cached.api_keys.user_for_hash(key_hash) == "alice"
    await revoke_behind_its_back(cached, key_id)
    mark_revoked(tmp_path)
    assert await cached.api_keys.user_for_hash(key_hash) is None
    assert await cached.api_keys.user_for_id(key_id) is None
    # And again: every revocation replaces the stamp, not just the first.
    other_id, other = await ApiKeys(cached, None, "admin").create("bob", "phone")
    assert await cached.api_keys.user_for_hash(apikeys.hash_key(other)) == "bob"
    await revoke_behind_its_back(cached, other_id)
    mark_revoked(tmp_path)
    assert await cached.api_keys.user_for_hash(apikeys.hash_key(other)) is None


async def test_a_revocation_out_of_reach_takes_effect_within_the_time_to_live(
    cached: Store, clock: Clock
) -> None:
    key_id, secret = await ApiKeys(cached, None, "admin").create("alice", "laptop")
    key_hash = apikeys.hash_key(secret)
    assert await cached.api_keys.user_for_hash(key_hash) == "alice"
    await revoke_behind_its_back(cached, key_id)
    clock.now += 4.9
    assert await cached.api_keys.user_for_hash(key_hash) == "alice"  # the documented bound
    clock.now += 0.1
    assert await cached.api_keys.user_for_hash(key_hash) is None
    assert await cached.api_keys.user_for_hash(key_hash) is None  # and not remembered again


async def test_unknown_keys_are_not_remembered(cached: Store) -> None:
    """A key created by another process works at once, however often it was tried."""
    secret = "sk-ay-" + "x" * 40
    key_hash = apikeys.hash_key(secret)
    assert await cached.api_keys.user_for_hash(key_hash) is None
    await cached.api_keys.add("key_later", "carol", "later", key_hash)
    assert await cached.api_keys.user_for_hash(key_hash) == "carol"


async def test_a_lookup_under_way_during_a_revocation_does_not_remember_the_key(
    cached: Store,
) -> None:
    """An answer read before the revocation committed is not kept after it."""
    key_id, secret = await ApiKeys(cached, None, "admin").create("alice", "laptop")
    key_hash = apikeys.hash_key(secret)
    generation = cached.api_keys.cache.generation
    assert await cached.api_keys.revoke("alice", key_id)
    cached.api_keys.cache.remember(generation, key_hash, key_id, "alice")  # the late answer
    assert await cached.api_keys.user_for_hash(key_hash) is None


async def test_a_time_to_live_of_zero_asks_the_database_every_time(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'test.db'}"
    migrate(url)
    store = Store(create_engine(url), VerifiedKeys(0, tmp_path))
    try:
        key_id, secret = await ApiKeys(store, None, "admin").create("alice", "laptop")
        assert await store.api_keys.user_for_hash(apikeys.hash_key(secret)) == "alice"
        await revoke_behind_its_back(store, key_id)
        assert await store.api_keys.user_for_hash(apikeys.hash_key(secret)) is None
        async with store.engine.connect() as conn:
            rows = await conn.execute(sa.select(sa.func.count()).select_from(t.api_keys))
            assert rows.scalar_one() == 1
    finally:
        await store.close()
