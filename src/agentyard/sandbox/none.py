"""No sandbox: agents run as the server's own user with its view of the machine.

For development on machines without bubblewrap. Never silent: the server warns at start-up,
and ``/agents`` and ``/readyz`` say ``sandbox: "none"``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from agentyard.sandbox.base import Endpoint, SandboxRequest


@dataclass(frozen=True)
class Unconfined:
    marker_env: Mapping[str, str] = field(default_factory=dict)
    kind: str = "none"
    isolated: bool = False
    reaped: bool = False

    def environment(self, env: Mapping[str, str]) -> dict[str, str]:
        return {**env, **self.marker_env}

    def command(self, executable: str, env: Mapping[str, str]) -> str:
        return executable

    def endpoint(self, route: str, base_url: str, api_key: str, auth: str) -> Endpoint:
        return Endpoint(base_url, api_key)


class NoSandbox:
    kind = "none"

    def __init__(self, reason: str = "AGENTYARD_SANDBOX=none") -> None:
        self.reason = reason

    def describe(self) -> dict[str, object]:
        return {"sandbox": self.kind, "detail": f"agents are not confined ({self.reason})"}

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None

    @asynccontextmanager
    async def confine(self, request: SandboxRequest) -> AsyncIterator[Unconfined]:
        yield Unconfined(dict(request.marker_env))
