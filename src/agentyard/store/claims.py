"""Taking queued runs: which run a free slot executes next, and the per-user cap.

Fair: the user with the fewest runs executing goes first, then the oldest run, so a 5-agent
group or a burst from one user never starves another user's task. A chat's runs share its
workspace: never two of them at once, and in their order.

A claim costs a few index lookups however deep the queue: the runs executing per user (a
few), the users with runs queued (an index of few distinct values), then, for the users at
the lowest count, the oldest claimable run by the queue's own order (the status and creation
time index, read until the first that may start). Ordering every queued run by its user's
count, as one statement did, cost 5-6 ms with 1,000 queued, on the loop, at every claim.

The UPDATE that takes the run checks again what made it claimable (still queued, its chat
idle, its user under the cap), so two claimers never take the same run nor two runs of one
chat, whatever they read before. On PostgreSQL concurrent claimers each lock another run
(``SKIP LOCKED``); SQLite has one writer.
"""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from agentyard.core.status import RunStatus
from agentyard.store import tables as t

_QUEUED = RunStatus.QUEUED.value
_RUNNING = RunStatus.RUNNING.value
_R = t.runs


def _claimable() -> list[sa.ColumnElement[bool]]:
    """A queued run whose chat has no run executing and no earlier run queued."""
    same_chat = _R.alias("same_chat")
    chat_busy = sa.exists().where(
        same_chat.c.chat_id == _R.c.chat_id, same_chat.c.status == _RUNNING
    )
    earlier = _R.alias("earlier")
    chat_waits = sa.exists().where(
        earlier.c.chat_id == _R.c.chat_id,
        earlier.c.status == _QUEUED,
        sa.or_(
            earlier.c.created_at < _R.c.created_at,
            sa.and_(earlier.c.created_at == _R.c.created_at, earlier.c.run_id < _R.c.run_id),
        ),
    )
    return [_R.c.status == _QUEUED, ~chat_busy, ~chat_waits]


_EXECUTING = (
    sa.select(_R.c.user_id, sa.func.count().label("n"))
    .where(_R.c.status == _RUNNING)
    .group_by(_R.c.user_id)
)
_WAITING_USERS = sa.select(_R.c.user_id).where(_R.c.status == _QUEUED).distinct()


def _oldest(among_users: bool) -> sa.Select[tuple[str]]:
    query = sa.select(_R.c.run_id).where(*_claimable())
    if among_users:
        query = query.where(_R.c.user_id.in_(sa.bindparam("users", expanding=True)))
    return (
        query.order_by(_R.c.created_at, _R.c.run_id)
        .limit(1)
        # Read in the queue's order until the first claimable run (not by user, which
        # would sort every queued run of those users).
        .with_hint(_R, "INDEXED BY ix_runs_status_created_at", "sqlite")
        # PostgreSQL: concurrent claimers each take another run.
        .with_for_update(skip_locked=True, of=_R)
    )


_OLDEST = _oldest(among_users=False)
_OLDEST_OF = _oldest(among_users=True)


def _take(capped: bool) -> sa.Update:
    guard = _claimable()
    if capped:
        busy = _R.alias("busy")
        executing = (
            sa.select(sa.func.count())
            .where(busy.c.user_id == _R.c.user_id, busy.c.status == _RUNNING)
            .scalar_subquery()
        )
        guard.append(executing < sa.bindparam("cap"))
    return (
        _R.update()
        .where(_R.c.run_id == sa.bindparam("candidate"), *guard)
        .values(
            status=_RUNNING,
            started_at=sa.bindparam("claimed_at"),
            heartbeat_at=sa.bindparam("claimed_at"),
            worker_id=sa.bindparam("claimer"),
        )
        .returning(_R.c.run_id)
    )


_TAKE = _take(capped=False)
_TAKE_CAPPED = _take(capped=True)


async def claim(
    conn: AsyncConnection, worker_id: str, now: datetime, user_max_running: int | None
) -> str | None:
    """Move the next claimable queued run to ``running`` for ``worker_id``; its id, or None."""
    executing = {row.user_id: int(row.n) for row in await conn.execute(_EXECUTING)}
    waiting = [str(user) for user in (await conn.execute(_WAITING_USERS)).scalars()]
    take, params = _TAKE, {"claimed_at": now, "claimer": worker_id}
    if user_max_running is not None:
        take, params["cap"] = _TAKE_CAPPED, user_max_running
    for level in sorted({executing.get(user, 0) for user in waiting}):
        if user_max_running is not None and level >= user_max_running:
            break
        users = [user for user in waiting if executing.get(user, 0) == level]
        if len(users) == len(waiting):
            candidate = (await conn.execute(_OLDEST)).scalar()
        else:
            candidate = (await conn.execute(_OLDEST_OF, {"users": users})).scalar()
        if candidate is None:
            continue  # every run of those users waits for its chat
        row = (await conn.execute(take, {**params, "candidate": candidate})).first()
        if row is not None:
            return str(row.run_id)
    return None


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
