"""Scale-out end to end: one API process (`serve --no-workers`) and two `worker` processes
on PostgreSQL, with the command runtime."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from agentyard.runtimes.processes import marked_pids
from agentyard.testing.harness import (
    ServerProcess,
    WorkerProcess,
    read_stream,
    server_env,
    wait_status,
)

pytestmark = pytest.mark.postgres

COMMANDS = {
    "short": {"argv": ["sh", "-c", "sleep 0.3; echo done"]},
    "lines": {"argv": ["sh", "-c", "for i in $(seq 1 30); do echo line $i; sleep 0.03; done"]},
    "slow": {"argv": ["sh", "-c", "echo started; sleep 120"]},
    "write": {"argv": ["sh", "-c", 'echo "$AGENTYARD_PROMPT" > note.txt; echo wrote']},
    "read": {"argv": ["cat", "note.txt"]},
}


@pytest.fixture
def cluster(
    tmp_path: Path, pg_database: str
) -> Iterator[tuple[ServerProcess, list[WorkerProcess]]]:
    env = server_env(
        tmp_path,
        {
            "AGENTYARD_DATABASE_URL": pg_database,
            "AGENTYARD_COMMANDS": json.dumps(COMMANDS),
            "AGENTYARD_WORKER_HEARTBEAT_SECONDS": "1",
            "AGENTYARD_WORKER_STALLED_SECONDS": "6",
        },
    )
    api = ServerProcess(tmp_path, env, args=("--no-workers",)).start()
    workers = [
        WorkerProcess(env, tmp_path / f"worker-{i}.log", concurrency=2).start() for i in range(2)
    ]
    try:
        yield api, workers
    finally:
        for w in workers:
            w.stop()
        api.stop()


def create(client: httpx.Client, command: str) -> str:
    r = client.post("/api/v1/tasks", json={"prompt": "p", "agent": "command", "model": command})
    assert r.status_code == 200, r.text
    return str(r.json()["runId"])


def test_runs_spread_over_workers_and_stream_through_the_api(
    cluster: tuple[ServerProcess, list[WorkerProcess]],
) -> None:
    """10 tasks run on both workers; an SSE client on the API process sees every event of a
    worker's run in order, and resumes exactly with Last-Event-ID."""
    api, workers = cluster
    with api.client() as c:
        ids = [create(c, "short") for _ in range(10)]
        for run_id in ids:
            assert wait_status(c, run_id, {"completed", "failed"})["status"] == "completed"
        pids = {c.get(f"/api/v1/tasks/{r}").json()["workerId"].rsplit(":", 1)[1] for r in ids}
        assert pids == {str(w.pid) for w in workers}

        run_id = create(c, "lines")
        code, first = read_stream(c, f"/api/v1/tasks/{run_id}/logs/stream", stop_after=8)
        assert code == 200 and len(first) == 8
        code, rest = read_stream(
            c,
            f"/api/v1/tasks/{run_id}/logs/stream",
            headers={"Last-Event-ID": str(first[-1].id)},
        )
        frames = first + rest
        assert [f.id for f in frames] == list(range(1, len(frames) + 1))
        deltas = [f.data["delta"] for f in frames if f.data and f.data["type"] == "text-delta"]
        assert deltas == [f"line {i}\n" for i in range(1, 31)]
        assert frames[-1].data == {"type": "finish", "runId": run_id, "status": "completed"}


def test_cancel_reaches_the_worker_and_a_dead_worker_interrupts_its_runs(
    cluster: tuple[ServerProcess, list[WorkerProcess]],
) -> None:
    """Cancel on the API kills the agent on its worker; a SIGKILLed worker's run becomes
    interrupted within 30 s while the other worker keeps going."""
    api, workers = cluster
    with api.client() as c:
        victim = create(c, "slow")
        wait_status(c, victim, {"running"})
        r = c.patch(f"/api/v1/tasks/{victim}", json={"action": "cancel"})
        assert r.json()["success"] is True and r.json()["status"] == "cancelled"
        assert marked_pids(victim) == []

        doomed = create(c, "slow")
        wait_status(c, doomed, {"running"})
        owner = c.get(f"/api/v1/tasks/{doomed}").json()["workerId"].rsplit(":", 1)[1]
        dead = next(w for w in workers if str(w.pid) == owner)
        dead.kill()
        killed_at = time.monotonic()
        status = wait_status(c, doomed, {"interrupted"}, timeout=30)
        assert time.monotonic() - killed_at < 30
        assert "heartbeat" in status["error"]
        task = c.get(f"/api/v1/tasks/{doomed}").json()
        assert "heartbeat" in task["statusDetail"]

        # The dead worker's agent outlived it; a living process on this machine kills it.
        deadline = time.monotonic() + 15
        while marked_pids(doomed) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert marked_pids(doomed) == []

        survivor_runs = [create(c, "short") for _ in range(3)]
        for run_id in survivor_runs:
            assert wait_status(c, run_id, {"completed", "failed"})["status"] == "completed"


def test_a_follow_up_on_another_worker_finds_the_chats_workspace(
    cluster: tuple[ServerProcess, list[WorkerProcess]],
) -> None:
    """Workspaces live in the shared data directory: when the worker that ran a chat's first
    run is gone, the follow-up runs on the other worker and sees the first run's files."""
    api, workers = cluster
    with api.client() as c:
        first = create_with(c, "write", "remember the milk")
        wait_status(c, first, {"completed"})
        owner = c.get(f"/api/v1/tasks/{first}").json()["workerId"].rsplit(":", 1)[1]
        gone = next(w for w in workers if str(w.pid) == owner)
        gone.stop()
        r = c.post(
            f"/api/v1/tasks/{first}/continue",
            json={"prompt": "read it back", "agent": "command", "model": "read"},
        )
        follow = r.json()["runId"]
        assert wait_status(c, follow, {"completed", "failed"})["status"] == "completed"
        task = c.get(f"/api/v1/tasks/{follow}").json()
        assert task["workerId"].rsplit(":", 1)[1] != owner
        assert task["messages"][-1]["parts"] == [{"type": "text", "text": "remember the milk\n"}]


def create_with(client: httpx.Client, command: str, prompt: str) -> str:
    r = client.post("/api/v1/tasks", json={"prompt": prompt, "agent": "command", "model": command})
    assert r.status_code == 200, r.text
    return str(r.json()["runId"])
