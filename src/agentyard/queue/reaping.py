"""Scale-out reaping: no run outlives its executor in ``running``.

Two kinds of run lose their executor. A worker that dies (SIGKILL, machine gone) stops
heartbeating: its jobs stay ``doing`` and its runs ``running``. And a run whose job ended
without ending it (a worker that lost its database at the wrong moment) stays ``running``
with no job ``doing`` at all. Any process's reaper ends both ``interrupted``, with a
``statusDetail`` saying why, but never a run that still heartbeats on its own row (its worker
is alive, whatever procrastinate's worker table says after an outage) and never a run that
its own process executes.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import sqlalchemy as sa
import structlog
from procrastinate.jobs import Status

from agentyard.core.status import RunStatus
from agentyard.store.store import Store

if TYPE_CHECKING:
    from agentyard.queue.procrastinate_queue import ProcrastinateQueue

log = structlog.get_logger(__name__)

DEAD_WORKER = "The worker executing the run stopped heartbeating (presumed dead)"
JOB_GONE = "The run's job is no longer executing ({job}): nothing was running it"


async def touch_runs(store: Store, run_ids: Sequence[str]) -> None:
    """Heartbeat on the rows of runs executing in this process (the database's clock)."""
    async with store.transaction() as conn:
        await conn.execute(
            sa.text("UPDATE runs SET heartbeat_at = now() WHERE run_id = ANY(:ids)"),
            {"ids": list(run_ids)},
        )


async def runs_alive(store: Store, run_ids: Sequence[str], within_seconds: float) -> set[str]:
    """Which of the runs heartbeated on their own row within the last ``within_seconds``."""
    if not run_ids:
        return set()
    async with store.engine.connect() as conn:
        rows = await conn.execute(
            sa.text(
                "SELECT run_id FROM runs WHERE run_id = ANY(:ids)"
                " AND heartbeat_at > now() - make_interval(secs => :secs)"
            ),
            {"ids": list(run_ids), "secs": within_seconds},
        )
        return {str(row.run_id) for row in rows}


async def reap_stalled(queue: ProcrastinateQueue) -> int:
    """Interrupt the runs of workers whose heartbeats stopped (the run's own too)."""
    manager = queue.jobs
    await manager.prune_stalled_workers(queue.stalled_after_seconds)
    stalled = {
        str(job.task_kwargs.get("run_id")): job
        for job in await manager.get_stalled_jobs(
            queue="agentyard",
            task_name="agentyard.run",
            seconds_since_heartbeat=queue.stalled_after_seconds,
        )
    }
    alive = await runs_alive(queue.store, list(stalled), queue.stalled_after_seconds)
    count = 0
    for run_id, job in stalled.items():
        if run_id in queue.executing or run_id in alive:
            continue  # its worker's row is stale, but the run itself is alive
        if await queue.events.finish(
            run_id, RunStatus.INTERRUPTED, error=DEAD_WORKER, status_detail=DEAD_WORKER
        ):
            count += 1
            log.warning("run interrupted", run_id=run_id, reason=DEAD_WORKER)
        assert job.id is not None
        await manager.finish_job_by_id_async(job.id, status=Status.FAILED, delete_job=False)
    return count


async def end_ghosts(queue: ProcrastinateQueue) -> int:
    """Interrupt active runs whose job is no longer ``todo``/``doing`` (or is gone).

    A run is a ghost only when two sweeps in a row saw it so: a cancel in flight (job
    cancelled, run about to end) is not one.
    """
    async with queue.store.engine.connect() as conn:
        rows = (
            await conn.execute(
                sa.text(
                    "SELECT r.run_id, r.status, j.status AS job_status FROM runs r"
                    " LEFT JOIN LATERAL (SELECT status FROM procrastinate_jobs"
                    "   WHERE task_name = :task AND args->>'run_id' = r.run_id"
                    "   ORDER BY id DESC LIMIT 1) j ON true"
                    " WHERE r.status IN ('queued', 'running')"
                    " AND (j.status IS NULL OR j.status NOT IN ('todo', 'doing'))"
                ),
                {"task": "agentyard.run"},
            )
        ).all()
    seen = {str(r.run_id): str(r.job_status or "deleted") for r in rows}
    suspects, queue.ghost_suspects = queue.ghost_suspects, seen
    count = 0
    for run_id, job in seen.items():
        if run_id not in suspects or run_id in queue.executing:
            continue
        reason = JOB_GONE.format(job=f"job {job}")
        if await queue.events.finish(
            run_id, RunStatus.INTERRUPTED, error=reason, status_detail=reason
        ):
            count += 1
            log.warning("run interrupted", run_id=run_id, reason=reason)
    return count
