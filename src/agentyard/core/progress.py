"""The 0-100 progress estimate reported by ``/status``."""

from __future__ import annotations

from datetime import datetime

from agentyard.core.status import RunStatus


def estimate_progress(
    status: RunStatus,
    started_at: datetime | None,
    now: datetime,
    expected_seconds: float,
) -> int:
    """Linear in elapsed time while running, capped at 99; 100 once completed; else 0."""
    if status is RunStatus.COMPLETED:
        return 100
    if status is not RunStatus.RUNNING or started_at is None:
        return 0
    elapsed = max(0.0, (now - started_at).total_seconds())
    if expected_seconds <= 0:
        return 99
    return min(99, int(100 * elapsed / expected_seconds))
