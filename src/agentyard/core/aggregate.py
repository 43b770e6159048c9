"""The aggregate status of a multi-agent group, from its runs' statuses.

- ``running`` while any run is queued or running;
- then ``completed`` if any run completed (the group produced at least one result);
- else ``failed`` if any run failed;
- else ``interrupted`` if any run was interrupted;
- else ``cancelled`` (every run was cancelled).
"""

from __future__ import annotations

from collections.abc import Iterable

from agentyard.core.status import ACTIVE, RunStatus

_PRECEDENCE = (RunStatus.COMPLETED, RunStatus.FAILED, RunStatus.INTERRUPTED)


def group_status(statuses: Iterable[RunStatus]) -> str:
    seen = set(statuses)
    if seen & ACTIVE:
        return "running"
    for status in _PRECEDENCE:
        if status in seen:
            return status.value
    return RunStatus.CANCELLED.value
