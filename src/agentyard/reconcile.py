"""Start-up reconciliation: no ghost runs after a crash."""

from __future__ import annotations

import asyncio

import structlog

from agentyard.core import details
from agentyard.core.status import RunStatus
from agentyard.events.log import EventLog
from agentyard.runtimes.processes import kill_run_processes
from agentyard.store.store import Store

log = structlog.get_logger(__name__)


async def interrupt_orphans(store: Store, events: EventLog, reason: str) -> int:
    """End every run left ``running`` by a dead process as ``interrupted``."""
    count = 0
    for run in await store.runs_with_status(RunStatus.RUNNING):
        # The dead server's agent processes may have outlived it.
        await asyncio.to_thread(kill_run_processes, run.run_id)
        if await events.finish(
            run.run_id, RunStatus.INTERRUPTED, error=reason, status_detail=details.SERVER_RESTARTED
        ):
            count += 1
            log.warning("run interrupted", run_id=run.run_id, reason=reason)
    return count
