"""The store and the event log: durable lifecycle rules and lossless streams."""

from __future__ import annotations

import asyncio

import pytest

from agentyard.core import events as ev
from agentyard.core.status import RunStatus
from agentyard.events.log import EventLog
from agentyard.store.store import Store
from records import make_run, queued_run


async def test_claim_takes_the_oldest_queued_run_once(store: Store) -> None:
    """Runs are claimed oldest first, and two claimers never get the same run."""
    first = await make_run(store)
    second = await make_run(store)
    claims = await asyncio.gather(*(store.claim_next(f"w{i}") for i in range(4)))
    claimed = [c.run_id for c in claims if c is not None]
    assert sorted(claimed) == sorted([first.run_id, second.run_id])
    again = await store.get_run(first.run_id)
    assert again is not None and again.status is RunStatus.RUNNING and again.started_at
    assert await store.claim_next("w9") is None


async def test_a_terminal_status_never_changes(store: Store, event_log: EventLog) -> None:
    """The first finish wins; later ones change nothing and append no second finish."""
    run = await make_run(store)
    assert await store.claim_next("w") is not None
    assert await event_log.finish(run.run_id, RunStatus.CANCELLED, error="Cancelled by user")
    assert not await event_log.finish(run.run_id, RunStatus.COMPLETED)
    assert not await event_log.finish(run.run_id, RunStatus.FAILED, error="late")
    after = await store.get_run(run.run_id)
    assert after is not None and after.status is RunStatus.CANCELLED
    finishes = [e for e in await event_log.read(run.run_id) if e.type == ev.FINISH]
    assert [f.data["status"] for f in finishes] == ["cancelled"]


async def test_concurrent_appends_get_gap_free_sequence_numbers(
    store: Store, event_log: EventLog
) -> None:
    """Seq is 1..N with no gap or duplicate, whatever the interleaving of writers."""
    run = await make_run(store)
    await asyncio.gather(
        *(event_log.append(run.run_id, *ev.text(f"b{i}", str(i))) for i in range(20))
    )
    stored = await event_log.read(run.run_id)
    assert [s.seq for s in stored] == list(range(1, 61))
    reread = await store.get_run(run.run_id)
    assert reread is not None and reread.event_seq == 60


async def _collect(log: EventLog, run_id: str, after: int) -> list[int]:
    seen = []
    async for item in log.follow(run_id, after, keepalive=0.2):
        if item is not None:
            seen.append(item.seq)
    return seen


async def test_follow_delivers_live_events_and_resumes_exactly(
    store: Store, event_log: EventLog
) -> None:
    """A live follower sees every event once, in order, and ends after finish; a resume
    from seq N gets exactly N+1.. ."""
    run = await make_run(store)
    await store.claim_next("w")
    follower = asyncio.create_task(_collect(event_log, run.run_id, 0))
    await asyncio.sleep(0.05)
    for i in range(30):
        await event_log.append(run.run_id, {"type": ev.TEXT_DELTA, "id": "t", "delta": str(i)})
    await event_log.finish(run.run_id, RunStatus.COMPLETED)
    assert await asyncio.wait_for(follower, 5) == list(range(1, 32))
    assert await _collect(event_log, run.run_id, 17) == list(range(18, 32))


async def test_a_slow_follower_falls_back_to_the_table_and_loses_nothing(
    store: Store, event_log: EventLog
) -> None:
    """When the in-memory buffer overflows, the follower reads the table instead: no loss."""
    run = await make_run(store)
    await store.claim_next("w")
    seen: list[int] = []
    gate = asyncio.Event()

    async def slow() -> None:
        async for item in event_log.follow(run.run_id, 0, keepalive=0.2):
            if item is None:
                continue
            seen.append(item.seq)
            await gate.wait()

    task = asyncio.create_task(slow())
    await asyncio.sleep(0.05)
    # The bus holds 50 events per subscriber; write far more while the follower is stuck.
    for i in range(40):
        await event_log.append(run.run_id, *ev.text(f"b{i}", "x"))
    await event_log.finish(run.run_id, RunStatus.COMPLETED)
    gate.set()
    await asyncio.wait_for(task, 5)
    assert seen == list(range(1, 122))


