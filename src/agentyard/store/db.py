"""Engine creation and schema migration for SQLite and PostgreSQL."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from agentyard.store import sqlite_loop

if TYPE_CHECKING:
    from alembic.config import Config

MIGRATIONS_DIR = Path(__file__).with_name("migrations")
SCHEMA_HEAD = "0006"
"""The newest migration's revision (a test holds it to the migration scripts' head)."""
_VERSION_TABLE = sa.Table(
    "alembic_version",
    sa.MetaData(),
    sa.Column("version_num", sa.String(32), nullable=False),
    sa.PrimaryKeyConstraint("version_num", name="alembic_version_pkc"),
)
"""Alembic's own record of the revision, as Alembic creates it."""
_UNKNOWN = ""


def is_sqlite(url: str) -> bool:
    return url.startswith("sqlite")


def sync_url(url: str) -> str:
    """The URL Alembic uses: same database, a synchronous driver (``sqlite+aiosqlite`` is
    still accepted from settings, though the server never loads aiosqlite)."""
    return url.replace("sqlite+aiosqlite", "sqlite", 1)


sa.dialects.registry.register(
    f"sqlite.{sqlite_loop.DRIVER}", "agentyard.store.sqlite_loop", "SQLiteLoopDialect"
)


def create_engine(url: str) -> AsyncEngine:
    if is_sqlite(url):
        # SQLite's statements run on the event loop (agentyard.store.sqlite_loop), whichever
        # async driver the URL names.
        parsed = sa.make_url(url).set(drivername=f"sqlite+{sqlite_loop.DRIVER}")
        engine = create_async_engine(parsed, pool_size=64, max_overflow=64)

        @sa.event.listens_for(engine.sync_engine, "connect")
        def _pragmas(dbapi_conn: Any, _record: Any) -> None:
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.close()

        return engine
    return create_async_engine(url, pool_size=10, max_overflow=20, pool_pre_ping=True)


def alembic_config(url: str) -> Config:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.set_main_option("sqlalchemy.url", sync_url(url).replace("%", "%%"))
    return cfg


def migrate(url: str) -> None:
    """Bring the database to the newest schema (blocking; run it in a thread from async code).

    A database at :data:`SCHEMA_HEAD` is left as it is, and an empty one is given the
    declared schema (``tables.metadata``, which a test holds equal to what the migrations
    build) and stamped at the head, in one transaction. Neither loads Alembic: a server that
    did kept its modules and templates (about 10 MB) for its lifetime. Only a database at an
    older revision (or one Alembic must judge) is upgraded through the migrations.
    """
    if is_sqlite(url):
        path = url.split(":///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        if _build_if_empty(url) != SCHEMA_HEAD:
            _upgrade(url)
        return
    import psycopg

    with psycopg.connect(psycopg_conninfo(url), autocommit=True) as conn:
        # One migrator at a time, even when an API process and its workers start together.
        conn.execute("SELECT pg_advisory_lock(74201)")
        try:
            if _build_if_empty(url) != SCHEMA_HEAD:
                _upgrade(url)
            _apply_procrastinate_schema(conn)
        finally:
            conn.execute("SELECT pg_advisory_unlock(74201)")


def _build_if_empty(url: str) -> str:
    """The database's revision, after giving an empty database the declared schema at
    :data:`SCHEMA_HEAD`; ``""`` where there is no single revision to tell."""
    from agentyard.store.tables import metadata

    sqlite = is_sqlite(url)
    engine = sa.create_engine(
        sync_url(url),
        poolclass=sa.pool.NullPool,
        connect_args={"timeout": 30} if sqlite else {"connect_timeout": 10},
    )
    if sqlite:
        # pysqlite would commit each CREATE on its own: one transaction, holding the write
        # lock from the first read, so that of two processes starting at once one builds.
        @sa.event.listens_for(engine, "connect")
        def _no_implicit_transactions(dbapi_conn: Any, _record: Any) -> None:
            dbapi_conn.isolation_level = None

        @sa.event.listens_for(engine, "begin")
        def _begin_immediate(conn: sa.Connection) -> None:
            conn.exec_driver_sql("BEGIN IMMEDIATE")

    try:
        with engine.begin() as conn:
            names = set(sa.inspect(conn).get_table_names())
            if _VERSION_TABLE.name in names:
                versions = conn.execute(sa.select(_VERSION_TABLE.c.version_num)).scalars().all()
                return versions[0] if len(versions) == 1 else _UNKNOWN
            if names & set(metadata.tables):
                return _UNKNOWN  # tables without a revision: Alembic says what is wrong
            metadata.create_all(conn)
            _VERSION_TABLE.create(conn)
            conn.execute(_VERSION_TABLE.insert().values(version_num=SCHEMA_HEAD))
            return SCHEMA_HEAD
    finally:
        engine.dispose()


def _upgrade(url: str) -> None:
    from alembic import command

    command.upgrade(alembic_config(url), "head")


def psycopg_conninfo(url: str) -> str:
    """The libpq connection string of a ``postgresql+psycopg://`` URL."""
    return sa.make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def _apply_procrastinate_schema(conn: Any) -> None:
    """procrastinate's own schema, once, on PostgreSQL (the job queue of the scale-out)."""
    from procrastinate.schema import SchemaManager

    exists = conn.execute("SELECT to_regclass('procrastinate_jobs')").fetchone()
    if exists is None or exists[0] is None:
        conn.execute(SchemaManager.get_schema())
