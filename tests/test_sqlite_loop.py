"""SQLite driven on the event loop (agentyard.store.sqlite_loop): no driver thread, and a write
lock held elsewhere is waited for without ever blocking the loop."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from agentyard.store import sqlite_loop
from agentyard.store.db import create_engine


@pytest.fixture
async def engine(tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'loop.db'}")
    async with engine.begin() as conn:
        await conn.execute(sa.text("CREATE TABLE t (n INTEGER)"))
    yield engine
    await engine.dispose()


def hold_write_lock(path: str, seconds: float) -> subprocess.Popen[str]:
    """Another process that holds the database's write lock for ``seconds`` (it inserts 0)."""
    code = (
        "import sqlite3, sys, time\n"
        f"c = sqlite3.connect({path!r}, isolation_level=None)\n"
        "c.execute('BEGIN IMMEDIATE'); c.execute('INSERT INTO t VALUES (0)')\n"
        "print('locked', flush=True)\n"
        f"time.sleep({seconds}); c.execute('COMMIT')\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "locked"
    return proc


async def test_statements_run_on_the_loops_thread(engine: AsyncEngine) -> None:
    threads: set[int] = set()

    @sa.event.listens_for(engine.sync_engine, "before_cursor_execute")
    def _where(*_: Any) -> None:
        threads.add(threading.get_ident())

    async with engine.begin() as conn:
        await conn.execute(sa.text("INSERT INTO t VALUES (1)"))
        assert (await conn.execute(sa.text("SELECT count(*) FROM t"))).scalar_one() == 1
    assert threads == {threading.get_ident()}


async def test_a_lock_held_by_another_process_is_waited_for(
    engine: AsyncEngine, tmp_path: Path
) -> None:
    """The write waits for the other process's commit, the loop keeps running meanwhile,
    and both rows are there."""
    holder = hold_write_lock(str(tmp_path / "loop.db"), 0.6)
    ticks = 0

    async def tick() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    ticker = asyncio.create_task(tick())
    started = time.monotonic()
    try:
        async with engine.begin() as conn:
            await conn.execute(sa.text("INSERT INTO t VALUES (1)"))
    finally:
        ticker.cancel()
    waited = time.monotonic() - started
    assert holder.wait(10) == 0
    assert 0.3 < waited < 5
    assert ticks > waited / 0.01 / 3  # the loop was not blocked while it waited
    async with engine.connect() as conn:
        rows = (await conn.execute(sa.text("SELECT n FROM t ORDER BY n"))).scalars().all()
    assert rows == [0, 1]


async def test_a_lock_held_too_long_fails_the_write(
    engine: AsyncEngine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sqlite_loop, "BUSY_WAIT_SECONDS", 0.2)
    holder = hold_write_lock(str(tmp_path / "loop.db"), 1.5)
    with pytest.raises(sa.exc.OperationalError, match="database is locked"):
        async with engine.begin() as conn:
            await conn.execute(sa.text("INSERT INTO t VALUES (1)"))
    assert holder.wait(10) == 0
    async with engine.connect() as conn:
        rows = (await conn.execute(sa.text("SELECT n FROM t"))).scalars().all()
    assert rows == [0]


async def test_interleaved_transactions_of_one_process_all_commit(engine: AsyncEngine) -> None:
    """Transactions that yield to the loop halfway (so that others start meanwhile) find
    each other's lock and wait: every one of them commits, none is lost."""

    async def add(n: int) -> None:
        async with engine.begin() as conn:
            await conn.execute(sa.text("INSERT INTO t VALUES (:n)"), {"n": n})
            await asyncio.sleep(0.001)
            await conn.execute(sa.text("INSERT INTO t VALUES (:n)"), {"n": -n})

    await asyncio.gather(*(add(n) for n in range(1, 41)))
    async with engine.connect() as conn:
        rows = (await conn.execute(sa.text("SELECT n FROM t"))).scalars().all()
    assert sorted(rows) == sorted([*range(1, 41), *range(-40, 0)])
