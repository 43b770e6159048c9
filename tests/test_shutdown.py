"""SIGTERM on a real ``agentyard serve``: the runs executing get the grace period (one that
finishes in it completes, one that does not ends ``interrupted`` with statusDetail "server
shutting down"), the slot a finished run frees claims nothing, a queued run stays queued and
runs after the restart, and a second signal stops at once."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from agentyard.runtimes.processes import marked_pids
from agentyard.testing.harness import ServerProcess, WorkerProcess, server_env, wait_status

COMMANDS = {
    "quick": {"argv": ["sh", "-c", "echo started; sleep 2; echo done"]},
    "slow": {"argv": ["sh", "-c", "echo started; sleep 120"]},
    "short": {"argv": ["sh", "-c", "echo hello"]},
}


def env(tmp_path: Path, grace: float, runs: int) -> dict[str, str]:
    return server_env(
        tmp_path,
        {
            "AGENTYARD_COMMANDS": json.dumps(COMMANDS),
            "AGENTYARD_SHUTDOWN_GRACE_SECONDS": str(grace),
            "AGENTYARD_MAX_CONCURRENT_RUNS": str(runs),
        },
    )


def create(c: httpx.Client, command: str) -> str:
    r = c.post("/api/v1/tasks", json={"prompt": "p", "agent": "command", "model": command})
    assert r.status_code == 200, r.text
    return str(r.json()["runId"])


def wait_logged(server: ServerProcess, text: str, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if text in server.logs():
            return
        time.sleep(0.05)
    raise AssertionError(f"never logged {text!r}:\n{server.logs()}")


def sigterm(server: ServerProcess) -> None:
    """The first signal: the server says it is shutting down (and drains)."""
    assert server.proc is not None
    server.proc.send_signal(signal.SIGTERM)
    wait_logged(server, "shutting down")


@contextmanager
def restart(
    tmp_path: Path, before: ServerProcess, runs: int
) -> Iterator[tuple[ServerProcess, httpx.Client]]:
    """The same installation started again (no grace period), on the same port, and a
    client of it."""
    again = ServerProcess(tmp_path, env(tmp_path, grace=0, runs=runs), port=before.port).start()
    try:
        with again.client() as c:
            yield again, c
    finally:
        again.stop()


def wait_exit(server: ServerProcess, timeout: float) -> int:
    assert server.proc is not None
    try:
        return server.proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        raise AssertionError(f"still running after {timeout} s:\n{server.logs()}") from None


def test_sigterm_drains_runs_keeps_the_queue_and_restarts_it(tmp_path: Path) -> None:
    first = ServerProcess(tmp_path, env(tmp_path, grace=12, runs=2)).start()
    try:
        with first.client() as c:
            quick, slow = create(c, "quick"), create(c, "slow")
            wait_status(c, quick, {"running"})
            wait_status(c, slow, {"running"})
            queued = create(c, "short")
            assert c.get(f"/api/v1/tasks/{queued}/status").json()["status"] == "queued"
            sigterm(first)
            # Meanwhile the server soon takes no new connection (uvicorn stops listening).
            with pytest.raises(httpx.TransportError):
                for _ in range(50):
                    httpx.get(f"{first.url}/healthz", timeout=2)
                    time.sleep(0.1)
        wait_exit(first, timeout=40)
    finally:
        first.stop()
    assert "Traceback" not in first.logs()
    # The restarted server runs nothing here but what was queued (concurrency 2, grace 0).
    with restart(tmp_path, first, runs=2) as (second, c):
        done = c.get(f"/api/v1/tasks/{quick}").json()
        assert done["status"] == "completed", done
        assert done["messages"][-1]["parts"][0]["text"] == "started\ndone\n"
        cut = c.get(f"/api/v1/tasks/{slow}").json()
        assert cut["status"] == "interrupted", cut
        assert cut["statusDetail"] == "server shutting down"
        assert "grace period" in cut["error"]
        assert marked_pids(slow) == []
        # Not claimed by the draining server when the quick run freed its slot.
        ran = wait_status(c, queued, {"completed", "failed", "interrupted"}, timeout=60)
        assert ran["status"] == "completed", ran
        later = c.get(f"/api/v1/tasks/{queued}").json()
        assert second.proc is not None
        assert later["workerId"].endswith(f":{second.proc.pid}"), later
        events = c.get(f"/api/v1/tasks/{queued}/logs").json()
        assert [e["type"] for e in events["events"]].count("start") == 1


@pytest.mark.parametrize("second_signal", [signal.SIGTERM, signal.SIGINT])
def test_a_second_signal_stops_at_once(tmp_path: Path, second_signal: signal.Signals) -> None:
    server = ServerProcess(tmp_path, env(tmp_path, grace=300, runs=1)).start()
    try:
        with server.client() as c:
            slow = create(c, "slow")
            wait_status(c, slow, {"running"})
            sigterm(server)
            assert server.proc is not None
            started = time.monotonic()
            server.proc.send_signal(second_signal)
            # Far inside the 300 s grace: the second signal cut it short.
            wait_exit(server, timeout=60)
            assert time.monotonic() - started < 60
    finally:
        server.stop()
    assert "Traceback" not in server.logs()
    with restart(tmp_path, server, runs=1) as (_, c):
        task = c.get(f"/api/v1/tasks/{slow}").json()
    # Ended by the stopping server itself, not found running by the next start.
    assert task["status"] == "interrupted", task
    assert task["statusDetail"] == "server shutting down", task
    assert marked_pids(slow) == []


@pytest.mark.postgres
def test_a_worker_drains_on_sigterm_and_leaves_the_queue(tmp_path: Path, pg_database: str) -> None:
    """Scale-out: the same drain in ``agentyard worker``; its queued job waits for the next
    worker."""
    settings = env(tmp_path, grace=12, runs=2)
    settings["AGENTYARD_DATABASE_URL"] = pg_database
    settings["AGENTYARD_WORKER_HEARTBEAT_SECONDS"] = "1"
    api = ServerProcess(tmp_path, settings, args=("--no-workers",)).start()
    worker = WorkerProcess(settings, tmp_path / "worker-1.log", concurrency=2).start()
    workers = [worker]
    try:
        with api.client() as c:
            quick, slow = create(c, "quick"), create(c, "slow")
            wait_status(c, quick, {"running"})
            wait_status(c, slow, {"running"})
            queued = create(c, "short")
            assert worker.proc is not None
            worker.proc.send_signal(signal.SIGTERM)
            assert worker.proc.wait(timeout=40) is not None
            assert wait_status(c, quick, {"completed"}, timeout=5)
            cut = c.get(f"/api/v1/tasks/{slow}").json()
            assert cut["status"] == "interrupted", cut
            assert cut["statusDetail"] == "server shutting down"
            assert c.get(f"/api/v1/tasks/{queued}/status").json()["status"] == "queued"
            # procrastinate logs the cancelled job's traceback; nothing else fails.
            logs = worker.logs()
            assert logs.count("Traceback") == logs.count("ended with status: Aborted") == 1
            workers.append(WorkerProcess(settings, tmp_path / "worker-2.log").start())
            assert wait_status(c, queued, {"completed"}, timeout=60)
    finally:
        for w in workers:
            w.stop()
        api.stop()
