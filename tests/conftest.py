"""Shared fixtures: a migrated store on SQLite, and its event log."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from agentyard.events.bus import LocalBus
from agentyard.events.log import EventLog
from agentyard.store.db import create_engine, migrate
from agentyard.store.store import Store

# No test may reach a real model provider: strip their credentials from the environment.
for _name in list(os.environ):
    if _name.startswith(("ANTHROPIC_", "OPENAI_", "CLAUDE_", "CODEX_", "AGENTYARD_")):
        del os.environ[_name]


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    url = f"sqlite+aiosqlite:///{tmp_path / 'test.db'}"
    migrate(url)
    s = Store(create_engine(url))
    yield s
    await s.close()


@pytest.fixture
def event_log(store: Store) -> EventLog:
    return EventLog(store, LocalBus(capacity=50))
