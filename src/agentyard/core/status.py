"""Run statuses and the legal transitions between them."""

from __future__ import annotations

from enum import StrEnum


class RunStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"
    INTERRUPTED = "interrupted"

    @property
    def terminal(self) -> bool:
        return self in TERMINAL


TERMINAL = frozenset(
    {RunStatus.COMPLETED, RunStatus.FAILED, RunStatus.CANCELLED, RunStatus.INTERRUPTED}
)
ACTIVE = frozenset({RunStatus.QUEUED, RunStatus.RUNNING})

# A terminal status never changes: the only edges leave queued or running.
TRANSITIONS: dict[RunStatus, frozenset[RunStatus]] = {
    # A queued run can be interrupted too: its worker died between taking it and starting it.
    RunStatus.QUEUED: frozenset(
        {RunStatus.RUNNING, RunStatus.CANCELLED, RunStatus.FAILED, RunStatus.INTERRUPTED}
    ),
    RunStatus.RUNNING: TERMINAL,
}


def allowed_sources(target: RunStatus) -> frozenset[RunStatus]:
    """The statuses from which a run may move to ``target``."""
    return frozenset(src for src, dsts in TRANSITIONS.items() if target in dsts)


def parse_status(value: str) -> RunStatus | None:
    try:
        return RunStatus(value)
    except ValueError:
        return None
