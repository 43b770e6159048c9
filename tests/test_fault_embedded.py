"""Fault tolerance of the embedded server (SQLite, LocalQueue): a full disk, a runner that
crashes, a run nobody executes. Each test drives the real application in process (API over
ASGI, queue, runner, command agents) with the fault injected below the store."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from agentyard.api.app import create_app
from agentyard.core.status import RunStatus
from agentyard.runner import RunControl
from agentyard.server import Agentyard
from agentyard.settings import Settings
from agentyard.store.faults import DISK_FULL
from agentyard.testing.faults import DiskFull

KEY = "sk-ay-fault-key"
COMMANDS = {
    "short": {"argv": ["sh", "-c", "echo done"]},
    "ticker": {"argv": ["sh", "-c", "for i in $(seq 1 400); do echo tick $i; sleep 0.02; done"]},
    "slow": {"argv": ["sh", "-c", "echo started; sleep 60"]},
}

Api = tuple[Agentyard, httpx.AsyncClient]


@pytest.fixture
async def make_api(tmp_path: Path) -> AsyncIterator[Callable[..., Awaitable[Api]]]:
    started: list[tuple[Agentyard, httpx.AsyncClient]] = []

    async def make(**overrides: Any) -> Api:
        settings = Settings(
            data_dir=tmp_path / "data",
            api_key=KEY,
            commands=json.dumps(COMMANDS),
            max_concurrent_runs=1,
            queue_poll_seconds=0.05,
            sweep_seconds=overrides.pop("sweep_seconds", 60.0),
            **overrides,
        )
        yard = Agentyard(settings)
        app = create_app(settings, yard=yard)
        await yard.start()
        client = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app),
            base_url="http://yard",
            headers={"Authorization": f"Bearer {KEY}"},
        )
        started.append((yard, client))
        return yard, client

    yield make
    for yard, client in started:
        await client.aclose()
        await yard.stop()


async def create(client: httpx.AsyncClient, command: str, prompt: str = "p") -> str:
    r = await client.post(
        "/api/v1/tasks", json={"prompt": prompt, "agent": "command", "model": command}
    )
    assert r.status_code == 200, r.text
    return str(r.json()["runId"])


async def wait_status(yard: Agentyard, run_id: str, statuses: set[RunStatus]) -> Any:
    for _ in range(1200):  # a minute: slots and the sweep are slow on a loaded machine
        run = await yard.store.get_run(run_id)
        assert run is not None
        if run.status in statuses:
            return run
        await asyncio.sleep(0.05)
    raise AssertionError(f"{run_id} never reached {statuses}")


async def wait_events(yard: Agentyard, run_id: str, at_least: int) -> None:
    for _ in range(600):
        if len(await yard.events.read(run_id)) >= at_least:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"{run_id} never had {at_least} events")


async def assert_event_log_whole(yard: Agentyard, run_id: str) -> list[dict[str, Any]]:
    stored = await yard.events.read(run_id)
    assert [s.seq for s in stored] == list(range(1, len(stored) + 1))
    kinds = [s.type for s in stored]
    assert kinds[0] == "start" and kinds[-1] == "finish" and kinds.count("finish") == 1
    return [s.data for s in stored]


async def test_a_full_disk_fails_the_run_answers_503_and_the_slot_goes_on(
    make_api: Callable[..., Awaitable[Api]],
) -> None:
    """The writing run fails with "disk full" once the write is possible; meanwhile
    creates get a JSON 503 with Retry-After (no SQL), reads are served; afterwards the slot
    runs the next task and the failed run can be continued."""
    yard, client = await make_api()
    disk = DiskFull(yard.store.engine)
    victim = await create(client, "ticker")
    await wait_events(yard, victim, 5)

    disk.full = True
    r = await client.post(
        "/api/v1/tasks", json={"prompt": "p", "agent": "command", "model": "short"}
    )
    assert r.status_code == 503
    assert r.headers["content-type"].startswith("application/json")
    assert r.json() == {"error": DISK_FULL}
    assert int(r.headers["retry-after"]) > 0
    assert "INSERT" not in r.text and "SQL" not in r.text
    assert (await client.get(f"/api/v1/tasks/{victim}")).status_code == 200

    # The run cannot end while nothing can be written: its terminal write keeps trying.
    for _ in range(200):
        if disk.refused >= 5:
            break
        await asyncio.sleep(0.05)
    assert (await yard.store.get_run(victim)).status is RunStatus.RUNNING  # type: ignore[union-attr]
    refused = disk.refused
    await asyncio.sleep(0.5)
    assert disk.refused > refused  # still trying

    disk.full = False
    run = await wait_status(yard, victim, {RunStatus.FAILED})
    assert run.error == DISK_FULL
    events = await assert_event_log_whole(yard, victim)
    assert {"type": "error", "errorText": DISK_FULL} in events
    ticks = [e["delta"] for e in events if e["type"] == "text-delta"]
    assert ticks == [f"tick {i}\n" for i in range(1, len(ticks) + 1)]  # in order, no gap

    after = await create(client, "short")
    assert (await wait_status(yard, after, {RunStatus.COMPLETED})).status is RunStatus.COMPLETED
    r = await client.post(
        f"/api/v1/tasks/{victim}/continue",
        json={"prompt": "again", "agent": "command", "model": "short"},
    )
    assert r.status_code == 200, r.text
    await wait_status(yard, r.json()["runId"], {RunStatus.COMPLETED})
    assert (await client.get("/readyz")).json()["ready"] is True


async def test_a_slot_survives_a_crashing_runner_and_the_sweep_ends_what_it_left(
    make_api: Callable[..., Awaitable[Api]],
) -> None:
    """The runner raising ends the run ``failed`` (no SQL in its error) and the slot goes
    on; when even ending it fails, the periodic sweep ends it ``interrupted``."""
    yard, client = await make_api(sweep_seconds=0.2)
    real_execute, real_stop = yard.runner.execute, yard.runner.stop

    # Marked by their prompts, which the runs carry from their creation (a slot may claim
    # a run the instant it is created).
    async def execute(run: Any, control: RunControl | None = None) -> RunStatus:
        if run.prompt in {"crash", "unstoppable"}:
            raise RuntimeError("the runner broke")
        return await real_execute(run, control)

    async def stop(run: Any, control: RunControl) -> None:
        if run.prompt == "unstoppable":
            raise RuntimeError("ending it broke too")
        await real_stop(run, control)

    yard.runner.execute = execute  # type: ignore[method-assign]
    yard.runner.stop = stop  # type: ignore[method-assign]
    first = await create(client, "short", prompt="crash")
    second = await create(client, "short", prompt="unstoppable")

    run = await wait_status(yard, first, {RunStatus.FAILED})
    assert run.error == "internal error: the runner broke"
    run = await wait_status(yard, second, {RunStatus.INTERRUPTED})
    assert "executor is gone" in run.status_detail
    for _ in range(3):  # the single slot is still in service
        after = await create(client, "short")
        await wait_status(yard, after, {RunStatus.COMPLETED})
    assert yard.queue.healthy  # type: ignore[attr-defined]


async def test_cancel_and_the_sweep_end_runs_no_task_executes(
    make_api: Callable[..., Awaitable[Api]],
) -> None:
    """A ``running`` run that no task here executes (claimed by a process that is gone):
    cancel succeeds on it, and the sweep ends it ``interrupted`` with why."""
    yard, client = await make_api()
    busy = await create(client, "slow")
    await wait_status(yard, busy, {RunStatus.RUNNING})
    ghosts = [await create(client, "short") for _ in range(2)]
    for _ in ghosts:  # the only slot is busy: take them as a vanished process would
        assert await yard.store.claim_next("gone-host:1") is not None

    r = await client.patch(f"/api/v1/tasks/{ghosts[0]}", json={"action": "cancel"})
    assert r.json()["success"] is True and r.json()["status"] == "cancelled"
    assert await yard.queue.sweep() == 1  # type: ignore[attr-defined]
    run = await yard.store.get_run(ghosts[1])
    assert run is not None and run.status is RunStatus.INTERRUPTED
    assert "executor is gone" in (run.status_detail or "")
    assert (await yard.store.get_run(busy)).status is RunStatus.RUNNING  # type: ignore[union-attr]
    for ghost in ghosts:
        kinds = [s.type for s in await yard.events.read(ghost)]
        assert kinds.count("finish") == 1 and kinds[-1] == "finish"
    r = await client.post(
        f"/api/v1/tasks/{ghosts[1]}/continue",
        json={"prompt": "again", "agent": "command", "model": "short"},
    )
    assert r.status_code == 200, r.text
    assert (await client.patch(f"/api/v1/tasks/{busy}", json={"action": "cancel"})).json()[
        "success"
    ]
    await wait_status(yard, r.json()["runId"], {RunStatus.COMPLETED})
