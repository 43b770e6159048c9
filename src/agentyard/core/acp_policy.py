"""How an ACP agent's permission requests are answered, and a task's own choice of it.

The server has a policy (``AGENTYARD_ACP_PERMISSION``, or a configured agent's own); a task
may name another in ``acpPermission``, kept in its run's ``options`` and carried over to its
follow-ups unless one names its own. A task can only narrow the server's policy, never
widen it: the stricter of the two applies (``deny`` < ``read-only`` < ``workspace`` <
``allow``), so a user of a shared server cannot grant their agent more than the operator did.
"""

from __future__ import annotations

from typing import Any, Literal, cast, get_args

from agentyard.core.errors import InvalidInput

Policy = Literal["workspace", "allow", "read-only", "deny"]
"""``workspace``: allow what stays in the workspace; ``read-only``: reads, searches and
thinking only; ``allow``: everything; ``deny``: nothing."""
POLICIES: tuple[str, ...] = get_args(Policy)
FIELD = "acpPermission"
OPTION = "acpPermission"
"""Its key in a run's ``options``."""


def parse(value: Any) -> Policy | None:
    """A body's ``acpPermission``: None when absent, else one of the four, else a 400."""
    if value is None:
        return None
    if isinstance(value, str) and value in POLICIES:
        return known(value)
    names = ", ".join(f'"{p}"' for p in POLICIES)
    raise InvalidInput(f"'{FIELD}' must be one of {names}")


def known(value: Any) -> Policy | None:
    """A stored policy, or None for anything that is not one (an older or altered row)."""
    return cast(Policy, value) if isinstance(value, str) and value in POLICIES else None


_STRICTNESS: dict[str, int] = {"deny": 0, "read-only": 1, "workspace": 2, "allow": 3}


def effective(server: Policy, task: Policy | None) -> Policy:
    """The policy a run's requests are answered by: the task's, within the server's."""
    if task is None:
        return server
    return task if _STRICTNESS[task] <= _STRICTNESS[server] else server
