"""Point reads on SQLite on the event loop itself: a statement built once, compiled once,
run on a bare sqlite3 connection of its own, its row processed as SQLAlchemy would."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine


class SqliteReader:
    """Point reads on SQLite on the event loop itself, on a connection of their own.

    A read by primary key takes tens of microseconds; SQLAlchemy's execution of it (even on
    the loop, see ``sqlite_loop``) costs several times that. So each statement (built once,
    see below) is compiled once, run on the bare sqlite3 connection, and its row processed
    with its columns' own result processors: the values are what SQLAlchemy would return.
    In WAL mode a reader never waits for the writer; should SQLite still answer "busy" (it
    has no busy wait here, so the loop never blocks on a lock), the caller reads through
    the pool instead, which waits for it without blocking the loop."""

    def __init__(self, engine: AsyncEngine) -> None:
        url = engine.url.set(drivername="sqlite")
        self.engine = sa.create_engine(
            url, poolclass=sa.pool.StaticPool, connect_args={"timeout": 0}
        )
        self._compiled: dict[int, _Compiled] = {}
        self._connection: Any = None
        self._opened = 0
        """Counts the connections opened: a version is one connection's own."""

        @sa.event.listens_for(self.engine, "connect")
        def _pragmas(dbapi_conn: Any, _record: Any) -> None:
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA query_only=ON")
            cur.close()

    def first(self, statement: sa.Select[Any], params: dict[str, Any]) -> dict[str, Any] | None:
        """The first row as a mapping of column names; sqlite3.OperationalError if busy."""
        compiled = self._compiled.get(id(statement))
        if compiled is None:
            compiled = self._compiled[id(statement)] = _Compiled(statement, self.engine.dialect)
        row = self._open().execute(compiled.sql, compiled.parameters(params)).fetchone()
        return None if row is None else compiled.mapping(row)

    def version(self) -> tuple[int, int]:
        """A mark that changes whenever any other connection (in this process or another)
        has committed a change since the last call: SQLite's ``data_version``, on this
        reader's own connection (which never writes). sqlite3.OperationalError if busy."""
        row = self._open().execute("PRAGMA data_version").fetchone()
        return self._opened, int(row[0])

    def _open(self) -> Any:
        if self._connection is None:
            self._connection = self.engine.raw_connection().driver_connection
            self._opened += 1
        return self._connection

    def close(self) -> None:
        self._connection = None
        self.engine.dispose()


class _Compiled:
    """A statement compiled for SQLite once: its SQL, its parameters' order and processing,
    and its columns' names and result processors."""

    def __init__(self, statement: sa.Select[Any], dialect: sa.Dialect) -> None:
        compiled = statement.compile(dialect=dialect)
        self.statement = statement  # kept alive, so that its id() stays its own
        self.sql = str(compiled)
        self.names = list(compiled.positiontup or [])
        self.binds: dict[str, Any] = dict(compiled._bind_processors)
        self.columns = [
            (column[0], column[3]._cached_result_processor(dialect, None))
            for column in compiled._result_columns
        ]

    def parameters(self, params: dict[str, Any]) -> list[Any]:
        values = []
        for name in self.names:
            value = params[name]
            process = self.binds.get(name)
            values.append(process(value) if process is not None else value)
        return values

    def mapping(self, row: tuple[Any, ...]) -> dict[str, Any]:
        return {
            name: (process(value) if process is not None else value)
            for (name, process), value in zip(self.columns, row, strict=True)
        }


def reader_for(engine: AsyncEngine) -> SqliteReader | None:
    database = engine.url.database
    if engine.dialect.name != "sqlite" or not database or database == ":memory:":
        return None
    return SqliteReader(engine)
