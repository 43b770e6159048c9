"""GET /tasks/{id}/status as clients poll it: answered before the framework, a finished
run's body remembered, a running run's row remembered until the database changes, and
nothing of that visible but the speed."""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterator

import httpx
import pytest

from agentyard.store.store import Store
from agentyard.testing.harness import ServerProcess, running_server, wait_status
from records import make_run

COMMANDS = {
    "true": {"argv": ["true"]},
    "sleep": {"argv": ["sleep", "30"]},
}
TERMINAL = {"completed", "failed", "cancelled", "interrupted"}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    with running_server(
        tmp_path_factory.mktemp("status"),
        # Progress moves 1% every 0.3 s: polls a few seconds apart see it move.
        {"AGENTYARD_COMMANDS": json.dumps(COMMANDS), "AGENTYARD_EXPECTED_RUN_SECONDS": "30"},
    ) as proc:
        yield proc


def key_for(server: ServerProcess, user: str) -> str:
    """A new API key of ``user``, named after it."""
    return server.cli("keys", "create", "--name", f"{user}-key", "--user", user).strip()


def run(client: httpx.Client, model: str) -> str:
    r = client.post("/api/v1/tasks", json={"prompt": "x", "agent": "command", "model": model})
    assert r.status_code == 200, r.text
    return str(r.json()["runId"])


def test_a_finished_runs_status_is_the_same_every_time(server: ServerProcess) -> None:
    with server.client() as client:
        run_id = run(client, "true")
        wait_status(client, run_id, TERMINAL)
        bodies = [client.get(f"/api/v1/tasks/{run_id}/status") for _ in range(3)]
        task = client.get(f"/api/v1/tasks/{run_id}").json()
    assert {r.status_code for r in bodies} == {200}
    assert bodies[0].content == bodies[1].content == bodies[2].content
    body = bodies[0].json()
    assert body["status"] == "completed" and body["progress"] == 100
    assert body["completedAt"] == task["completedAt"]


def test_a_remembered_run_stays_its_owners(server: ServerProcess) -> None:
    """Once a finished run's body is remembered, another user still gets the route's 403,
    a bad key its 401, and the owner's revoked key is refused."""
    alice, bob = key_for(server, "alice"), key_for(server, "bob")
    with server.client(alice) as client:
        run_id = run(client, "true")
        wait_status(client, run_id, TERMINAL)
        assert client.get(f"/api/v1/tasks/{run_id}/status").status_code == 200
    with server.client(bob) as other:
        r = other.get(f"/api/v1/tasks/{run_id}/status")
        assert r.status_code == 403 and "error" in r.json()
    with server.client("ay-not-a-key") as nobody:
        assert nobody.get(f"/api/v1/tasks/{run_id}/status").status_code == 401
    server.cli("keys", "revoke", "alice-key")
    with server.client(alice) as client:
        assert client.get(f"/api/v1/tasks/{run_id}/status").status_code == 401


def test_a_running_runs_status_follows_it_to_the_end(server: ServerProcess) -> None:
    with server.client() as client:
        run_id = run(client, "sleep")
        wait_status(client, run_id, {"running"})
        running = client.get(f"/api/v1/tasks/{run_id}/status").json()
        assert running["status"] == "running" and running["completedAt"] is None
        client.patch(f"/api/v1/tasks/{run_id}", json={"action": "cancel"})
        wait_status(client, run_id, TERMINAL)
        ended = client.get(f"/api/v1/tasks/{run_id}/status").json()
    assert ended["status"] == "cancelled" and ended["completedAt"] is not None


def test_a_running_runs_status_shows_another_processs_change_at_once(
    server: ServerProcess,
) -> None:
    """A running run's remembered row gives way to a commit made elsewhere (another process
    on the same database file) on the very next poll; meanwhile its progress moves."""
    with server.client() as client:
        run_id = run(client, "sleep")
        wait_status(client, run_id, {"running"})
        url = f"/api/v1/tasks/{run_id}/status"
        deadline = time.monotonic() + 10
        while (first := client.get(url).json())["statusDetail"] != "agent working":
            assert time.monotonic() < deadline, first
            time.sleep(0.05)
        time.sleep(0.7)
        later = client.get(url).json()
        assert later["progress"] > first["progress"], (first, later)
        assert later["statusDetail"] == "agent working"
        with sqlite3.connect(server.data_dir / "agentyard.db") as db:
            db.execute(
                "UPDATE runs SET status_detail = 'written elsewhere' WHERE run_id = ?", (run_id,)
            )
        assert client.get(url).json()["statusDetail"] == "written elsewhere"
        client.patch(f"/api/v1/tasks/{run_id}", json={"action": "cancel"})
        wait_status(client, run_id, TERMINAL)


async def test_the_change_mark_moves_with_every_commit(store: Store) -> None:
    """``Store.change_mark``: on SQLite, equal until something is committed (here by the
    store's own pooled connections, which are not the reader's); on PostgreSQL, None."""
    mark = store.change_mark()
    if store.engine.dialect.name != "sqlite":
        assert mark is None
        return
    assert mark is not None and store.change_mark() == mark
    run = await make_run(store)
    moved = store.change_mark()
    assert moved != mark and store.change_mark() == moved
    await store.update_run(run.run_id, status_detail="working")
    assert store.change_mark() != moved
