"""The queue contract, on SQLite + LocalQueue and on PostgreSQL + procrastinate: a created
run executes to its end, cancel works queued and running, and shutdown interrupts."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from agentyard.core.status import RunStatus
from agentyard.runtimes.processes import marked_pids
from agentyard.server import Agentyard
from agentyard.service import NewTask
from agentyard.settings import Settings

COMMANDS = {
    "short": {"argv": ["sh", "-c", "echo hello"]},
    "slow": {"argv": ["sh", "-c", "echo started; sleep 60"]},
}


@pytest.fixture
async def yard(database_url: str, tmp_path: Path) -> AsyncIterator[Agentyard]:
    settings = Settings(
        data_dir=tmp_path / "data",
        database_url=database_url,
        commands=json.dumps(COMMANDS),
        max_concurrent_runs=1,
        queue_poll_seconds=0.1,
        worker_heartbeat_seconds=1,
    )
    app = Agentyard(settings)
    await app.start()
    yield app
    await app.stop()


async def wait_for(app: Agentyard, run_id: str, statuses: set[RunStatus]) -> RunStatus:
    for _ in range(300):
        run = await app.store.get_run(run_id)
        assert run is not None
        if run.status in statuses:
            return run.status
        await asyncio.sleep(0.1)
    raise AssertionError(f"{run_id} never reached {statuses}")


async def create(app: Agentyard, command: str) -> str:
    run = await app.service.create_task("u", NewTask(prompt="p", agent="command", model=command))
    return run.run_id


async def test_a_created_run_executes_to_completed(yard: Agentyard) -> None:
    """Enqueued with its row, executed by a worker, completed with start..finish events."""
    run_id = await create(yard, "short")
    assert await wait_for(yard, run_id, {RunStatus.COMPLETED}) is RunStatus.COMPLETED
    kinds = [e.type for e in await yard.events.read(run_id)]
    assert kinds[0] == "start" and kinds[-1] == "finish" and "text-delta" in kinds


async def test_cancel_a_queued_and_a_running_run(yard: Agentyard) -> None:
    """A queued run is cancelled without running; a running one has its processes killed."""
    running = await create(yard, "slow")
    await wait_for(yard, running, {RunStatus.RUNNING})
    queued = await create(yard, "short")  # concurrency 1: it waits behind the slow one
    assert (await yard.store.get_run(queued)).status is RunStatus.QUEUED  # type: ignore[union-attr]
    assert (await yard.service.cancel("u", queued)).success
    for _ in range(50):
        if marked_pids(running):
            break
        await asyncio.sleep(0.1)
    result = await yard.service.cancel("u", running)
    assert result.success and result.status is RunStatus.CANCELLED
    assert marked_pids(running) == []
    queued_events = [e.type for e in await yard.events.read(queued)]
    assert queued_events == ["finish"]  # it never started


async def test_stopping_the_server_interrupts_what_it_executes(
    database_url: str, tmp_path: Path
) -> None:
    """A graceful stop ends the runs executing in this process interrupted, not cancelled."""
    settings = Settings(
        data_dir=tmp_path / "data", database_url=database_url, commands=json.dumps(COMMANDS)
    )
    app = Agentyard(settings)
    await app.start()
    run_id = await create(app, "slow")
    await wait_for(app, run_id, {RunStatus.RUNNING})
    await app.stop()
    again = Agentyard(settings, run_workers=False)
    await again.start()
    try:
        run = await again.store.get_run(run_id)
        assert run is not None and run.status is RunStatus.INTERRUPTED
        assert marked_pids(run_id) == []
    finally:
        await again.stop()
