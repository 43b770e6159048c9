"""The sandbox port: how every agent process is started, and what it can reach.

A :class:`Sandbox` is made once per process; for each run it opens a :class:`Confinement`,
which the runtime asks for three things: the executable to start instead of the agent's own
(``command``), the environment the agent may see (``environment``), and how to reach a model
provider (``endpoint``: the real one, or the host-side proxy with a per-run token).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

SANDBOX_HOME = "/home/agent"
SANDBOX_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


@dataclass(frozen=True)
class Limits:
    """Per-run resource limits; 0 means no limit of that kind."""

    processes: int = 1024
    open_files: int = 8192
    file_bytes: int = 8 * 1024**3
    memory_bytes: int = 8 * 1024**3
    tmp_bytes: int = 2 * 1024**3


class ModelWatch(Protocol):
    """Told of each model response of a run as it passes the model proxy."""

    def response(self, route: str, status: int) -> None:
        """The provider answered with ``status``."""

    def usage(self, route: str, model: str | None, usage: Mapping[str, Any]) -> None:
        """A response used these tokens (``inputTokens``, ``cachedInputTokens``,
        ``outputTokens``)."""


@dataclass(frozen=True)
class SandboxRequest:
    run_id: str
    workspace: Path
    state_dir: Path
    """The chat's runtime state (``CLAUDE_CONFIG_DIR``, ``CODEX_HOME``): read-write."""
    writable: Sequence[Path] = ()
    readable: Sequence[Path] = ()
    """More host paths the runtime needs (its own install), read-only."""
    marker_env: Mapping[str, str] = field(default_factory=dict)
    """Set in every process of the run (how stray processes are found and killed)."""
    watch: ModelWatch | None = None
    """Told of the run's model responses (the run's limits and retries)."""


@dataclass(frozen=True)
class Endpoint:
    base_url: str
    api_key: str


class Confinement(Protocol):
    """One run's sandbox, from the runtime's side."""

    @property
    def kind(self) -> str:
        """``bwrap`` or ``none``."""
        ...

    @property
    def isolated(self) -> bool:
        """Whether the agent is confined (and so may be handed endpoints through the proxy)."""
        ...

    @property
    def reaped(self) -> bool:
        """After the ``confine`` block: whether every process the run started was killed at
        its end (they were all held in the run's cgroups, which were emptied), so that no
        scan of the machine's processes is needed for what the run left behind."""
        ...

    def environment(self, env: Mapping[str, str]) -> dict[str, str]:
        """The whole environment of the agent process: the sandbox's own variables, then
        ``env`` (the runtime's), then the run's markers."""
        ...

    def command(self, executable: str, env: Mapping[str, str]) -> str:
        """An executable that starts ``executable`` (a path, or a name looked up on the
        sandbox's ``PATH``) confined, with exactly ``env`` (as given by ``environment``) as
        its environment; arguments are passed through."""
        ...

    def endpoint(self, route: str, base_url: str, api_key: str, auth: str) -> Endpoint:
        """How the agent reaches a model provider at ``base_url`` with ``api_key``:
        unconfined, those themselves; confined, the model proxy and this run's token."""
        ...


class Sandbox(Protocol):
    @property
    def kind(self) -> str: ...

    def describe(self) -> dict[str, object]:
        """What ``/agents`` and ``/readyz`` report."""
        ...

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    def confine(self, request: SandboxRequest) -> AbstractAsyncContextManager[Confinement]:
        """The run's confinement; leaving it kills everything the run started and revokes
        its token."""
        ...


class SandboxUnavailable(Exception):
    """The requested sandbox cannot run on this machine; the message says why and what to do."""
