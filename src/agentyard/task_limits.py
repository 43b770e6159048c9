"""The per-task limits a run is given (``maxDuration``, ``maxCostUsd``) within the server's
caps, and the per-user caps of runs executing and waiting."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from agentyard.core.errors import InvalidInput, TooManyRequests
from agentyard.core.models import Run
from agentyard.core.status import RunStatus
from agentyard.store.store import Store

_QUEUE_FULL_RETRY_SECONDS = 30


@dataclass(frozen=True)
class TaskLimits:
    """Server-wide defaults and caps of the per-task limits, and the per-user ones."""

    max_duration: float | None = None
    max_duration_cap: float | None = None
    max_cost_usd: float | None = None
    max_cost_cap_usd: float | None = None
    user_max_running: int | None = None
    user_max_queued: int | None = None

    def chosen(
        self, max_duration: float | None, max_cost: float | None, previous: Run | None
    ) -> dict[str, Any]:
        """The run's ``maxDuration`` and ``maxCostUsd`` (given, else the previous run's, else
        the server's defaults), within the server's caps."""
        duration_cap, cost_cap = self.max_duration_cap, self.max_cost_cap_usd
        if max_duration is not None and duration_cap is not None and max_duration > duration_cap:
            raise InvalidInput(f"'maxDuration' may be at most {duration_cap:g} seconds here")
        if max_cost is not None and cost_cap is not None and max_cost > cost_cap:
            raise InvalidInput(f"'maxCostUsd' may be at most {cost_cap:g} here")
        before = previous.options if previous is not None else {}
        chosen = {
            "maxDuration": max_duration
            if max_duration is not None
            else before.get("maxDuration", self.max_duration),
            "maxCostUsd": max_cost
            if max_cost is not None
            else before.get("maxCostUsd", self.max_cost_usd),
        }
        return {name: value for name, value in chosen.items() if value is not None}

    async def check_queue_room(self, store: Store, user_id: str, count: int) -> None:
        """429 when ``count`` more runs would take the user past the cap of queued runs."""
        cap = self.user_max_queued
        if cap is None:
            return
        queued = await store.count_runs(RunStatus.QUEUED, user_id)
        if queued + count > cap:
            raise TooManyRequests(
                f"too many queued runs: {queued} of at most {cap} are waiting; "
                "retry once some have started",
                retry_after=_QUEUE_FULL_RETRY_SECONDS,
            )
