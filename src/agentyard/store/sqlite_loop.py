"""SQLite on the event loop itself: the pysqlite dialect, declared async, with no driver thread.

aiosqlite runs each call (execute, fetch, commit) on a thread of its own connection and hands
the result back to the event loop: three or four thread hops a statement. A hop is cheap on an
idle server, but while runs execute, the loop and the other threads take turns at the GIL and
each hop waited 1-3 ms: a transaction of a few statements took 10-30 ms, which set the pace of
a draining queue. SQLite's own work for such a statement is tens of microseconds (WAL, and
``synchronous=NORMAL``: a commit appends to the log without an fsync), so here it runs where
it is asked for. SQLAlchemy's asyncio engine drives it as it drives any async driver (its
greenlet simply never has to wait), so the store's code, its statements and the tests' fault
hooks are unchanged.

Waiting is the one thing the loop must never do inside SQLite. The busy timeout is zero, and
when another process holds the write lock (the CLI, a second server on the same file), a
statement that starts a transaction gets ``SQLITE_BUSY`` at once: it is rolled back (it had
done nothing yet), the loop sleeps briefly and it is tried again, for up to 30 s as SQLite's
busy timeout would. Within this process a transaction runs its statements without yielding to
the loop in between (unless its own code awaits something else), so the server's own writers
seldom meet each other's lock, and wait the same way when they do.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from typing import Any

from sqlalchemy import pool
from sqlalchemy.dialects.sqlite.pysqlite import SQLiteDialect_pysqlite
from sqlalchemy.engine import URL
from sqlalchemy.util.concurrency import await_

DRIVER = "agentyard"
"""``sqlite+agentyard://``, registered in :mod:`agentyard.store.db`."""
_SQLITE_BUSY = 5
BUSY_WAIT_SECONDS = 30.0
_FIRST_DELAY, _MAX_DELAY = 0.001, 0.05


class _Cursor(sqlite3.Cursor):
    def execute(self, sql: str, parameters: Any = (), /) -> _Cursor:
        return _retrying(self, super().execute, sql, parameters)

    def executemany(self, sql: str, parameters: Any, /) -> _Cursor:
        return _retrying(self, super().executemany, sql, parameters)

    async def _async_soft_close(self) -> None:
        """Nothing to do: its rows are read on this thread, whenever they are fetched."""


class _Connection(sqlite3.Connection):
    def cursor(self, factory: Any = _Cursor) -> Any:
        return super().cursor(factory)


async def _ready() -> None:
    """Awaited once a statement: SQLAlchemy's asyncio engine checks that its driver was
    awaited (this is an async driver that never has to wait)."""


def _retrying(cursor: _Cursor, call: Any, sql: str, parameters: Any) -> _Cursor:
    await_(_ready())
    connection = cursor.connection
    fresh = not connection.in_transaction
    deadline: float | None = None
    delay = _FIRST_DELAY
    while True:
        try:
            call(sql, parameters)
            return cursor
        except sqlite3.OperationalError as exc:
            # Only a statement that starts a transaction (or runs on its own) can be tried
            # again: within one, a lost lock means its reads may be stale.
            if not fresh or exc.sqlite_errorcode & 0xFF != _SQLITE_BUSY:
                raise
            now = time.monotonic()
            if deadline is None:
                deadline = now + BUSY_WAIT_SECONDS
            elif now >= deadline:
                raise
            if connection.in_transaction:
                connection.rollback()  # the BEGIN before it: it holds no stale snapshot then
            await_(asyncio.sleep(delay))
            delay = min(delay * 2, _MAX_DELAY)


class SQLiteLoopDialect(SQLiteDialect_pysqlite):
    """pysqlite, driven by SQLAlchemy's asyncio engine on the event loop's thread."""

    driver = DRIVER
    is_async = True
    supports_statement_cache = True

    @classmethod
    def get_pool_class(cls, url: URL) -> type[pool.Pool]:
        if cls._is_url_file_db(url):
            return pool.AsyncAdaptedQueuePool
        return pool.StaticPool

    def connect(self, *cargs: Any, **cparams: Any) -> Any:
        # Never a busy wait inside SQLite (see above); closed from whichever thread disposes.
        cparams.update(factory=_Connection, timeout=0, check_same_thread=False)
        return super().connect(*cargs, **cparams)
