"""The scale-out queue: procrastinate jobs on PostgreSQL, executed by ``agentyard worker``.

A run's job is deferred in the transaction that inserts the run. Cancel reaches the worker
through procrastinate's abort (the worker cancels the job's asyncio task, the runner kills
the agent's process tree). A worker that dies stops heartbeating; any process's reaper then
ends its runs ``interrupted``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import time

import procrastinate
import sqlalchemy as sa
import structlog
from procrastinate import job_context
from procrastinate.jobs import Status
from procrastinate.worker import Worker
from sqlalchemy.ext.asyncio import AsyncConnection

from agentyard.core.models import Run
from agentyard.core.status import RunStatus
from agentyard.events.bus import LocalBus
from agentyard.events.log import EventLog
from agentyard.queue.base import SHUTTING_DOWN, grace, shutdown_error
from agentyard.queue.reaping import end_ghosts, reap_stalled, runs_alive, touch_runs
from agentyard.queue.resilient_jobs import ResilientJobManager
from agentyard.runner import RunControl, Runner
from agentyard.runtimes.processes import kill_run_processes, marked_processes
from agentyard.store.db import psycopg_conninfo
from agentyard.store.faults import public_message
from agentyard.store.store import Store
from agentyard.webhooks.delivery import Deliverer
from agentyard.webhooks.jobs import WebhookJobs

log = structlog.get_logger(__name__)

QUEUE = "agentyard"
TASK = "agentyard.run"
_USER_BUSY_RETRY_SECONDS = 2


class UserAtCapacity(Exception):
    """The run's user has as many runs executing as allowed: its job waits a while."""


