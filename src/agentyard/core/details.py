"""``statusDetail``: why a run waits, what it is doing, or why it ended, in a few words.

Queued runs get theirs when they are read (their place changes as others move); a running
run's is written as it moves from stage to stage; an ended run's is written with its
terminal status and never changes.
"""

from __future__ import annotations

from agentyard.core.status import RunStatus

# -- queued (computed when read) -------------------------------------------------------------
WAITING_FOR_CHAT = "waiting for the chat's previous run"


def waiting_for_slot(position: int, total: int) -> str:
    return f"waiting for a free slot: position {position} of {total}"


def waiting_for_user_slot(running: int, limit: int) -> str:
    return f"waiting: {running} of your runs are executing (at most {limit} at once)"


# -- running (written by the runner) ---------------------------------------------------------
STARTING = "starting"
PREPARING = "preparing workspace"
WORKING = "agent working"
SAVING = "saving work"


def retrying(attempt: int, status: int) -> str:
    what = "model overloaded" if status in (429, 503, 529) else f"model error {status}"
    return f"{what}, retrying (attempt {attempt})"


# -- ended -----------------------------------------------------------------------------------
COMPLETED = "completed"
CANCELLED = "cancelled by user"
MAX_DURATION = "maxDuration reached"
MAX_COST = "maxCostUsd reached"
KEY_REJECTED = "model rejected the API key"
SERVER_RESTARTED = "server restarted"
SHUTTING_DOWN = "server shutting down"


def ended(status: RunStatus, error: str | None) -> str:
    """The detail of a run that ended without a more specific one."""
    if status is RunStatus.COMPLETED:
        return COMPLETED
    if status is RunStatus.CANCELLED:
        return CANCELLED
    if not error:
        return status.value
    first = error.strip().splitlines()[0] if error.strip() else status.value
    return first if len(first) <= 160 else first[:157] + "..."
