"""Shared fixtures: a migrated store on SQLite and on PostgreSQL, and its event log.

Each PostgreSQL test gets a fresh database cloned from a migrated template.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import psycopg
import pytest

from agentyard.events.bus import LocalBus
from agentyard.events.log import EventLog
from agentyard.store.db import create_engine, migrate
from agentyard.store.store import Store
from agentyard.testing.harness import ServerProcess

# No test may reach a real model provider: strip their credentials from the environment.
for _name in list(os.environ):
    if _name.startswith(
        ("ANTHROPIC_", "OPENAI_", "CLAUDE_", "CODEX_", "AGENTYARD_", "GEMINI_", "GOOGLE_")
    ):
        del os.environ[_name]

PG_DSN = os.environ.get("TEST_PG_DSN", "postgresql://postgres@127.0.0.1:5432")
TEMPLATE = f"agentyard_test_template_{os.getpid()}"
"""One per test session: sessions of several checkouts (other migrations) run side by side."""
PG_URL = f"postgresql+psycopg://postgres@{PG_DSN.split('@', 1)[1]}"
"""The server's SQLAlchemy URL of PG_DSN, but for the database's name."""


def admin() -> psycopg.Connection:
    return psycopg.connect(f"{PG_DSN}/postgres", autocommit=True, connect_timeout=5)


@pytest.fixture(scope="session")
def pg_template() -> Iterator[str]:
    """A migrated template database, made once per test session."""
    with admin() as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{TEMPLATE}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{TEMPLATE}"')
    migrate(f"{PG_URL}/{TEMPLATE}")
    yield TEMPLATE
    with admin() as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{TEMPLATE}" WITH (FORCE)')


@pytest.fixture
def pg_database(pg_template: str) -> Iterator[str]:
    """A fresh database cloned from the template; its SQLAlchemy URL."""
    name = f"agentyard_test_{uuid.uuid4().hex[:12]}"
    with admin() as conn:
        conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{pg_template}"')
    yield f"{PG_URL}/{name}"
    with admin() as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path / 'test.db'}"
        migrate(url)
        return url
    url: str = request.getfixturevalue("pg_database")
    return url


@pytest.fixture
async def store(database_url: str) -> AsyncIterator[Store]:
    s = Store(create_engine(database_url))
    yield s
    await s.close()


@pytest.fixture
def client(server: ServerProcess) -> Iterator[httpx.Client]:
    """An API client (the admin key) of the test module's ``server`` fixture."""
    with server.client() as c:
        yield c


@pytest.fixture
def event_log(store: Store) -> EventLog:
    return EventLog(store, LocalBus(capacity=50))
