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
from agentyard.runner import RunControl, Runner
from agentyard.store.store import Store

log = structlog.get_logger(__name__)

_SHUTDOWN = "Server shut down while the run was executing"


def _shutdown() -> RunControl:
    control = RunControl()
    control.interrupt(_SHUTDOWN)
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
    ) -> None:
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

    @property
    def active_run_ids(self) -> list[str]:
        return list(self._active)

    async def start(self) -> None:
        for i in range(self.concurrency):
            self._workers.append(asyncio.create_task(self._work(), name=f"local-worker-{i}"))

    async def stop(self) -> None:
        for worker in self._workers:
            worker.cancel()
        for run_id, task in list(self._active.items()):
            self._controls[run_id].interrupt(_SHUTDOWN)
            task.cancel()
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

    async def _work(self) -> None:
        while True:
            async with self._claim_lock:
                run = await self.store.claim_next(self.worker_id)
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
                    await self.runner.stop(run, control)
                elif task.exception() is not None:
                    # The runner itself failed (e.g. the database): the run must still end.
                    log.error("run task failed", run_id=run.run_id, error=str(task.exception()))
                    control.fail(f"internal error: {task.exception()}")
                    await self.runner.stop(run, control)
            except asyncio.CancelledError:
                task.cancel()
                with contextlib.suppress(BaseException):
                    await task
                raise
            finally:
                self._active.pop(run.run_id, None)
                self._controls.pop(run.run_id, None)
