"""The runtime port: what the runner gives a runtime and what it gets back."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from agentyard.core.acp_policy import Policy
from agentyard.core.events import Event
from agentyard.sandbox.base import Confinement
from agentyard.sandbox.none import Unconfined

RUN_MARKER_ENV = "AGENTYARD_RUN_ID"
"""Set in every agent process's environment so that cancel can find the whole tree."""

INSTALLATION_ENV = "AGENTYARD_INSTALLATION"
"""Set beside the run marker (to ``processes.installation_id(data dir)``), so that an orphan
reaper kills only its own installation's agents, never another's on the same machine."""


@dataclass(frozen=True)
class RunSpec:
    run_id: str
    chat_id: str
    prompt: str
    model: str | None
    workspace: Path
    state_dir: Path
    """Per-chat directory for the runtime's own state (sessions live here, resume needs it)."""
    resume_session: str | None = None
    prior_totals: Mapping[str, Any] | None = None
    """Session-cumulative figures reported at the end of the chat's previous run."""
    env: Mapping[str, str] = field(default_factory=dict)
    """Extra environment for the agent process (includes the run marker)."""
    timeout_seconds: float = 3600.0
    sandbox: Confinement = field(default_factory=Unconfined)
    """Where the agent runs: the runtime starts its process through it."""
    acp_permission: Policy | None = None
    """The task's ``acpPermission``: how an ACP agent's permission requests are answered,
    instead of the server's (or the agent's configured) policy; None keeps that one."""


@dataclass
class RunOutcome:
    ok: bool
    error: str | None = None
    session_id: str | None = None
    usage: dict[str, Any] | None = None
    cost_usd: float | None = None
    totals: dict[str, Any] | None = None
    """Session-cumulative figures to hand to the next run of the chat as ``prior_totals``."""
    git: dict[str, Any] | None = None
    """Filled by the runner: the run's commits and diff statistics."""
    detail: str | None = None
    """The ended run's ``statusDetail`` when it says more than its status (a limit)."""


@dataclass(frozen=True)
class Availability:
    configured: bool
    detail: str
    default_model: str | None


class Emit(Protocol):
    async def __call__(self, *events: Event) -> None: ...


class AgentRuntime(Protocol):
    name: str

    def availability(self) -> Availability: ...

    async def run(self, spec: RunSpec, emit: Emit) -> RunOutcome:
        """Run the agent to the end. Cancelling the calling task must stop the agent."""
        ...


class RuntimeNotConfigured(Exception):
    """The runtime lacks credentials or its binary; the message says what to set."""
