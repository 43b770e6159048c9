"""The schema: Alembic's history, the declared metadata and the database a server builds
agree, and a server never loads Alembic unless a database must be upgraded."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.script import ScriptDirectory

from agentyard.store.db import SCHEMA_HEAD, alembic_config, migrate, sync_url
from agentyard.store.tables import metadata
from conftest import PG_URL, admin


@pytest.fixture
def empty_databases(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Any]:
    """Makes empty databases of the test's kind (SQLite or PostgreSQL): their URLs."""
    kind = request.param
    made: list[str] = []

    def make() -> str:
        if kind == "sqlite":
            return f"sqlite+aiosqlite:///{tmp_path / f'{uuid.uuid4().hex[:8]}.db'}"
        name = f"agentyard_test_empty_{uuid.uuid4().hex[:12]}"
        with admin() as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        made.append(name)
        return f"{PG_URL}/{name}"

    yield make
    with admin() as conn:
        for name in made:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


KINDS = pytest.mark.parametrize(
    "empty_databases",
    ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)],
    indirect=True,
)


def _schema(url: str) -> dict[str, Any]:
    """Everything the inspector tells of our tables and Alembic's, comparable as data."""
    engine = sa.create_engine(sync_url(url), poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as conn:
            inspector = sa.inspect(conn)
            schema: dict[str, Any] = {}
            for table in sorted(inspector.get_table_names()):
                if table not in metadata.tables and table != "alembic_version":
                    continue  # procrastinate's own
                columns = [
                    (c["name"], str(c["type"]), c["nullable"], c.get("default"))
                    for c in inspector.get_columns(table)
                ]
                schema[table] = {
                    "columns": columns,
                    "pk": inspector.get_pk_constraint(table)["constrained_columns"],
                    "fks": sorted(
                        json.dumps(
                            [
                                fk["constrained_columns"],
                                fk["referred_table"],
                                fk["referred_columns"],
                            ]
                        )
                        for fk in inspector.get_foreign_keys(table)
                    ),
                    "indexes": sorted(
                        (i["name"], tuple(i["column_names"]), bool(i["unique"]))
                        for i in inspector.get_indexes(table)
                    ),
                    "uniques": sorted(
                        tuple(u["column_names"]) for u in inspector.get_unique_constraints(table)
                    ),
                    "checks": sorted(c["sqltext"] for c in inspector.get_check_constraints(table)),
                }
            revision = conn.execute(sa.text("SELECT version_num FROM alembic_version")).all()
            schema["revision"] = [r[0] for r in revision]
            return schema
    finally:
        engine.dispose()


def test_the_head_the_server_knows_is_the_migrations_head() -> None:
    """SCHEMA_HEAD is what a new migration must move: it is the scripts' own head."""
    head = ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head()
    assert head == SCHEMA_HEAD


@KINDS
def test_the_migrations_build_exactly_the_declared_schema(empty_databases: Any) -> None:
    """Alembic's history, run from nothing, and the SQLAlchemy metadata agree."""
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    url = empty_databases()
    command.upgrade(alembic_config(url), "head")
    engine = sa.create_engine(sync_url(url))
    try:
        with engine.connect() as conn:
            context = MigrationContext.configure(
                conn,
                # procrastinate's own tables are its migrations' business, not ours.
                opts={
                    "include_name": lambda name, kind, _: kind != "table" or name in metadata.tables
                },
            )
            diff = compare_metadata(context, metadata)
    finally:
        engine.dispose()
    assert diff == []


@KINDS
def test_a_new_database_is_what_the_migrations_would_build(empty_databases: Any) -> None:
    """An empty database is built from the declared schema and stamped at the head: the
    same tables, columns, keys, indexes and constraints as the whole history would give."""
    through_history, built = empty_databases(), empty_databases()
    command.upgrade(alembic_config(through_history), "head")
    migrate(built)
    expected = _schema(through_history)
    assert expected["revision"] == [SCHEMA_HEAD] and "runs" in expected
    assert _schema(built) == expected
    migrate(built)  # at the head: nothing to do
    assert _schema(built) == expected


@KINDS
def test_a_database_at_an_older_revision_is_upgraded(empty_databases: Any) -> None:
    """A database an older server made goes through the migrations it lacks, its rows kept."""
    old, fresh = empty_databases(), empty_databases()
    command.upgrade(alembic_config(old), "0005")
    engine = sa.create_engine(sync_url(old), poolclass=sa.pool.NullPool)
    with engine.begin() as conn:
        conn.execute(
            sa.text("INSERT INTO chats (chat_id, user_id, created_at) VALUES ('c1', 'u', :now)"),
            {"now": "2026-01-01 00:00:00"},
        )
    migrate(old)
    migrate(fresh)
    assert _schema(old) == _schema(fresh)
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT chat_id FROM chats")).scalars().all() == ["c1"]
    engine.dispose()


def test_a_database_with_tables_but_no_revision_is_refused(tmp_path: Path) -> None:
    """Tables of ours without Alembic's record are not built over: Alembic's upgrade from
    nothing meets them and fails, and the database is not marked current."""
    url = f"sqlite:///{tmp_path / 'odd.db'}"
    engine = sa.create_engine(url)
    metadata.tables["chats"].create(engine)
    with pytest.raises(sa.exc.OperationalError, match="already exists"):
        migrate(url)
    with engine.connect() as conn:
        stamped = conn.execute(sa.text("SELECT version_num FROM alembic_version")).all()
    engine.dispose()
    assert stamped == []


def test_a_server_at_the_head_never_loads_alembic(tmp_path: Path) -> None:
    """Neither building a new database nor finding one current imports Alembic (a server
    keeps whatever it imports for its lifetime)."""
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    code = (
        "import sys; from agentyard.store.db import migrate; import agentyard.server; "
        f"migrate({url!r}); migrate({url!r}); "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('alembic', 'mako')))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert result.stdout.strip() == "[]"


def test_two_migrators_building_one_new_database_at_once(tmp_path: Path) -> None:
    """Of two migrators on one new SQLite file, one builds it and the other finds it built."""

    def run(url: str, start: threading.Barrier, errors: list[BaseException]) -> None:
        start.wait()
        try:
            migrate(url)
        except BaseException as exc:
            errors.append(exc)

    for attempt in range(5):
        url = f"sqlite:///{tmp_path / f'race{attempt}.db'}"
        errors: list[BaseException] = []
        start = threading.Barrier(2)
        threads = [threading.Thread(target=run, args=(url, start, errors)) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        assert errors == []
        assert _schema(url)["revision"] == [SCHEMA_HEAD]


@KINDS
def test_a_build_cut_short_leaves_an_empty_database(empty_databases: Any) -> None:
    """The tables of a new database are made in one transaction: a build that fails (or is
    killed) halfway leaves nothing behind, and the next start builds it whole."""
    url = empty_databases()

    def cut(*_args: Any, **_kwargs: Any) -> None:
        raise RuntimeError("cut short")

    runs = metadata.tables["runs"]
    sa.event.listen(runs, "after_create", cut)
    try:
        with pytest.raises(RuntimeError, match="cut short"):
            migrate(url)
    finally:
        sa.event.remove(runs, "after_create", cut)
    engine = sa.create_engine(sync_url(url), poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as conn:
            left = set(sa.inspect(conn).get_table_names()) & {*metadata.tables, "alembic_version"}
    finally:
        engine.dispose()
    assert left == set()
    migrate(url)
    assert _schema(url)["revision"] == [SCHEMA_HEAD]
