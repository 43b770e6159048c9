"""Engine creation and schema migration for SQLite and PostgreSQL."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from agentyard.store import sqlite_loop

MIGRATIONS_DIR = Path(__file__).with_name("migrations")


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
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.set_main_option("sqlalchemy.url", sync_url(url).replace("%", "%%"))
    return cfg


def migrate(url: str) -> None:
    """Bring the database to the newest schema (blocking; run it in a thread from async code)."""
    if is_sqlite(url):
        path = url.split(":///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        command.upgrade(alembic_config(url), "head")
        return
    import psycopg

    with psycopg.connect(psycopg_conninfo(url), autocommit=True) as conn:
        # One migrator at a time, even when an API process and its workers start together.
        conn.execute("SELECT pg_advisory_lock(74201)")
        try:
            command.upgrade(alembic_config(url), "head")
            _apply_procrastinate_schema(conn)
        finally:
            conn.execute("SELECT pg_advisory_unlock(74201)")


def psycopg_conninfo(url: str) -> str:
    """The libpq connection string of a ``postgresql+psycopg://`` URL."""
    return sa.make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def _apply_procrastinate_schema(conn: Any) -> None:
    """procrastinate's own schema, once, on PostgreSQL (the job queue of the scale-out)."""
    from procrastinate.schema import SchemaManager

    exists = conn.execute("SELECT to_regclass('procrastinate_jobs')").fetchone()
    if exists is None or exists[0] is None:
        conn.execute(SchemaManager.get_schema())
