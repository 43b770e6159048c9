"""Which queued run a free slot takes: fair between users, in order within a chat, capped.

On SQLite and PostgreSQL (where concurrent claimers each take another run)."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from agentyard.core.clock import utcnow
from agentyard.core.models import Chat, Run
from agentyard.core.status import RunStatus
from agentyard.store.store import Store
from records import make_run

_T0 = utcnow() - timedelta(hours=1)


async def queue_run(store: Store, user: str, at: int, chat: Chat | None = None) -> Run:
    """A queued run of ``user`` created ``at`` seconds after a fixed instant (in a new chat,
    or as a follow-up in ``chat``)."""
    return await make_run(store, user, _T0 + timedelta(seconds=at), chat)


async def claimed(store: Store, cap: int | None = None) -> str | None:
    run = await store.claim_next("w", cap)
    return None if run is None else run.run_id


async def test_the_user_with_fewest_runs_executing_goes_first(store: Store) -> None:
    """A burst from one user does not starve another's later task: each claim takes the
    oldest run of a user with the fewest runs executing."""
    burst = [await queue_run(store, "alice", i) for i in range(4)]
    bob = await queue_run(store, "bob", 10)
    carol = await queue_run(store, "carol", 20)
    order = [await claimed(store) for _ in range(6)]
    assert order == [
        burst[0].run_id,  # all at 0 executing: the oldest
        bob.run_id,  # alice has 1
        carol.run_id,  # alice and bob have 1
        burst[1].run_id,  # all at 1: the oldest
        burst[2].run_id,  # only alice is left
        burst[3].run_id,
    ]
    assert await claimed(store) is None


async def test_a_chat_runs_one_at_a_time_in_order(store: Store) -> None:
    """A chat's follow-up waits for the run before it to end, whoever else is queued."""
    first = await queue_run(store, "alice", 0)
    chat = await store.get_chat(first.chat_id)
    assert chat is not None
    follow_up = await queue_run(store, "alice", 1, chat)
    other = await queue_run(store, "alice", 2)
    assert await claimed(store) == first.run_id
    assert await claimed(store) == other.run_id  # not the follow-up: its chat is busy
    assert await claimed(store) is None
    await store.finish_run(first.run_id, RunStatus.COMPLETED)
    assert await claimed(store) == follow_up.run_id


async def test_a_per_user_cap_leaves_the_rest_queued(store: Store) -> None:
    runs = [await queue_run(store, "alice", i) for i in range(3)]
    bob = await queue_run(store, "bob", 10)
    assert await claimed(store, cap=2) == runs[0].run_id
    assert await claimed(store, cap=2) == bob.run_id
    assert await claimed(store, cap=2) == runs[1].run_id
    assert await claimed(store, cap=2) is None  # alice has 2 executing, bob none queued
    await store.finish_run(runs[0].run_id, RunStatus.COMPLETED)
    assert await claimed(store, cap=2) == runs[2].run_id


async def test_concurrent_claimers_take_distinct_runs(store: Store) -> None:
    made = {(await queue_run(store, f"u{i % 3}", i)).run_id for i in range(12)}
    got = await asyncio.gather(*(claimed(store) for _ in range(16)))
    taken = [g for g in got if g is not None]
    assert len(taken) == len(set(taken)) == 12
    assert set(taken) == made


async def test_many_queued_runs_are_taken_in_order(store: Store) -> None:
    """With hundreds queued (the claim must not cost a pass over all of them), one user's
    runs still go oldest first, seconds apart or created in the same instant."""
    runs = [await queue_run(store, "alice", i // 2) for i in range(300)]
    expected = sorted(runs, key=lambda r: (r.created_at, r.run_id))
    got = []
    for run in expected[:5]:
        got.append(await claimed(store))
        await store.finish_run(run.run_id, RunStatus.COMPLETED)
    assert got == [r.run_id for r in expected[:5]]
