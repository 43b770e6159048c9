"""Taking queued runs: which run a free slot executes next, and the per-user cap.

The claim is one UPDATE with a sub-select, built once (a statement is cheap to run from
SQLAlchemy's cache, not to build): the write lock is taken first on SQLite, and on
PostgreSQL concurrent claimers each take another run (``SKIP LOCKED``); the status guard
means two claimers never take the same run.
"""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from agentyard.core.status import RunStatus
from agentyard.store import tables as t

_QUEUED = RunStatus.QUEUED.value
_RUNNING = RunStatus.RUNNING.value


def _claim_statement(capped: bool) -> sa.Update:
    busy = t.runs.alias("busy")
    running_of_user = (
        sa.select(sa.func.count())
        .where(busy.c.user_id == t.runs.c.user_id, busy.c.status == _RUNNING)
        .scalar_subquery()
    )
    same_chat = t.runs.alias("same_chat")
    chat_busy = sa.exists().where(
        same_chat.c.chat_id == t.runs.c.chat_id, same_chat.c.status == _RUNNING
    )
    # A chat's runs share its workspace: never two of them at once, and in their order.
    earlier = t.runs.alias("earlier")
    chat_waits = sa.exists().where(
        earlier.c.chat_id == t.runs.c.chat_id,
        earlier.c.status == _QUEUED,
        sa.or_(
            earlier.c.created_at < t.runs.c.created_at,
            sa.and_(
                earlier.c.created_at == t.runs.c.created_at,
                earlier.c.run_id < t.runs.c.run_id,
            ),
        ),
    )
    claimable = [t.runs.c.status == _QUEUED, ~chat_busy, ~chat_waits]
    if capped:
        claimable.append(running_of_user < sa.bindparam("cap"))
    # Fair: the user with the fewest runs executing goes first, then the oldest run, so a
    # 5-agent group or a burst from one user never starves another user's task.
    oldest = (
        sa.select(t.runs.c.run_id)
        .where(*claimable)
        .order_by(running_of_user, t.runs.c.created_at, t.runs.c.run_id)
        .limit(1)
        # PostgreSQL: concurrent claimers each take another run (SQLite has one writer).
        .with_for_update(skip_locked=True, of=t.runs)
        .scalar_subquery()
    )
    return (
        t.runs.update()
        .where(t.runs.c.run_id == oldest, t.runs.c.status == _QUEUED)
        .values(
            status=_RUNNING,
            started_at=sa.bindparam("claimed_at"),
            heartbeat_at=sa.bindparam("claimed_at"),
            worker_id=sa.bindparam("claimer"),
        )
        .returning(t.runs.c.run_id)
    )


_CLAIM = _claim_statement(capped=False)
_CLAIM_CAPPED = _claim_statement(capped=True)


async def claim(
    conn: AsyncConnection, worker_id: str, now: datetime, user_max_running: int | None
) -> str | None:
    """Move the next claimable queued run to ``running`` for ``worker_id``; its id, or None."""
    params: dict[str, object] = {"claimed_at": now, "claimer": worker_id}
    statement = _CLAIM
    if user_max_running is not None:
        statement, params["cap"] = _CLAIM_CAPPED, user_max_running
    row = (await conn.execute(statement, params)).first()
    return None if row is None else str(row.run_id)


async def start_within(conn: AsyncConnection, run_id: str, user_max_running: int) -> bool | None:
    """In ``conn``'s transaction: False if there is no such run, None if its user already has
    ``user_max_running`` runs executing, True if it may start. One user's starts are
    serialised (an advisory lock on PostgreSQL, the write lock on SQLite), so the cap holds
    until the transaction ends."""
    user = (
        await conn.execute(sa.select(t.runs.c.user_id).where(t.runs.c.run_id == run_id))
    ).scalar_one_or_none()
    if user is None:
        return False
    if conn.dialect.name == "postgresql":
        await conn.execute(sa.select(sa.func.pg_advisory_xact_lock(sa.func.hashtext(str(user)))))
    else:  # take SQLite's write lock before counting
        await conn.execute(t.runs.update().where(t.runs.c.run_id == run_id).values(run_id=run_id))
    running = (
        await conn.execute(
            sa.select(sa.func.count())
            .select_from(t.runs)
            .where(t.runs.c.user_id == user, t.runs.c.status == _RUNNING)
        )
    ).scalar_one()
    return None if int(running) >= user_max_running else True
