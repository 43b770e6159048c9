"""LocalQueue: asyncio workers inside the server claim queued runs from the database."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket

import structlog
from sqlalchemy.ext.asyncio import AsyncConnection

from agentyard.core.models import Run
from agentyard.core.status import RunStatus
from agentyard.events.log import EventLog
from agentyard.queue.base import SHUTTING_DOWN, grace, shutdown_error
from agentyard.runner import RunControl, Runner
from agentyard.runtimes.processes import kill_run_processes
from agentyard.store.faults import is_disk_full, is_transient, public_message
from agentyard.store.store import Store

log = structlog.get_logger(__name__)

_GONE = "The run's executor is gone: no task in this server was executing it"


def _shutdown(grace_seconds: float = 0.0) -> RunControl:
    control = RunControl()
    control.interrupt(shutdown_error(grace_seconds), SHUTTING_DOWN)
    return control


class LocalQueue:
    def __init__(
        self,
        store: Store,
        events: EventLog,
        runner: Runner,
        concurrency: int,
        poll_seconds: float = 1.0,
        cancel_wait_seconds: float = 10.0,
        sweep_seconds: float = 5.0,
        user_max_running: int | None = None,
    ) -> None:
        self.user_max_running = user_max_running
        """At most this many of one user's runs execute at once (the claim skips the rest)."""
        self.sweep_seconds = sweep_seconds
        self.store = store
        self.events = events
        self.runner = runner
        self.concurrency = concurrency
        self.poll_seconds = poll_seconds
        self.cancel_wait_seconds = cancel_wait_seconds
        self.worker_id = f"{socket.gethostname()}:{os.getpid()}"
        self._wake = asyncio.Event()
        self._claim_lock = asyncio.Lock()
        self._workers: list[asyncio.Task[None]] = []
        self._active: dict[str, asyncio.Task[RunStatus]] = {}
        self._controls: dict[str, RunControl] = {}
        self._sweeper: asyncio.Task[None] | None = None
        self._closed = False
        """Draining: no slot claims another run."""
        self._draining: asyncio.Task[None] | None = None
        self._hurry = asyncio.Event()
        self.database_ok = True
        """False while the last claim failed: ``/readyz`` reports it."""

    @property
    def healthy(self) -> bool:
        """Every slot is alive and the database answers."""
        alive = len(self._workers) == self.concurrency and not any(w.done() for w in self._workers)
        return alive and self.database_ok

    @property
    def active_run_ids(self) -> list[str]:
        return list(self._active)

    @property
    def running(self) -> bool:
        """Started, and not draining: it takes runs."""
        return bool(self._workers) and not self._closed

    async def start(self) -> None:
        for i in range(self.concurrency):
            self._workers.append(asyncio.create_task(self._slot(i), name=f"local-worker-{i}"))
        self._sweeper = asyncio.create_task(self._sweep_forever(), name="local-sweeper")

    def drain(self, grace_seconds: float) -> None:
        if self._draining is None:
            self._closed = True
            self._draining = asyncio.create_task(self._drain(grace_seconds), name="local-drain")

    def hurry(self) -> None:
        self._hurry.set()

    async def _drain(self, grace_seconds: float) -> None:
        """Let the runs executing here end on their own within the grace period (or until
        :meth:`hurry`), then interrupt the rest."""
        async with self._claim_lock:  # a claim under way lands in _active first
            self._closed = True
        await grace(list(self._active.values()), grace_seconds, self._hurry)
        for run_id, task in list(self._active.items()):
            if not task.done():
                log.warning("interrupting run", run_id=run_id, reason=SHUTTING_DOWN)
                self._controls[run_id].interrupt(shutdown_error(grace_seconds), SHUTTING_DOWN)
                task.cancel()
        await asyncio.gather(*self._active.values(), return_exceptions=True)

    async def stop(self) -> None:
        self.drain(0.0)
        assert self._draining is not None
        with contextlib.suppress(Exception):  # whatever failed, the slots must still go
            await self._draining
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
            self._sweeper = None
        for worker in self._workers:
            worker.cancel()
        await asyncio.gather(*self._workers, *self._active.values(), return_exceptions=True)
        self._workers.clear()
        # A run claimed in the instant before its task existed has no one to end it.
        for run in await self.store.runs_with_status(RunStatus.RUNNING):
            if run.worker_id == self.worker_id:
                await self.runner.stop(run, _shutdown())

    async def in_transaction(self, conn: AsyncConnection, run: Run) -> None:
        """Nothing: the queued row is the queue."""

    async def enqueued(self, run_id: str) -> None:
        self._wake.set()

    async def cancel(self, run_id: str) -> bool:
        # Under the claim lock, a run is either still queued or already has its task here.
        async with self._claim_lock:
            run = await self.store.get_run(run_id)
            if run is None or run.status.terminal:
                return False
            if run.status is RunStatus.QUEUED and await self.events.finish(
                run_id, RunStatus.CANCELLED, error="Cancelled by user"
            ):
                return True
            task = self._active.get(run_id)
            control = self._controls.get(run_id)
        if task is not None and control is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, TimeoutError):
                await asyncio.wait_for(asyncio.shield(task), self.cancel_wait_seconds)
            # A task cancelled before its first step never ran the runner's own clean-up.
            await self.runner.stop(run, control)
        else:
            # Claimed but not executing here (claimed by a process that is gone): end it.
            await self.events.finish(run_id, RunStatus.CANCELLED, error="Cancelled by user")
        run = await self.store.get_run(run_id)
        return run is not None and run.status is RunStatus.CANCELLED

    async def sweep(self) -> int:
        """End, ``interrupted``, every ``running`` run that no task here executes (its slot
        failed to end it, or the terminal write was lost): this process is the only
        executor of an embedded server, so such a run has nobody left to end it."""
        count = 0
        async with self._claim_lock:
            ghosts = [
                run
                for run in await self.store.runs_with_status(RunStatus.RUNNING)
                if run.run_id not in self._active
            ]
        for run in ghosts:
            await asyncio.to_thread(kill_run_processes, run.run_id)
            if await self.events.finish(
                run.run_id,
                RunStatus.INTERRUPTED,
                error=_GONE,
                status_detail=_GONE,
                sources=[RunStatus.RUNNING],
            ):
                count += 1
                log.warning("run interrupted", run_id=run.run_id, reason=_GONE)
        return count

    async def _sweep_forever(self) -> None:
        while True:
            await asyncio.sleep(self.sweep_seconds)
            try:
                await self.sweep()
            except Exception as exc:
                log.warning("sweeping runs failed", error=public_message(exc))

    async def _slot(self, index: int) -> None:
        """One unit of execution capacity: whatever fails in it, it goes on taking runs."""
        while True:
            try:
                await self._work()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("execution slot failed; restarting it", slot=index)
                await asyncio.sleep(self.poll_seconds)

    async def _claim(self) -> Run | None:
        if self._closed:
            return None
        try:
            run = await self.store.claim_next(self.worker_id, self.user_max_running)
        except Exception as exc:
            if not is_transient(exc) and not is_disk_full(exc):
                raise
            if self.database_ok:
                log.warning("cannot claim runs: the database fails", error=public_message(exc))
            self.database_ok = False
            return None
        self.database_ok = True
        return run

    async def _work(self) -> None:
        while True:
            async with self._claim_lock:
                run = await self._claim()
                if run is not None:
                    control = RunControl()
                    task = asyncio.create_task(
                        self.runner.execute(run, control), name=f"run-{run.run_id}"
                    )
                    self._active[run.run_id] = task
                    self._controls[run.run_id] = control
            if run is None:
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self.poll_seconds)
                continue
            # More may be waiting: let another idle worker look too.
            self._wake.set()
            try:
                # wait() returns when the run ends, however it ends; only the worker's own
                # cancellation (shutdown) raises here.
                await asyncio.wait([task])
                if task.cancelled():
                    # Cancelled before its first step: the runner never got to end it.
                    await self._end(run, control)
                elif (failure := task.exception()) is not None:
                    # The runner itself failed: the run must still end, the slot go on.
                    log.error(
                        "run task failed",
                        run_id=run.run_id,
                        error=public_message(failure),
                        exc_info=failure,
                    )
                    control.fail(public_message(failure))
                    await self._end(run, control)
            except asyncio.CancelledError:
                task.cancel()
                with contextlib.suppress(BaseException):
                    await task
                raise
            finally:
                self._active.pop(run.run_id, None)
                self._controls.pop(run.run_id, None)

    async def _end(self, run: Run, control: RunControl) -> None:
        """End the run as ``control`` says; if even that fails, the sweep will."""
        try:
            await self.runner.stop(run, control)
        except Exception:
            log.exception("ending the run failed; the sweep will end it", run_id=run.run_id)