async def test_follow_batches_hand_over_every_ready_event_at_once(
    store: Store, event_log: EventLog
) -> None:
    """A follower behind gets everything ready in one batch (one write on a stream), in
    order, never an empty batch; the last batch ends with finish; a resume is exact."""
    run = await make_run(store)
    await store.claim_next("w")
    for i in range(5):
        await event_log.append(run.run_id, {"type": ev.TEXT_DELTA, "id": "t", "delta": str(i)})
    batches: list[list[int]] = []
    gate = asyncio.Event()

    async def follow() -> None:
        async for batch in event_log.follow_batches(run.run_id, 0, keepalive=5):
            if batch is None:
                continue
            assert batch
            batches.append([item.seq for item in batch])
            await gate.wait()  # a slow client: events pile up meanwhile

    task = asyncio.create_task(follow())
    await asyncio.sleep(0.05)
    assert batches == [[1, 2, 3, 4, 5]]  # the catch-up from the table: one batch
    for i in range(5, 12):
        await event_log.append(run.run_id, {"type": ev.TEXT_DELTA, "id": "t", "delta": str(i)})
    await event_log.finish(run.run_id, RunStatus.COMPLETED)
    gate.set()
    await asyncio.wait_for(task, 5)
    # Everything that arrived while the follower was busy came as one more batch.
    assert batches == [[1, 2, 3, 4, 5], list(range(6, 14))]
    resumed = [
        [item.seq for item in batch]
        async for batch in event_log.follow_batches(run.run_id, 9, keepalive=5)
        if batch is not None
    ]
    assert resumed == [[10, 11, 12, 13]]
    frame = (await event_log.read(run.run_id, 12))[0].frame
    assert frame.startswith(b"id: 13\ndata: {") and frame.endswith(b"}\n\n")


async def test_follow_sends_keepalive_ticks_while_idle(store: Store, event_log: EventLog) -> None:
    """An idle stream yields keep-alive ticks (None) instead of going silent."""
    run = await make_run(store)
    ticks = 0
    async for item in event_log.follow(run.run_id, 0, keepalive=0.05):
        assert item is None
        ticks += 1
        if ticks == 3:
            break
    assert ticks == 3


async def test_finish_stores_the_assistant_message(store: Store, event_log: EventLog) -> None:
    """When a run ends, its assistant message is folded from the events it emitted."""
    run = await make_run(store)
    await store.claim_next("w")
    await event_log.append(run.run_id, *ev.text("t1", "done"))
    await event_log.finish(run.run_id, RunStatus.COMPLETED)
    messages = await store.list_messages(run.chat_id)
    assert [(m.role, m.parts) for m in messages] == [
        ("user", [{"type": "text", "text": run.prompt}]),
        ("assistant", [{"type": "text", "text": "done"}]),
    ]


async def test_a_chats_runs_never_execute_at_once(store: Store) -> None:
    """A queued run waits while another run of its chat is running (they share a workspace)."""
    first = await make_run(store)
    follow, message = queued_run(first.chat_id, first.user_id, prompt="again")
    await store.create_run(follow, message)
    claimed = await store.claim_next("w1")
    assert claimed is not None and claimed.run_id == first.run_id
    assert await store.claim_next("w2") is None
    await store.finish_run(
        first.run_id, RunStatus.COMPLETED, events=[ev.finish(first.run_id, "completed")]
    )
    again = await store.claim_next("w2")
    assert again is not None and again.run_id == follow.run_id


async def test_nothing_is_appended_after_finish(store: Store, event_log: EventLog) -> None:
    """Once a run has ended, appending to it raises RunEnded: finish stays the last event."""
    from agentyard.store.store import RunEnded

    run = await make_run(store)
    await store.claim_next("w")
    await event_log.finish(run.run_id, RunStatus.CANCELLED)
    with pytest.raises(RunEnded):
        await event_log.append(run.run_id, *ev.text("late", "too late"))
    assert [e.type for e in await event_log.read(run.run_id)] == ["finish"]


async def test_point_reads_see_every_commit_and_never_wait_for_a_writer(store: Store) -> None:
    """A run read right after a write shows it; a write still open is neither seen nor
    waited for (on SQLite the read runs on its own connection, on the loop)."""
    import sqlalchemy as sa

    from agentyard.store import tables as t

    run = await make_run(store)
    for i in range(20):
        await store.update_run(run.run_id, status_detail=f"step {i}")
        found = await store.get_run(run.run_id)
        assert found is not None and found.status_detail == f"step {i}"
    async with store.transaction() as conn:
        await conn.execute(
            t.runs.update().where(t.runs.c.run_id == run.run_id).values(status_detail="open")
        )
        found = await asyncio.wait_for(store.get_run(run.run_id), 5)
        assert found is not None and found.status_detail == "step 19"
        assert (await conn.execute(sa.select(t.runs.c.status_detail))).scalar_one() == "open"
    found = await store.get_run(run.run_id)
    assert found is not None and found.status_detail == "open"


