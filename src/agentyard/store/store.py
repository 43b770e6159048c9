"""The Store: every query the service, runner and queues make, on SQLite or PostgreSQL."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from agentyard.core.clock import utcnow
from agentyard.core.events import Event
from agentyard.core.models import Chat, Message, Run, RunState, StoredEvent
from agentyard.core.status import ACTIVE, RunStatus, allowed_sources
from agentyard.store import claims, receipts, sqlite_loop
from agentyard.store import tables as t
from agentyard.store.api_keys import ApiKeyStore
from agentyard.store.keycache import VerifiedKeys
from agentyard.store.reader import reader_for
from agentyard.store.rows import chat_of, run_of
from agentyard.store.webhooks import Deferrer, record_status_change

InTransaction = Callable[[AsyncConnection, Run], Awaitable[None]]
EVENTS_CHANNEL = "agentyard_events"
_RUN_FIELDS = {c.name for c in t.runs.columns}
_CHAT_FIELDS = {c.name for c in t.chats.columns}


def _event(row: sa.Row[Any]) -> StoredEvent:
    return StoredEvent(run_id=row.run_id, seq=row.seq, data=row.data, created_at=row.created_at)


def _run_values(run: Run) -> dict[str, Any]:
    values = {k: v for k, v in vars(run).items() if k in _RUN_FIELDS}
    values["status"] = run.status.value
    return values


class RunEnded(Exception):
    """The run has ended: nothing more may be appended to its events."""


_RUN_BY_ID = t.runs.select().where(t.runs.c.run_id == sa.bindparam("run_id"))
"""Built once: a statement is cheap to run from SQLAlchemy's cache, not to build. (Hence the
statements below; the values of an INSERT or UPDATE go as execution parameters, keyed by
column, and the row's key in a parameter no column is named after.)"""
_RUN_STATE = sa.select(
    t.runs.c.run_id,
    t.runs.c.user_id,
    t.runs.c.status,
    t.runs.c.error,
    t.runs.c.status_detail,
    t.runs.c.started_at,
    t.runs.c.completed_at,
).where(t.runs.c.run_id == sa.bindparam("run_id"))
_CHAT_BY_ID = t.chats.select().where(t.chats.c.chat_id == sa.bindparam("match_chat_id"))
_UPDATE_CHAT = t.chats.update().where(t.chats.c.chat_id == sa.bindparam("match_chat_id"))
_UPDATE_RUN = t.runs.update().where(t.runs.c.run_id == sa.bindparam("match_run_id"))
_ACTIVE = [s.value for s in ACTIVE]
_UPDATE_ACTIVE_RUN = _UPDATE_RUN.where(t.runs.c.status.in_(_ACTIVE))
_COUNT_EVENTS = (
    t.runs.update()
    .where(t.runs.c.run_id == sa.bindparam("match_run_id"))
    .values(event_seq=t.runs.c.event_seq + sa.bindparam("appended", type_=sa.Integer))
    .returning(t.runs.c.event_seq)
)
_COUNT_EVENTS_ACTIVE = _COUNT_EVENTS.where(t.runs.c.status.in_(_ACTIVE))
_EVENTS_AFTER = (
    t.events.select()
    .where(t.events.c.run_id == sa.bindparam("run_id"), t.events.c.seq > sa.bindparam("after"))
    .order_by(t.events.c.seq)
)
_INSERT_CHAT = t.chats.insert()
_INSERT_RUN = t.runs.insert()
_INSERT_MESSAGES = t.messages.insert()
_INSERT_EVENTS = t.events.insert()
_EVENT_SEQ = sa.select(t.runs.c.event_seq).where(t.runs.c.run_id == sa.bindparam("run_id"))
_EVENTS_PAGE = _EVENTS_AFTER.limit(sa.bindparam("page", type_=sa.Integer))
_TRANSITION = _UPDATE_RUN.where(t.runs.c.status.in_(sa.bindparam("sources", expanding=True)))
_ASSISTANT_MESSAGE = t.messages.update().where(
    t.messages.c.run_id == sa.bindparam("match_run_id"), t.messages.c.role == "assistant"
)


