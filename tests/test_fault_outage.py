"""PostgreSQL outages, injected by a TCP proxy between Agentyard and the database that the
test cuts and restores: a run rides out a short outage and one longer than the worker stall
timeout (its events stored in order, none lost or duplicated, one ``finish``), an outage past
the limit ends the run naming the database, and afterwards the worker runs the next task,
cancel and continue work. The scale-out queue runs in process (API, reaper and worker)."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from agentyard.core.status import RunStatus
from agentyard.server import Agentyard
from agentyard.service import Continuation, NewTask
from agentyard.settings import Settings
from agentyard.testing.faults import TcpProxy
from agentyard.testing.harness import ServerProcess, WorkerProcess, server_env, wait_status

pytestmark = pytest.mark.postgres

TICKS = 80
COMMANDS = {
    "short": {"argv": ["sh", "-c", "echo done"]},
    "ticker": {
        "argv": ["sh", "-c", f"for i in $(seq 1 {TICKS}); do echo tick $i; sleep 0.05; done"]
    },
    "slow": {"argv": ["sh", "-c", "echo started; sleep 60"]},
}


@pytest.fixture
def proxy() -> Iterator[TcpProxy]:
    p = TcpProxy("127.0.0.1", 5432)
    yield p
    p.close()


async def start(proxy: TcpProxy, database: str, tmp_path: Path, outage: float) -> Agentyard:
    settings = Settings(
        data_dir=tmp_path / "data",
        database_url=proxy.url(database),
        commands=json.dumps(COMMANDS),
        max_concurrent_runs=2,
        worker_heartbeat_seconds=0.5,
        worker_stalled_seconds=2,
        sweep_seconds=0.5,
        db_outage_seconds=outage,
        cancel_wait_seconds=10,
    )
    app = Agentyard(settings)
    await app.start()
    return app


@pytest.fixture
async def stopping() -> AsyncIterator[list[Agentyard]]:
    apps: list[Agentyard] = []
    yield apps
    for app in apps:
        await app.stop()


async def wait_for(app: Agentyard, run_id: str, statuses: set[RunStatus], secs: float = 60) -> str:
    for _ in range(int(secs / 0.1)):
        try:
            run = await app.store.get_run(run_id)
        except Exception:  # the database may still be coming back
            run = None
        if run is not None and run.status in statuses:
            return run.error or ""
        await asyncio.sleep(0.1)
    raise AssertionError(f"{run_id} never reached {statuses}")


async def create(app: Agentyard, command: str) -> str:
    run = await app.service.create_task("u", NewTask(prompt="p", agent="command", model=command))
    return run.run_id


async def ticks_stored(app: Agentyard, run_id: str) -> int:
    return sum(1 for s in await app.events.read(run_id) if s.type == "text-delta")


async def cut_while_running(app: Agentyard, proxy: TcpProxy, run_id: str, secs: float) -> None:
    for _ in range(300):
        if await ticks_stored(app, run_id) >= 5:
            break
        await asyncio.sleep(0.05)
    proxy.cut()
    await asyncio.sleep(secs)
    proxy.restore()


async def assert_whole(app: Agentyard, run_id: str, ticks: int | None) -> None:
    stored = await app.events.read(run_id)
    assert [s.seq for s in stored] == list(range(1, len(stored) + 1))
    kinds = [s.type for s in stored]
    assert kinds[0] == "start" and kinds[-1] == "finish" and kinds.count("finish") == 1
    deltas = [s.data["delta"] for s in stored if s.type == "text-delta"]
    expected = ticks if ticks is not None else len(deltas)
    assert deltas == [f"tick {i}\n" for i in range(1, expected + 1)]


async def assert_still_serving(app: Agentyard) -> None:
    """The worker is still there: it runs the next task; cancel and continue work."""
    done = await create(app, "short")
    assert not await wait_for(app, done, {RunStatus.COMPLETED})
    slow = await create(app, "slow")
    await wait_for(app, slow, {RunStatus.RUNNING})
    result = await app.service.cancel("u", slow)
    assert result.success and result.status is RunStatus.CANCELLED
    follow = await app.service.continue_task(
        "u", done, Continuation(prompt="again", agent="command", model="short")
    )
    assert not await wait_for(app, follow.run_id, {RunStatus.COMPLETED})
    assert (await app.ready())["ready"]


@pytest.mark.parametrize(
    "outage", [0.5, 5.0, 30.0], ids=["half-second", "past-the-stall-timeout", "thirty-seconds"]
)
async def test_a_run_rides_out_a_database_outage(
    proxy: TcpProxy, pg_database: str, tmp_path: Path, stopping: list[Agentyard], outage: float
) -> None:
    """The agent keeps working through the outage; its events are stored in order once the
    database is back, and the worker goes on serving."""
    app = await start(proxy, pg_database, tmp_path, outage=outage + 30)
    stopping.append(app)
    run_id = await create(app, "ticker")
    await wait_for(app, run_id, {RunStatus.RUNNING})
    await cut_while_running(app, proxy, run_id, outage)
    assert not await wait_for(app, run_id, {RunStatus.COMPLETED, RunStatus.FAILED})
    await assert_whole(app, run_id, TICKS)
    await assert_still_serving(app)


async def test_an_outage_past_the_limit_ends_the_run_naming_the_database(
    proxy: TcpProxy, pg_database: str, tmp_path: Path, stopping: list[Agentyard]
) -> None:
    app = await start(proxy, pg_database, tmp_path, outage=1.0)
    stopping.append(app)
    run_id = await create(app, "ticker")
    await wait_for(app, run_id, {RunStatus.RUNNING})
    await cut_while_running(app, proxy, run_id, 3.0)
    error = await wait_for(app, run_id, {RunStatus.FAILED})
    assert "database" in error and "SELECT" not in error and "INSERT" not in error
    await assert_whole(app, run_id, None)
    await assert_still_serving(app)


def test_separate_workers_ride_out_an_outage_past_the_stall_timeout(
    proxy: TcpProxy, pg_database: str, tmp_path: Path
) -> None:
    """API and worker processes: after a 5 s cut (the stall timeout is 2 s) the run goes on
    (not "presumed dead"), the worker has not exited, and it runs the next task."""
    env = server_env(
        tmp_path,
        {
            "AGENTYARD_DATABASE_URL": proxy.url(pg_database),
            "AGENTYARD_COMMANDS": json.dumps(COMMANDS),
            "AGENTYARD_WORKER_HEARTBEAT_SECONDS": "0.5",
            "AGENTYARD_WORKER_STALLED_SECONDS": "2",
            "AGENTYARD_SWEEP_SECONDS": "0.5",
            "AGENTYARD_DB_OUTAGE_SECONDS": "30",
        },
    )
    api = ServerProcess(tmp_path, env, args=("--no-workers",)).start()
    worker = WorkerProcess(env, tmp_path / "worker.log", concurrency=2).start()
    try:
        with api.client() as c:
            r = c.post("/api/v1/tasks", json={"prompt": "p", "agent": "command", "model": "ticker"})
            run_id = r.json()["runId"]
            wait_status(c, run_id, {"running"})
            time.sleep(0.5)
            proxy.cut()
            time.sleep(5)
            proxy.restore()
            status = wait_status(c, run_id, {"completed", "failed", "interrupted"}, timeout=60)
            assert status["status"] == "completed", status
            frames = c.get(f"/api/v1/tasks/{run_id}/logs").json()["events"]
            assert [f["seq"] for f in frames] == list(range(1, len(frames) + 1))
            deltas = [f["delta"] for f in frames if f["type"] == "text-delta"]
            assert deltas == [f"tick {i}\n" for i in range(1, TICKS + 1)]
            assert [f["type"] for f in frames].count("finish") == 1
            assert worker.proc is not None and worker.proc.poll() is None
            r = c.post("/api/v1/tasks", json={"prompt": "p", "agent": "command", "model": "short"})
            assert wait_status(c, r.json()["runId"], {"completed", "failed"})["status"] == (
                "completed"
            )
            assert c.get("/readyz").json()["ready"] is True
    finally:
        worker.stop()
        api.stop()
    assert "presumed dead" not in api.logs() + worker.logs()