def delta(text: str) -> dict[str, str]:
    return {"type": ev.TEXT_DELTA, "id": "t", "delta": text}


async def test_a_retried_batch_whose_first_attempt_was_stored_is_not_stored_again(
    store: Store,
) -> None:
    """The commit landed but its answer was lost: the retry (knowing the run's last seq)
    gets the stored events back, not a second copy; a retry of a batch never stored
    appends it."""
    run = await make_run(store)
    assert await store.claim_next("w") is not None
    batch = [delta("one\n"), delta("two\n")]
    first = await store.append_events(run.run_id, batch)
    again = await store.append_events(run.run_id, batch, retry_after_seq=0)
    assert (
        [(e.seq, e.data) for e in again]
        == [(e.seq, e.data) for e in first]
        == [
            (1, batch[0]),
            (2, batch[1]),
        ]
    )
    fresh = await store.append_events(run.run_id, [delta("three\n")], None, 2)
    assert [e.seq for e in fresh] == [3]
    assert [e.seq for e in await store.read_events(run.run_id)] == [1, 2, 3]


async def test_the_writer_stores_a_batch_once_when_the_commit_answer_is_lost(
    store: Store,
) -> None:
    """An EventWriter whose first append is committed and then reported as a lost
    connection retries it; the run has each event once, in order."""
    from agentyard.events.bus import LocalBus
    from agentyard.events.writer import EventWriter
    from agentyard.store.faults import RetryPolicy

    run = await make_run(store)
    claimed = await store.claim_next("w")
    assert claimed is not None
    real = store.append_events
    lost = {"left": 1}

    async def append_then_lose_the_answer(*args: object, **kwargs: object) -> object:
        stored = await real(*args, **kwargs)  # type: ignore[arg-type]
        if lost["left"]:
            lost["left"] -= 1
            raise ConnectionResetError("connection lost at commit")
        return stored

    store.append_events = append_then_lose_the_answer  # type: ignore[method-assign]
    policy = RetryPolicy(outage_seconds=10, first_delay=0.01, max_delay=0.01)
    writer = EventWriter(EventLog(store, LocalBus()), run.run_id, policy, 2**20, claimed.event_seq)
    lines = [delta(f"tick {i}\n") for i in range(5)]
    await writer.emit(*lines)
    await writer.flush()
    await writer.close()
    assert lost["left"] == 0
    stored = await store.read_events(run.run_id)
    assert [e.seq for e in stored] == [1, 2, 3, 4, 5]
    assert [e.data for e in stored] == lines


async def test_chat_values_go_with_the_runs_next_write(store: Store) -> None:
    """A writer's chat values are stored in the transaction of the run's next write (not one
    of their own), and a flush stores them even with nothing else pending."""
    from agentyard.events.bus import LocalBus
    from agentyard.events.writer import EventWriter
    from agentyard.store.faults import RetryPolicy

    run = await make_run(store)
    claimed = await store.claim_next("w")
    assert claimed is not None
    transactions = []
    real = store.append_events

    async def counted(*args: object, **kwargs: object) -> object:
        transactions.append(kwargs.get("chat_values", args[4] if len(args) > 4 else None))
        return await real(*args, **kwargs)  # type: ignore[arg-type]

    store.append_events = counted  # type: ignore[method-assign]
    policy = RetryPolicy(outage_seconds=10, first_delay=0.01, max_delay=0.01)
    writer = EventWriter(EventLog(store, LocalBus()), run.run_id, policy, 2**20, claimed.event_seq)
    writer.update_chat(run.chat_id, workspace_path="/w/one", base_branch="main")
    await writer.emit(status_detail="working")
    await writer.flush()
    chat = await store.get_chat(run.chat_id)
    assert chat is not None and (chat.workspace_path, chat.base_branch) == ("/w/one", "main")
    after = await store.get_run(run.run_id)
    assert after is not None and after.status_detail == "working"
    assert len(transactions) == 1  # the detail and the chat together
    writer.update_chat(run.chat_id, workspace_path="/w/two")
    await writer.flush()
    await writer.close()
    chat = await store.get_chat(run.chat_id)
    assert chat is not None and chat.workspace_path == "/w/two"