class ProcrastinateQueue:
    def __init__(
        self,
        database_url: str,
        store: Store,
        events: EventLog,
        runner: Runner | None,
        *,
        installation: str,
        cancel_wait_seconds: float = 10.0,
        heartbeat_seconds: float = 2.0,
        stalled_after_seconds: float = 10.0,
        reap_every_seconds: float = 3.0,
        user_max_running: int | None = None,
    ) -> None:
        self.user_max_running = user_max_running
        """At most this many of one user's runs execute at once: the job of another waits
        (retried in a while, keeping its place before the chat's later runs)."""
        self.store = store
        self.events = events
        self.runner = runner
        self.installation = installation
        """``processes.installation_id`` of the data dir: the reaper kills only its agents."""
        self.cancel_wait_seconds = cancel_wait_seconds
        self.heartbeat_seconds = heartbeat_seconds
        self.stalled_after_seconds = stalled_after_seconds
        self.reap_every_seconds = reap_every_seconds
        self.worker_name = f"{socket.gethostname()}:{os.getpid()}"
        self.app = procrastinate.App(
            connector=procrastinate.PsycopgConnector(conninfo=psycopg_conninfo(database_url))
        )
        self.jobs = ResilientJobManager(self.app.connector)
        self.app.job_manager = self.jobs
        self.app.task(
            name=TASK,
            queue=QUEUE,
            pass_context=True,
            retry=procrastinate.RetryStrategy(
                wait=_USER_BUSY_RETRY_SECONDS, retry_exceptions=[UserAtCapacity]
            ),
        )(self._execute)
        self._tasks: list[asyncio.Task[None]] = []
        self.executing: set[str] = set()
        """Runs executing in this process: its reaper never judges them."""
        self._db_ok_since: float | None = None
        """Since when this process's reaper has reached the database without a failure: it
        judges heartbeats only once it has watched them for a whole stall period, so that
        an outage everyone shared is not mistaken for dead workers."""
        self.ghost_suspects: dict[str, str] = {}
        self._workers_running = False
        self._worker: Worker | None = None
        self._run_tasks: dict[str, asyncio.Task[object]] = {}
        """The job task executing each run here: interrupted at the end of a drain."""
        self._draining: asyncio.Task[None] | None = None
        self._hurry = asyncio.Event()
        self._interrupting: str | None = None
        """Set once a drain interrupts the runs executing here: the error they end with."""
        self.webhooks: WebhookJobs | None = None
        """Webhook deliveries, once ``deliver_webhooks`` was called."""

    def deliver_webhooks(self, deliverer: Deliverer) -> WebhookJobs:
        """Register the webhook job; its first attempts are deferred with the outbox rows."""
        self.webhooks = WebhookJobs(self.app, QUEUE, self.store.engine, deliverer)
        self.store.defer_webhooks = self.webhooks.defer_in
        return self.webhooks

    # -- the TaskQueue port ---------------------------------------------------------------------

    async def start(self) -> None:
        await self.app.open_async()
        self._tasks.append(asyncio.create_task(self._reap_forever(), name="reaper"))

    async def run_workers(self, concurrency: int) -> None:
        """Execute runs here (``agentyard worker``, or ``serve`` with workers) until cancelled.

        The worker never exits on its own: should procrastinate's worker stop on an error
        the resilient job manager did not absorb, it is started again."""
        assert self.runner is not None, "a worker needs a runner"
        touching = asyncio.create_task(self._touch_runs_forever(), name="run-heartbeats")
        self._workers_running = True
        try:
            while self._draining is None:
                try:
                    await self._run_worker(concurrency)
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    log.error("worker stopped on an error", error=public_message(exc))
                else:
                    if self._draining is not None:
                        break  # drained: every job it had has ended
                    log.warning("worker stopped; starting it again")
                await asyncio.sleep(1.0)
        finally:
            self._workers_running = False
            touching.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await touching

    @property
    def healthy(self) -> bool:
        """False while the database fails the job queue, or its worker is not running."""
        ok = self.jobs.last_failure is None
        if self.runner is not None and any(t.get_name() == "worker" for t in self._tasks):
            ok = ok and self._workers_running
        return ok

    async def _run_worker(self, concurrency: int) -> None:
        self._worker = Worker(
            app=self.app,
            queues=[QUEUE],
            name=self.worker_name,
            concurrency=concurrency,
            install_signal_handlers=False,
            update_heartbeat_interval=self.heartbeat_seconds,
            stalled_worker_timeout=self.stalled_after_seconds,
            abort_job_polling_interval=1.0,
            # A drain decides how long runs may go on (and interrupts them itself); a
            # cancelled worker (a drain that did not happen) interrupts them at once.
            shutdown_graceful_timeout=None if self._draining is not None else 0.0,
            fetch_job_polling_interval=1.0,
        )
        try:
            await self._worker.run()  # type: ignore[no-untyped-call]
        finally:
            self._worker = None

    def start_workers(self, concurrency: int) -> None:
        self._tasks.append(asyncio.create_task(self.run_workers(concurrency), name="worker"))

    @property
    def running(self) -> bool:
        """Open and not draining (whether its worker is alive is ``healthy``'s to say)."""
        return bool(self._tasks) and self._draining is None

    def drain(self, grace_seconds: float) -> None:
        if self._draining is None:
            self._draining = asyncio.create_task(self._drain(grace_seconds), name="drain")

    def hurry(self) -> None:
        self._hurry.set()

    async def _drain(self, grace_seconds: float) -> None:
        """procrastinate's worker stops fetching jobs (queued runs keep theirs, for the
        next worker); the runs executing here have the grace period, then are cancelled
        and end ``interrupted``."""
        if self._worker is not None:
            self._worker.shutdown_graceful_timeout = None  # the grace is timed here
            self._worker.stop()  # type: ignore[no-untyped-call]
        active = [t for t in self._run_tasks.values() if not t.done()]
        await grace(active, grace_seconds, self._hurry)
        self._interrupting = shutdown_error(grace_seconds)
        for run_id, task in list(self._run_tasks.items()):
            if not task.done():
                log.warning("interrupting run", run_id=run_id, reason=SHUTTING_DOWN)
                task.cancel()
        await asyncio.gather(*self._run_tasks.values(), return_exceptions=True)

    async def stop(self) -> None:
        self.drain(0.0)
        assert self._draining is not None
        with contextlib.suppress(Exception):
            await self._draining
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        if self.webhooks is not None:
            await self.webhooks.close()
        await self.app.close_async()

    async def in_transaction(self, conn: AsyncConnection, run: Run) -> None:
        """Defer the run's job in the transaction that inserts the run."""
        # procrastinate's own SQL function; the chat id as lock keeps a chat's runs in order.
        await conn.execute(
            sa.text(
                "SELECT unnest(procrastinate_defer_jobs_v1(ARRAY[ROW(:queue, :task, :priority,"
                " :lock, NULL, CAST(:args AS jsonb), NULL)::procrastinate_job_to_defer_v1]))"
            ),
            {
                "queue": QUEUE,
                "task": TASK,
                "lock": run.chat_id,
                # A group's later runs yield to other tasks, so a group never starves them.
                "priority": -int(run.options.get("groupIndex", 0)),
                "args": json.dumps({"run_id": run.run_id}),
            },
        )

    async def enqueued(self, run_id: str) -> None:
        """Nothing to do: the job was committed with the run, and NOTIFY wakes a worker."""

    async def cancel(self, run_id: str) -> bool:
        run = await self.store.get_run(run_id)
        if run is None or run.status.terminal:
            return False
        job_id, job_status = await self._job(run_id)
        # Nobody executes it (its job ended, or its worker is gone): end it here.
        if (
            run.status is RunStatus.RUNNING
            and not await self._has_executor(run_id, job_status)
            and await self.events.finish(
                run_id, RunStatus.CANCELLED, error="Cancelled by user", sources=[RunStatus.RUNNING]
            )
        ):
            await asyncio.to_thread(kill_run_processes, run_id, installation=self.installation)
            return True
        if run.status is RunStatus.QUEUED:
            # A job still waiting is simply cancelled; the run ends here.
            if job_id is not None:
                await self.app.job_manager.cancel_job_by_id_async(job_id)
            if await self.events.finish(
                run_id,
                RunStatus.CANCELLED,
                error="Cancelled by user",
                sources=[RunStatus.QUEUED],  # if a worker took it meanwhile, abort it instead
            ):
                return True
        if job_id is not None:
            await self.app.job_manager.cancel_job_by_id_async(job_id, abort=True)
        return await self._wait_ended(run_id)

    # -- execution (in a worker) ------------------------------------------------------------------

    async def _execute(self, context: job_context.JobContext, run_id: str) -> None:
        assert self.runner is not None

        def cause() -> tuple[RunStatus, str, str | None] | None:
            if self._interrupting is not None:
                return RunStatus.INTERRUPTED, self._interrupting, SHUTTING_DOWN
            if context.abort_reason() == job_context.AbortReason.SHUTDOWN:
                return RunStatus.INTERRUPTED, shutdown_error(0.0), SHUTTING_DOWN
            return None

        control = RunControl(resolve=cause)
        policy = self.runner.policy
        cap = self.user_max_running
        if cap is not None:
            started = await policy.run(
                lambda: self.store.start_within(run_id, self.worker_name, cap),
                what="start the run",
            )
            if started is None:
                raise UserAtCapacity(run_id)  # retried later, the run still queued
        self.executing.add(run_id)
        task = asyncio.current_task()
        assert task is not None
        self._run_tasks[run_id] = task
        try:
            if cap is None and not await policy.run(
                lambda: self.store.mark_running(run_id, self.worker_name), what="start the run"
            ):
                return  # cancelled (or otherwise ended) while it waited
            if cap is not None and not started:
                return
            run = await policy.run(lambda: self.store.get_run(run_id), what="read the run")
            assert run is not None
            await self.runner.execute(run, control)
        except BaseException as exc:
            # Aborted, or failed, before the runner's own clean-up could run: end the run here
            # (a no-op if it has ended).
            if not isinstance(exc, asyncio.CancelledError):
                control.fail(public_message(exc))
            current = await asyncio.shield(
                policy.run(lambda: self.store.get_run(run_id), what="read the run", forever=True)
            )
            if current is not None and current.status is RunStatus.RUNNING:
                await asyncio.shield(self.runner.stop(current, control))
            raise
        finally:
            self.executing.discard(run_id)
            self._run_tasks.pop(run_id, None)

    # -- dead workers ----------------------------------------------------------------------------

    async def _reap_forever(self) -> None:
        while True:
            try:
                await self.reap()
            except Exception as exc:
                # Heartbeats seen across this gap prove nothing: watch them afresh.
                self._db_ok_since = None
                log.warning("reaping stalled runs failed", error=public_message(exc))
            await asyncio.sleep(self.reap_every_seconds)

    async def reap(self, *, now: float | None = None) -> int:
        """End, ``interrupted``, the runs whose executor is gone: their worker stopped
        heartbeating (and so did the run), or their job no longer executes."""
        now = time.monotonic() if now is None else now
        await self.store.ping()
        if self._db_ok_since is None:
            self._db_ok_since = now
        count = 0
        if now - self._db_ok_since >= self.stalled_after_seconds:
            count += await reap_stalled(self)
            count += await end_ghosts(self)
        await self._kill_orphans()
        if self.webhooks is not None:
            await self.webhooks.requeue()
        return count

    async def _touch_runs_forever(self) -> None:
        """The runs executing here heartbeat on their own rows: a worker whose procrastinate
        row was pruned (an outage) still shows that its runs are alive."""
        while True:
            await asyncio.sleep(self.heartbeat_seconds)
            if not self.executing:
                continue
            try:
                await touch_runs(self.store, sorted(self.executing))
            except Exception as exc:
                log.warning("run heartbeat failed", error=public_message(exc))

    async def _has_executor(self, run_id: str, job_status: str | None) -> bool:
        if run_id in self.executing:
            return True
        if job_status != Status.DOING.value:
            return False
        return bool(await runs_alive(self.store, [run_id], self.stalled_after_seconds))

    async def _kill_orphans(self) -> None:
        """Kill this installation's agent processes on this machine whose run has ended (a
        dead worker's). Another installation's agents (which carry its own marker, or none)
        are not ours to judge: their runs are in another database."""
        for run_id in await asyncio.to_thread(marked_processes, self.installation):
            run = await self.store.get_run(run_id)
            if run is None or run.status.terminal:
                await asyncio.to_thread(kill_run_processes, run_id, installation=self.installation)

    # -- helpers -----------------------------------------------------------------------------------

    async def _job(self, run_id: str) -> tuple[int | None, str | None]:
        """The run's (latest) job id and status."""
        async with self.store.engine.connect() as conn:
            row = (
                await conn.execute(
                    sa.text(
                        "SELECT id, status FROM procrastinate_jobs WHERE task_name = :task"
                        " AND args->>'run_id' = :run_id ORDER BY id DESC LIMIT 1"
                    ),
                    {"task": TASK, "run_id": run_id},
                )
            ).first()
        return (None, None) if row is None else (int(row.id), str(row.status))

    async def _wait_ended(self, run_id: str) -> bool:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.cancel_wait_seconds
        while loop.time() < deadline:
            run = await self.store.get_run(run_id)
            if run is not None and run.status.terminal:
                return run.status is RunStatus.CANCELLED
            await asyncio.sleep(0.1)
        return False


async def listen_for_events(database_url: str, bus: LocalBus) -> None:
    """Wake this process's subscribers on the events NOTIFY channel, reconnecting forever."""
    import psycopg

    from agentyard.store.store import EVENTS_CHANNEL

    while True:
        try:
            async with await psycopg.AsyncConnection.connect(
                psycopg_conninfo(database_url), autocommit=True
            ) as conn:
                await conn.execute(f"LISTEN {EVENTS_CHANNEL}")
                # Anything appended while we were not listening: everyone re-reads.
                bus.wake_all()
                async for note in conn.notifies():
                    run_id, _, _seq = note.payload.rpartition(":")
                    bus.publish(run_id, None)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.warning(
                "event listener lost its connection; reconnecting", error=public_message(exc)
            )
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.sleep(1.0)