class Store:
    def __init__(self, engine: AsyncEngine, keys: VerifiedKeys | None = None) -> None:
        self.engine = engine
        self._reader = reader_for(engine)
        self._on_loop = engine.dialect.driver == sqlite_loop.DRIVER
        self.api_keys = ApiKeyStore(self, keys or VerifiedKeys(0))
        self.defer_webhooks: Deferrer | None = None
        """Set by a queue that delivers webhooks through jobs: called in the transaction
        that writes a status change's outbox rows."""

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncConnection]:
        if not self._on_loop:
            async with self.engine.begin() as conn:
                yield conn
            return
        # SQLite on the loop (agentyard.store.sqlite_loop): returning the connection never
        # waits, so a cancellation cannot cut it short, and it needs no task of its own (the
        # one SQLAlchemy makes, to shield the return, cost a quarter of a short transaction
        # and held every connection a loop turn longer).
        conn = self.engine.connect()
        await conn.start()
        try:
            async with conn.begin():
                yield conn
        finally:
            await conn.close()

    async def close(self) -> None:
        if self._reader is not None:
            self._reader.close()
        await self.engine.dispose()

    async def first(
        self, statement: sa.Select[Any], params: dict[str, Any]
    ) -> Mapping[str, Any] | None:
        """The first row of a point read (a statement built once), as a mapping of column
        names: on SQLite's own reader when it can, else pooled."""
        if self._reader is not None:
            try:
                return self._reader.first(statement, params)
            except sqlite3.OperationalError:
                pass  # busy, or the file is away: the pooled path waits and reports it
        async with self.engine.connect() as conn:
            row = (await conn.execute(statement, params)).first()
        return None if row is None else row._mapping

    async def ping(self) -> None:
        async with self.engine.connect() as conn:
            await conn.execute(sa.text("SELECT 1"))

    # -- chats, runs, messages ----------------------------------------------------------------

    async def create_run(
        self,
        run: Run,
        user_message: Message,
        new_chat: Chat | None = None,
        on_insert: InTransaction | None = None,
        receipt: dict[str, Any] | None = None,
    ) -> None:
        """Insert a run with its user message and empty assistant message (and a new chat).

        ``on_insert`` runs in the same transaction (a queue enqueues the run there, so a run
        is never committed without its job, nor a job without its run); so does the insert
        of ``receipt``, the request's idempotency record (``idempotency.KeyInUse`` if its key
        was taken meanwhile: nothing is inserted then).
        """
        async with self.transaction() as conn:
            await self._insert_receipt(conn, receipt)
            await self._insert_run(conn, run, user_message, new_chat, on_insert)

    async def continue_chat(
        self,
        run: Run,
        user_message: Message,
        after_run_id: str,
        on_insert: InTransaction | None = None,
        chat_values: dict[str, Any] | None = None,
        receipt: dict[str, Any] | None = None,
    ) -> bool:
        """Insert a follow-up run if the chat's latest run is still ``after_run_id`` (ended
        or not: a follow-up of an active run waits behind it); False otherwise. Atomic: of
        two concurrent follow-ups, one wins (and only its ``chat_values`` are written)."""
        async with self.transaction() as conn:
            # Lock the chat first (a row lock on PostgreSQL, the write lock on SQLite), so the
            # check below and the insert see no concurrent follow-up.
            await conn.execute(
                t.chats.update()
                .where(t.chats.c.chat_id == run.chat_id)
                .values(chat_id=t.chats.c.chat_id)
            )
            latest = (
                await conn.execute(
                    sa.select(t.runs.c.run_id, t.runs.c.created_at)
                    .where(t.runs.c.chat_id == run.chat_id)
                    .order_by(t.runs.c.created_at.desc(), t.runs.c.run_id.desc())
                    .limit(1)
                )
            ).first()
            if latest is None or latest.run_id != after_run_id:
                return False
            if run.created_at <= latest.created_at:
                return False  # clocks apart (another process): the caller tries again
            await self._insert_receipt(conn, receipt)
            if chat_values:
                await conn.execute(
                    t.chats.update().where(t.chats.c.chat_id == run.chat_id).values(chat_values)
                )
            await self._insert_run(conn, run, user_message, None, on_insert)
            return True

    async def create_group_runs(
        self,
        group_id: str,
        prompt: str,
        items: Sequence[tuple[Run, Message, Chat]],
        on_insert: InTransaction | None = None,
        receipt: dict[str, Any] | None = None,
    ) -> None:
        """A multi-agent group and all its runs, in one transaction."""
        async with self.transaction() as conn:
            await self._insert_receipt(conn, receipt)
            await conn.execute(
                t.groups.insert().values(
                    group_id=group_id,
                    user_id=items[0][0].user_id,
                    prompt=prompt,
                    created_at=utcnow(),
                )
            )
            for run, message, chat in items:
                await self._insert_run(conn, run, message, chat, on_insert)

    async def _insert_receipt(self, conn: AsyncConnection, receipt: dict[str, Any] | None) -> None:
        if receipt is not None:
            await receipts.insert(conn, receipt)

    async def get_receipt(self, user_id: str, key: str) -> dict[str, Any] | None:
        """The user's idempotency record for ``key`` if it is still alive."""
        async with self.engine.connect() as conn:
            return await receipts.get(conn, user_id, key)

    async def purge_receipts(self) -> int:
        """Forget idempotency records past their lifetime."""
        async with self.transaction() as conn:
            return await receipts.purge(conn)

    async def _insert_run(
        self,
        conn: AsyncConnection,
        run: Run,
        user_message: Message,
        new_chat: Chat | None,
        on_insert: InTransaction | None,
    ) -> None:
        if new_chat is not None:
            await conn.execute(
                _INSERT_CHAT, {k: v for k, v in vars(new_chat).items() if k in _CHAT_FIELDS}
            )
        await conn.execute(_INSERT_RUN, _run_values(run))
        assistant_message = {
            "message_id": run.assistant_message_id,
            "chat_id": run.chat_id,
            "run_id": run.run_id,
            "role": "assistant",
            "parts": [],
            "created_at": run.created_at,
        }
        await conn.execute(_INSERT_MESSAGES, [vars(user_message), assistant_message])
        await self._status_changed(conn, run.run_id)
        if on_insert is not None:
            await on_insert(conn, run)

    async def _status_changed(self, conn: AsyncConnection, run_id: str) -> None:
        """The run's webhooks (outbox rows), in the transaction that changed its status."""
        await record_status_change(conn, run_id, self.defer_webhooks)

    async def get_run(self, run_id: str) -> Run | None:
        row = await self.first(_RUN_BY_ID, {"run_id": run_id})
        return None if row is None else run_of(row)

    def change_mark(self) -> object | None:
        """A mark equal to an earlier one only if nothing was committed to the database in
        between, by any process: what was read after the earlier one is still current. None
        where the database offers no such mark (PostgreSQL), or cannot say now."""
        if self._reader is None:
            return None
        try:
            return self._reader.version()
        except sqlite3.OperationalError:
            return None

    async def get_run_state(self, run_id: str) -> RunState | None:
        """The run's status and whose it is, without the rest of its row."""
        row = await self.first(_RUN_STATE, {"run_id": run_id})
        if row is None:
            return None
        return RunState(**{**row, "status": RunStatus(row["status"])})

    async def get_chat(self, chat_id: str) -> Chat | None:
        row = await self.first(_CHAT_BY_ID, {"match_chat_id": chat_id})
        return None if row is None else chat_of(row)

    async def update_chat(self, chat_id: str, **values: Any) -> None:
        async with self.transaction() as conn:
            await conn.execute(_UPDATE_CHAT, {**values, "match_chat_id": chat_id})

    async def update_run(self, run_id: str, **values: Any) -> None:
        async with self.transaction() as conn:
            await conn.execute(_UPDATE_RUN, {**values, "match_run_id": run_id})

    async def list_runs(
        self,
        user_id: str,
        status: RunStatus | None,
        offset: int,
        limit: int,
    ) -> list[Run]:
        query = t.runs.select().where(t.runs.c.user_id == user_id)
        if status is not None:
            query = query.where(t.runs.c.status == status.value)
        query = (
            query.order_by(t.runs.c.created_at.desc(), t.runs.c.run_id.desc())
            .offset(offset)
            .limit(limit)
        )
        async with self.engine.connect() as conn:
            return [run_of(r._mapping) for r in (await conn.execute(query)).all()]

    async def runs_in_group(self, group_id: str) -> list[Run]:
        query = t.runs.select().where(t.runs.c.group_id == group_id).order_by(t.runs.c.created_at)
        async with self.engine.connect() as conn:
            return [run_of(r._mapping) for r in (await conn.execute(query)).all()]

    async def latest_run_in_chat(self, chat_id: str) -> Run | None:
        query = (
            t.runs.select()
            .where(t.runs.c.chat_id == chat_id)
            .order_by(t.runs.c.created_at.desc(), t.runs.c.run_id.desc())
            .limit(1)
        )
        async with self.engine.connect() as conn:
            row = (await conn.execute(query)).first()
        return None if row is None else run_of(row._mapping)

    async def count_runs(self, status: RunStatus, user_id: str | None = None) -> int:
        query = (
            sa.select(sa.func.count()).select_from(t.runs).where(t.runs.c.status == status.value)
        )
        if user_id is not None:
            query = query.where(t.runs.c.user_id == user_id)
        async with self.engine.connect() as conn:
            return int((await conn.execute(query)).scalar_one())

    async def queue_position(self, run: Run) -> tuple[int, int]:
        """Where a queued run waits: (runs queued before it + 1, runs queued)."""
        queued = t.runs.c.status == RunStatus.QUEUED.value
        before = sa.or_(
            t.runs.c.created_at < run.created_at,
            sa.and_(t.runs.c.created_at == run.created_at, t.runs.c.run_id < run.run_id),
        )
        query = sa.select(
            sa.func.count().filter(before),
            sa.func.count(),
        ).where(queued)
        async with self.engine.connect() as conn:
            ahead, total = (await conn.execute(query)).one()
        return int(ahead) + 1, max(int(total), int(ahead) + 1)

    async def earlier_active_in_chat(self, run: Run) -> bool:
        """Whether a run of the chat created before ``run`` is still queued or running."""
        query = sa.select(
            sa.exists().where(
                t.runs.c.chat_id == run.chat_id,
                t.runs.c.run_id != run.run_id,
                t.runs.c.status.in_([s.value for s in ACTIVE]),
                t.runs.c.created_at <= run.created_at,
            )
        )
        async with self.engine.connect() as conn:
            return bool((await conn.execute(query)).scalar_one())

    async def runs_with_status(self, status: RunStatus) -> list[Run]:
        query = t.runs.select().where(t.runs.c.status == status.value).order_by(t.runs.c.created_at)
        async with self.engine.connect() as conn:
            return [run_of(r._mapping) for r in (await conn.execute(query)).all()]

    async def list_messages(self, chat_id: str) -> list[Message]:
        query = t.messages.select().where(t.messages.c.chat_id == chat_id).order_by(t.messages.c.id)
        async with self.engine.connect() as conn:
            rows = (await conn.execute(query)).all()
        return [
            Message(
                message_id=r.message_id,
                chat_id=r.chat_id,
                run_id=r.run_id,
                role=r.role,
                parts=r.parts,
                created_at=r.created_at,
            )
            for r in rows
        ]

    # -- lifecycle ------------------------------------------------------------------------------

    async def claim_next(self, worker_id: str, user_max_running: int | None = None) -> Run | None:
        """Move the next queued run to running (:func:`claims.claim`); None when there is
        none to take."""
        async with self.transaction() as conn:
            run_id = await claims.claim(conn, worker_id, utcnow(), user_max_running)
            if run_id is not None:
                await self._status_changed(conn, run_id)
        return None if run_id is None else await self.get_run(run_id)

    async def mark_running(self, run_id: str, worker_id: str) -> bool:
        async with self.transaction() as conn:
            return await self._start(conn, run_id, worker_id)

    async def _start(self, conn: AsyncConnection, run_id: str, worker_id: str) -> bool:
        now = utcnow()
        ok = await self._transition(
            conn, run_id, RunStatus.RUNNING, started_at=now, heartbeat_at=now, worker_id=worker_id
        )
        if ok:
            await self._status_changed(conn, run_id)
        return ok

    async def start_within(self, run_id: str, worker_id: str, user_max_running: int) -> bool | None:
        """``mark_running`` unless the run's user already has ``user_max_running`` runs
        executing: None then (the run stays queued)."""
        async with self.transaction() as conn:
            allowed = await claims.start_within(conn, run_id, user_max_running)
            if not allowed:
                return allowed
            return await self._start(conn, run_id, worker_id)

    async def _transition(
        self,
        conn: AsyncConnection,
        run_id: str,
        target: RunStatus,
        sources: Iterable[RunStatus] | None = None,
        **values: Any,
    ) -> bool:
        allowed = allowed_sources(target)
        if sources is not None:
            allowed = allowed & frozenset(sources)
        params = {
            **values,
            "status": target.value,
            "match_run_id": run_id,
            "sources": [s.value for s in allowed],
        }
        return bool((await conn.execute(_TRANSITION, params)).rowcount)

    async def finish_run(
        self,
        run_id: str,
        status: RunStatus,
        *,
        error: str | None = None,
        status_detail: str | None = None,
        events: Iterable[Event] = (),
        assistant_parts: list[dict[str, Any]] | None = None,
        sources: Iterable[RunStatus] | None = None,
        **values: Any,
    ) -> list[StoredEvent] | None:
        """End a run in a terminal status and append its last events, atomically.

        Returns the stored events, or None when the run had already ended (a terminal status
        never changes, and a run gets exactly one ``finish``).
        """
        assert status.terminal
        async with self.transaction() as conn:
            ok = await self._transition(
                conn,
                run_id,
                status,
                sources,
                error=error,
                status_detail=status_detail,
                completed_at=utcnow(),
                **values,
            )
            if not ok:
                return None
            stored = await self._append(conn, run_id, list(events), ended=True)
            if assistant_parts is not None:
                await conn.execute(
                    _ASSISTANT_MESSAGE,
                    {"parts": assistant_parts, "created_at": utcnow(), "match_run_id": run_id},
                )
            await self._status_changed(conn, run_id)
            return stored

    # -- events ---------------------------------------------------------------------------------

    async def append_events(
        self,
        run_id: str,
        events: Sequence[Event],
        run_values: dict[str, Any] | None = None,
        retry_after_seq: int | None = None,
        chat_values: tuple[str, dict[str, Any]] | None = None,
    ) -> list[StoredEvent]:
        """Append events to an active run (and set ``run_values`` on it, and ``chat_values``
        (a chat id and its values) on its chat, in the same transaction); RunEnded once the
        run has ended.

        ``retry_after_seq`` marks a retry of the same batch by the run's only appender,
        which had stored the run's events up to that ``seq``: if the run now has exactly
        this batch more, the earlier attempt was committed and only its answer was lost (a
        connection cut at the commit), and the events it stored are returned rather than
        stored twice."""
        async with self.transaction() as conn:
            if retry_after_seq is not None and events:
                current = (await conn.execute(_EVENT_SEQ, {"run_id": run_id})).scalar()
                if current == retry_after_seq + len(events):
                    page = {"run_id": run_id, "after": retry_after_seq}
                    return [_event(r) for r in (await conn.execute(_EVENTS_AFTER, page)).all()]
            if not events and run_values:
                # Never over an ended run's values (its terminal statusDetail, say).
                await conn.execute(_UPDATE_ACTIVE_RUN, {**run_values, "match_run_id": run_id})
            if chat_values is not None:
                chat_id, values = chat_values
                await conn.execute(_UPDATE_CHAT, {**values, "match_chat_id": chat_id})
            return await self._append(conn, run_id, events, run_values=run_values)

    async def _append(
        self,
        conn: AsyncConnection,
        run_id: str,
        events: Sequence[Event],
        ended: bool = False,
        run_values: dict[str, Any] | None = None,
    ) -> list[StoredEvent]:
        """Append after the run's last event. Only ``finish_run`` (``ended``) may append to a
        run in a terminal status: ``finish`` is always the last event."""
        if not events:
            return []
        query = _COUNT_EVENTS if ended else _COUNT_EVENTS_ACTIVE
        params = {**(run_values or {}), "match_run_id": run_id, "appended": len(events)}
        last = (await conn.execute(query, params)).scalar_one_or_none()
        if last is None:
            raise RunEnded(f"run {run_id} has ended")
        first = int(last) - len(events) + 1
        now = utcnow()
        stored = [
            StoredEvent(run_id=run_id, seq=first + i, data=ev, created_at=now)
            for i, ev in enumerate(events)
        ]
        await conn.execute(
            _INSERT_EVENTS,
            [
                {"run_id": run_id, "seq": s.seq, "type": s.type, "data": s.data, "created_at": now}
                for s in stored
            ],
        )
        if conn.dialect.name == "postgresql":
            # Delivered at commit: listeners in other processes wake and read the table.
            await conn.execute(
                sa.select(sa.func.pg_notify(EVENTS_CHANNEL, f"{run_id}:{stored[-1].seq}"))
            )
        return stored

    async def read_events(
        self, run_id: str, after_seq: int = 0, limit: int | None = None
    ) -> list[StoredEvent]:
        params: dict[str, Any] = {"run_id": run_id, "after": after_seq}
        query = _EVENTS_AFTER
        if limit is not None:
            query, params["page"] = _EVENTS_PAGE, limit
        async with self.engine.connect() as conn:
            return [_event(r) for r in (await conn.execute(query, params)).all()]

    # -- multi-agent groups --------------------------------------------------------------------

    async def get_group(self, group_id: str) -> dict[str, Any] | None:
        async with self.engine.connect() as conn:
            row = (
                await conn.execute(t.groups.select().where(t.groups.c.group_id == group_id))
            ).first()
        return None if row is None else dict(row._mapping)

    async def select_winner(self, group_id: str, run_id: str) -> bool:
        """Record the group's winner once; False if one was already selected."""
        async with self.transaction() as conn:
            result = await conn.execute(
                t.groups.update()
                .where(t.groups.c.group_id == group_id, t.groups.c.selected_run_id.is_(None))
                .values(selected_run_id=run_id, selected_at=utcnow())
            )
        return bool(result.rowcount)

    async def update_group(self, group_id: str, **values: Any) -> None:
        async with self.transaction() as conn:
            await conn.execute(
                t.groups.update().where(t.groups.c.group_id == group_id).values(values)
            )

    # -- git credentials ------------------------------------------------------------------------

    async def put_git_credential(self, user_id: str, **values: Any) -> None:
        async with self.transaction() as conn:
            await conn.execute(
                t.git_credentials.delete().where(t.git_credentials.c.user_id == user_id)
            )
            await conn.execute(
                t.git_credentials.insert().values(user_id=user_id, created_at=utcnow(), **values)
            )

    async def get_git_credential(self, user_id: str) -> dict[str, Any] | None:
        async with self.engine.connect() as conn:
            row = (
                await conn.execute(
                    t.git_credentials.select().where(t.git_credentials.c.user_id == user_id)
                )
            ).first()
        return None if row is None else dict(row._mapping)

    async def delete_git_credential(self, user_id: str) -> bool:
        async with self.transaction() as conn:
            result = await conn.execute(
                t.git_credentials.delete().where(t.git_credentials.c.user_id == user_id)
            )
        return bool(result.rowcount)
