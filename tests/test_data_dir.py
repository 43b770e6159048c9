"""A real server keeps its data private: the data dir (even one that existed with wider
permissions) is 0700, the database and keys 0600, and whatever the server and its agents
create under it is its user's only; its agents carry the installation's marker."""

from __future__ import annotations

import json
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from agentyard.datadir import ensure_private_dir, make_database_private
from agentyard.runtimes.base import INSTALLATION_ENV
from agentyard.runtimes.processes import installation_id
from agentyard.testing.harness import ServerProcess, server_env, wait_status

COMMANDS = {
    "work": {"argv": ["sh", "-c", "echo done > out.txt; mkdir -p sub; echo x > sub/y.txt"]},
    "env": {"argv": ["env"]},
}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    data = tmp_path_factory.mktemp("yard")
    data.chmod(0o755)  # as an operator (or an older version) might have made it
    env = server_env(data, {"AGENTYARD_COMMANDS": json.dumps(COMMANDS)})
    proc = ServerProcess(data, env).start()
    yield proc
    proc.stop()


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


def test_the_data_dir_and_everything_in_it_are_private(server: ServerProcess) -> None:
    """After a start and a run: the data dir, workspaces and the run's workspace are 0700,
    the database, admin.key and secret.key 0600, and nothing under the data dir (the
    server's own files, the agent's files, git's) is open to group or others."""
    with server.client() as client:
        r = client.post("/api/v1/tasks", json={"prompt": "hi", "agent": "command", "model": "work"})
        assert r.status_code == 200, r.text
        run_id = r.json()["runId"]
        assert wait_status(client, run_id, {"completed", "failed"})["status"] == "completed"

    data = server.data_dir
    assert _mode(data) == 0o700
    for private_file in ("agentyard.db", "admin.key", "secret.key"):
        assert _mode(data / private_file) == 0o600, private_file
    workspaces = data / "workspaces"
    assert _mode(workspaces) == 0o700
    [workspace] = [p for p in workspaces.iterdir() if not p.name.startswith(".")]
    assert _mode(workspace) == 0o700 and (workspace / "out.txt").read_text() == "done\n"
    assert _mode(workspace / "out.txt") == 0o600 and _mode(workspace / "sub") == 0o700

    # The harness's own log file is the test process's, not the server's.
    exposed = [
        (str(p.relative_to(data)), oct(_mode(p)))
        for p in data.rglob("*")
        if not p.is_symlink() and _mode(p) & 0o077 and not p.name.startswith("server-")
    ]
    assert exposed == []


def test_agents_carry_the_installation_marker(server: ServerProcess) -> None:
    """An agent's environment holds AGENTYARD_INSTALLATION = the id of the server's data
    dir, which is what the scale-out reaper filters on."""
    with server.client() as client:
        r = client.post("/api/v1/tasks", json={"prompt": "hi", "agent": "command", "model": "env"})
        run_id = r.json()["runId"]
        wait_status(client, run_id, {"completed"})
        text = client.get(f"/api/v1/tasks/{run_id}").json()["messages"][1]["parts"][0]["text"]
    assert f"{INSTALLATION_ENV}={installation_id(server.data_dir)}" in text.splitlines()


def test_existing_wider_modes_are_narrowed(tmp_path: Path) -> None:
    """A data dir and an SQLite database (with its WAL) left with wider modes by an older
    version are narrowed to 0700 and 0600; a missing data dir is created 0700; other
    databases are not files to narrow."""
    data = tmp_path / "old"
    data.mkdir(mode=0o755)
    data.chmod(0o755)
    db = data / "agentyard.db"
    for path in (db, data / "agentyard.db-wal"):
        path.write_text("")
        path.chmod(0o644)
    assert ensure_private_dir(data) == data and _mode(data) == 0o700
    make_database_private(f"sqlite+aiosqlite:///{db}")
    assert _mode(db) == 0o600 and _mode(data / "agentyard.db-wal") == 0o600
    fresh = tmp_path / "new" / "data"
    ensure_private_dir(fresh)
    assert _mode(fresh) == 0o700
    make_database_private("postgresql+psycopg://u@127.0.0.1/agentyard")  # nothing to do
    narrow = tmp_path / "narrow"
    narrow.mkdir(mode=0o500)
    narrow.chmod(0o500)
    ensure_private_dir(narrow)
    assert _mode(narrow) == 0o500  # only wider modes are changed
