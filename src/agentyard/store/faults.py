"""Database faults: which errors are worth retrying, what a user may be told, and the retry
loop behind every write a run depends on.

A PostgreSQL restart, a dropped connection or SQLite's ``database is locked`` pass: the
write is retried with backoff. A full disk does not pass by waiting a few seconds, so a run
ends on it at once; but its terminal write still waits until the disk accepts it. Nothing
here ever lets SQL (which SQLAlchemy puts in its messages) reach a user.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import TypeVar

import sqlalchemy.exc as sa_exc
import structlog

log = structlog.get_logger(__name__)

T = TypeVar("T")

DISK_FULL = "disk full: the server's storage has no space left"
UNAVAILABLE = "the database is unavailable"

_DISK_FULL_TEXT = ("database or disk is full", "disk full", "no space left on device")
_TRANSIENT_TEXT = (
    "database is locked",
    "database table is locked",
    "server closed the connection",
    "connection refused",
    "connection reset",
    "connection is closed",
    "connection timeout",
    "couldn't get a connection",
    "terminating connection",
    "the database system is starting up",
    "the database system is shutting down",
    "could not receive data",
    "could not send data",
    "consuming input failed",
    "ssl syscall error",
    "broken pipe",
    "timed out",
)
# PostgreSQL's SQLSTATE classes: 08 connection exception, 57P admin shutdown / crash
# shutdown / cannot connect now, 53100 disk full, 40001/40P01 serialization and deadlock.
_TRANSIENT_SQLSTATES = ("08", "57P", "40001", "40P01", "53300")
_DISK_FULL_SQLSTATES = ("53100",)


class DatabaseFault(Exception):
    """A run cannot go on because of the database; the message is safe to show a user."""


def causes(exc: BaseException) -> Iterator[BaseException]:
    """The exception, what it wraps (SQLAlchemy's ``orig``) and its causes."""
    seen: set[int] = set()
    todo: list[BaseException | None] = [exc]
    while todo:
        item = todo.pop()
        if item is None or id(item) in seen:
            continue
        seen.add(id(item))
        yield item
        orig = getattr(item, "orig", None)
        todo.extend([orig if isinstance(orig, BaseException) else None, item.__cause__])


def sqlstate(exc: BaseException) -> str:
    state = getattr(exc, "sqlstate", None) or getattr(exc, "pgcode", None)
    return state if isinstance(state, str) else ""


def _text(exc: BaseException) -> str:
    # SQLAlchemy's own message carries the SQL; the driver's (``orig``) is visited too.
    return str(exc.args[0] if exc.args else exc).lower()


def is_disk_full(exc: BaseException) -> bool:
    for item in causes(exc):
        if sqlstate(item).startswith(_DISK_FULL_SQLSTATES):
            return True
        if isinstance(item, OSError) and item.errno == 28:  # ENOSPC
            return True
        if any(text in _text(item) for text in _DISK_FULL_TEXT):
            return True
    return False


def is_transient(exc: BaseException) -> bool:
    """A fault that waiting may cure: lost connection, restart, lock contention."""
    if is_disk_full(exc):
        return False
    for item in causes(exc):
        if isinstance(item, sa_exc.DBAPIError) and item.connection_invalidated:
            return True
        if isinstance(item, sa_exc.DisconnectionError | sa_exc.TimeoutError):
            return True
        if isinstance(item, ConnectionError | TimeoutError):
            return True
        if sqlstate(item).startswith(_TRANSIENT_SQLSTATES):
            return True
        name = type(item).__name__
        if name in ("OperationalError", "InterfaceError", "PoolTimeout", "PoolClosed") and (
            any(text in _text(item) for text in _TRANSIENT_TEXT) or _is_driver_error(item)
        ):
            return True
    return False


def _is_driver_error(exc: BaseException) -> bool:
    """psycopg's OperationalError is raised for connection problems only."""
    return type(exc).__module__.startswith(("psycopg", "psycopg_pool"))


def is_database_error(exc: BaseException) -> bool:
    return any(
        isinstance(item, sa_exc.SQLAlchemyError | DatabaseFault)
        or type(item).__module__.startswith(("psycopg", "sqlite3", "procrastinate"))
        for item in causes(exc)
    )


def public_message(exc: BaseException) -> str:
    """What a user may read about ``exc``: never SQL, parameters or a driver's internals."""
    if isinstance(exc, DatabaseFault):
        return str(exc)
    if is_disk_full(exc):
        return DISK_FULL
    if is_transient(exc):
        return UNAVAILABLE
    if is_database_error(exc):
        return f"internal database error ({type(exc).__name__})"
    return f"internal error: {exc}"


@dataclass(frozen=True)
class RetryPolicy:
    """How long a run waits for the database before it gives up, and how often it asks."""

    outage_seconds: float = 60.0
    """A run survives an outage this long; then it ends, naming the database."""
    first_delay: float = 0.05
    max_delay: float = 1.0

    async def run(
        self,
        op: Callable[[], Awaitable[T]],
        *,
        what: str,
        forever: bool = False,
        on_retry: Callable[[], None] | None = None,
    ) -> T:
        """``op()``, retried across transient faults for up to ``outage_seconds``.

        With ``forever`` (terminal writes: a run must not stay ``running``), transient faults
        and a full disk are retried until the write lands. Otherwise a full disk raises
        :class:`DatabaseFault` at once, and so does an outage past the limit.
        """
        delay = self.first_delay
        failing_since: float | None = None
        while True:
            try:
                return await op()
            except Exception as exc:
                disk_full = is_disk_full(exc)
                if not forever and disk_full:
                    raise DatabaseFault(DISK_FULL) from exc
                if not (disk_full or is_transient(exc)):
                    raise
                now = time.monotonic()
                failing_since = now if failing_since is None else failing_since
                if not forever and now - failing_since >= self.outage_seconds:
                    raise DatabaseFault(
                        f"the database was unreachable for more than {self.outage_seconds:g} s"
                    ) from exc
                if on_retry is not None:
                    on_retry()
                log.warning("database write failed; retrying", what=what, error=public_message(exc))
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.max_delay)
