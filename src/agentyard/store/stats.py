"""Read-only figures about the database for ``/metrics`` and ``/readyz``: each one query,
cheap enough to run on every scrape or probe."""

from __future__ import annotations

import sqlalchemy as sa

from agentyard.metrics import RunCount
from agentyard.store.store import Store
from agentyard.store.tables import runs


async def run_counts(store: Store) -> list[RunCount]:
    """The runs table grouped by agent and status, with each group's oldest creation."""
    query = sa.select(
        runs.c.agent,
        runs.c.status,
        sa.func.count().label("n"),
        sa.func.min(runs.c.created_at).label("oldest"),
    ).group_by(runs.c.agent, runs.c.status)
    async with store.engine.connect() as conn:
        rows = (await conn.execute(query)).all()
    return [RunCount(str(r.agent), str(r.status), int(r.n), r.oldest) for r in rows]


async def schema_revision(store: Store) -> str | None:
    """The migration the database is at (``None`` if it was never migrated)."""
    async with store.engine.connect() as conn:
        try:
            row = (await conn.execute(sa.text("SELECT version_num FROM alembic_version"))).first()
        except sa.exc.ProgrammingError:  # PostgreSQL: no such table
            return None
        except sa.exc.OperationalError as exc:  # SQLite: no such table; anything else raises
            if "no such table" in str(exc):
                return None
            raise
    return None if row is None else str(row[0])
