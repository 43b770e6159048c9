"""Agent processes carry their run's and their installation's markers; finding and killing
them, and the scale-out reaper, leave another installation's agents on the machine alone.

Real ``sleep`` processes with real environments; every run id and installation id here is
unique to the test, so nothing else on the machine is ever touched."""

from __future__ import annotations

import os
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest

from agentyard.core.status import RunStatus
from agentyard.queue.procrastinate_queue import ProcrastinateQueue
from agentyard.runtimes.base import INSTALLATION_ENV, RUN_MARKER_ENV
from agentyard.runtimes.processes import (
    installation_id,
    kill_run_processes,
    marked_pids,
    marked_processes,
)

Spawn = Callable[..., subprocess.Popen[bytes]]


@pytest.fixture
def spawn() -> Iterator[Spawn]:
    """Start ``sleep 120`` with the given markers (None: not set); all killed at the end."""
    started: list[subprocess.Popen[bytes]] = []

    def start(run_id: str, installation: str | None = None) -> subprocess.Popen[bytes]:
        env = {"PATH": os.environ.get("PATH", os.defpath), RUN_MARKER_ENV: run_id}
        if installation is not None:
            env[INSTALLATION_ENV] = installation
        proc = subprocess.Popen(["sleep", "120"], env=env)
        started.append(proc)
        # Until it has exec'd, the child's /proc environ is still ours (unmarked).
        deadline = time.monotonic() + 10
        while proc.pid not in marked_pids(run_id) and time.monotonic() < deadline:
            time.sleep(0.01)
        assert proc.pid in marked_pids(run_id)
        return proc

    yield start
    for proc in started:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=10)


def _alive(proc: subprocess.Popen[bytes]) -> bool:
    return proc.poll() is None


def _ids() -> tuple[str, str, str]:
    """Two installations and a run-id prefix, fresh for each test."""
    return f"mine-{uuid.uuid4().hex[:8]}", f"theirs-{uuid.uuid4().hex[:8]}", uuid.uuid4().hex


def test_installation_id_is_the_data_dir_s(tmp_path: Path) -> None:
    """The id is a short hash of the resolved data dir: equal for every spelling of one
    directory (relative, through a symlink, with ..), different for another directory."""
    data = tmp_path / "data"
    data.mkdir()
    (tmp_path / "link").symlink_to(data)
    ident = installation_id(data)
    assert len(ident) == 16 and int(ident, 16) >= 0
    assert installation_id(tmp_path / "link") == ident
    assert installation_id(tmp_path / "data" / ".." / "data") == ident
    cwd = os.getcwd()
    try:
        os.chdir(tmp_path)
        assert installation_id(Path("data")) == ident
    finally:
        os.chdir(cwd)
    assert installation_id(tmp_path / "other") != ident


def test_marked_processes_filter_on_the_installation(spawn: Spawn) -> None:
    """Without a filter every marked process is found; with one, only those carrying both
    the run marker and that installation's marker: not another installation's, not one
    without an installation marker. Killing a run for an installation spares the same run
    id's processes of another."""
    mine, theirs, run = _ids()
    own = spawn(f"{run}-own", mine)
    foreign = spawn(f"{run}-foreign", theirs)
    unowned = spawn(f"{run}-unowned")
    shared_mine = spawn(f"{run}-shared", mine)
    shared_theirs = spawn(f"{run}-shared", theirs)

    def ours(found: dict[str, list[int]]) -> dict[str, list[int]]:
        return {k: sorted(v) for k, v in found.items() if k.startswith(run)}

    assert ours(marked_processes()) == {
        f"{run}-own": [own.pid],
        f"{run}-foreign": [foreign.pid],
        f"{run}-unowned": [unowned.pid],
        f"{run}-shared": sorted([shared_mine.pid, shared_theirs.pid]),
    }
    assert ours(marked_processes(mine)) == {
        f"{run}-own": [own.pid],
        f"{run}-shared": [shared_mine.pid],
    }
    assert ours(marked_processes(theirs)) == {
        f"{run}-foreign": [foreign.pid],
        f"{run}-shared": [shared_theirs.pid],
    }
    assert marked_pids(f"{run}-unowned", mine) == []
    assert marked_pids(f"{run}-foreign", mine) == []

    assert kill_run_processes(f"{run}-shared", installation=mine) >= 1
    shared_mine.wait(timeout=10)
    assert _alive(shared_theirs) and marked_pids(f"{run}-shared") == [shared_theirs.pid]
    assert kill_run_processes(f"{run}-foreign", installation=mine) == 0
    assert _alive(foreign) and _alive(own) and _alive(unowned)


class _Store:
    """The reaper's view of its database: only the given runs are unknown to it (so it may
    kill them); every other run is reported running, so a reaper that ignored installations
    would still kill nothing outside this test."""

    def __init__(self, unknown: set[str], ended: set[str]) -> None:
        self.unknown = unknown
        self.ended = ended

    async def get_run(self, run_id: str) -> SimpleNamespace | None:
        if run_id in self.unknown:
            return None
        status = RunStatus.CANCELLED if run_id in self.ended else RunStatus.RUNNING
        return SimpleNamespace(run_id=run_id, status=status)


async def test_the_reaper_kills_only_its_own_installations_orphans(spawn: Spawn) -> None:
    """The scale-out reaper kills this installation's agents whose run its database does
    not know or has ended, and none of another installation's agents (even for run ids its
    database does not know), nor agents without an installation marker, nor its own runs
    still running."""
    mine, theirs, run = _ids()
    orphan = spawn(f"{run}-orphan", mine)
    ended = spawn(f"{run}-ended", mine)
    running = spawn(f"{run}-running", mine)
    foreign = spawn(f"{run}-foreign", theirs)
    foreign_same_run = spawn(f"{run}-orphan", theirs)
    unowned = spawn(f"{run}-unowned")
    store = _Store(
        unknown={f"{run}-orphan", f"{run}-foreign", f"{run}-unowned"}, ended={f"{run}-ended"}
    )
    queue = ProcrastinateQueue(
        "postgresql+psycopg://nobody@127.0.0.1:1/none",
        store,  # type: ignore[arg-type]
        events=None,  # type: ignore[arg-type]
        runner=None,
        installation=mine,
    )

    await queue._kill_orphans()

    orphan.wait(timeout=10)
    ended.wait(timeout=10)
    for proc in (running, foreign, foreign_same_run, unowned):
        assert _alive(proc), proc.args
    assert marked_pids(f"{run}-orphan") == [foreign_same_run.pid]
