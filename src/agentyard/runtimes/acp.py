"""The ACP runtime: any Agent Client Protocol agent (JSON-RPC 2.0 over stdio, version 1).

An agent is configured by name (``AGENTYARD_ACP_AGENTS``: ``{"opencode": {"argv":
["opencode", "acp"], "env": {...}}}``) or built in (Gemini, :mod:`acp_gemini`); each is a
runtime of its own, selected by ``"agent": "<name>"``. A run is one agent process:
``initialize`` (version 1 only), ``authenticate`` if the agent asks for it, ``session/new``
in the workspace (or, for ``continue``, ``session/resume`` or ``session/load`` when the agent
offers them), one ``session/prompt``. The SDK (``agent-client-protocol``, pinned) is used only
here and in :mod:`acp_session`.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from pydantic import BaseModel, Field, ValidationError

from agentyard.core import acp_policy
from agentyard.core import events as ev
from agentyard.runtimes.acp_events import DATA_ACP, AcpMapper, shorten
from agentyard.runtimes.acp_session import AcpFailure, AcpSession, Policy
from agentyard.runtimes.base import (
    RUN_MARKER_ENV,
    Availability,
    Emit,
    RunOutcome,
    RunSpec,
    RuntimeNotConfigured,
)
from agentyard.runtimes.lazy import LazyModule

if TYPE_CHECKING:
    import acp
    import acp.schema as acp_schema
    from acp.schema import InitializeResponse, PromptResponse
else:
    acp = LazyModule("acp")  # imported by the first ACP run
    acp_schema = LazyModule("acp.schema")

PROTOCOL_VERSION = 1
_AUTH_REQUIRED = -32000
_INHERITED = ("PATH", "LANG", "LC_ALL", "TERM", "USER", "LOGNAME", "SHELL", "TMPDIR")
"""Unconfined, an agent gets only these of the server's variables (never its secrets)."""
_STOPS = {
    "max_tokens": "the model reached its output limit (max_tokens)",
    "max_turn_requests": "the agent reached its limit of model requests (max_turn_requests)",
    "refusal": "the agent refused the prompt (refusal)",
    "cancelled": "the agent cancelled the turn",
}
_USAGE_KEYS = {
    "inputTokens": "inputTokens",
    "outputTokens": "outputTokens",
    "totalTokens": "totalTokens",
    "thoughtTokens": "reasoningOutputTokens",
    "cachedReadTokens": "cacheReadInputTokens",
    "cachedWriteTokens": "cacheCreationInputTokens",
}


class AcpAgentSpec(BaseModel):
    """One configured ACP agent."""

    argv: list[str] = Field(min_length=1)
    env: dict[str, str] = Field(default_factory=dict)
    permission: Policy | None = None
    """Overrides ``AGENTYARD_ACP_PERMISSION`` for this agent."""
    auth_method: str | None = None
    """The ``authenticate`` method to use when the agent asks (``auth_required``)."""
    default_model: str | None = None


@dataclass(frozen=True)
class Launch:
    argv: list[str]
    env: dict[str, str]
    """The runtime's environment, before the sandbox's (``Confinement.environment``)."""
    model: str | None = None


class AcpProfile(Protocol):
    """What differs between ACP agents: how one is started, and whether it can be."""

    label: str
    auth_method: str | None

    def availability(self) -> Availability: ...

    def launch(self, spec: RunSpec) -> Launch:
        """Raises ``RuntimeNotConfigured`` saying what to set."""
        ...


def base_environment(spec: RunSpec) -> dict[str, str]:
    """Unconfined: a few of the server's variables, never its secrets; confined: none (the
    sandbox supplies its own)."""
    if spec.sandbox.isolated:
        return {}
    return {k: os.environ[k] for k in _INHERITED if k in os.environ}


@dataclass
class CommandProfile:
    """An ACP agent configured by argv (``AGENTYARD_ACP_AGENTS``)."""

    name: str
    spec: AcpAgentSpec
    label: str = ""
    auth_method: str | None = None

    def __post_init__(self) -> None:
        self.label = self.label or f"ACP agent {self.name!r}"
        self.auth_method = self.auth_method or self.spec.auth_method

    def availability(self) -> Availability:
        import shutil

        program = self.spec.argv[0]
        found = Path(program).is_file() if os.sep in program else shutil.which(program)
        if not found:
            return Availability(False, f"{program!r} was not found (ACP agent {self.name})", None)
        return Availability(True, "ACP: " + " ".join(self.spec.argv), self.spec.default_model)

    def launch(self, spec: RunSpec) -> Launch:
        env = base_environment(spec)
        env.update(self.spec.env)
        model = spec.model or self.spec.default_model
        argv = [a.replace("{model}", model or "") for a in self.spec.argv]
        return Launch(argv, env, model)


@dataclass
class AcpRuntime:
    name: str
    profile: AcpProfile
    idle_seconds: float = 600.0
    cancel_grace_seconds: float = 3.0
    permission: Policy = "workspace"
    version: str = "0"

    def availability(self) -> Availability:
        return self.profile.availability()

    def check_model(self, model: str | None) -> None:
        """The profile's check of a model at create time, if it has one (Gemini's)."""
        check = getattr(self.profile, "check_model", None)
        if check is not None:
            check(model)

    async def run(self, spec: RunSpec, emit: Emit) -> RunOutcome:
        started = time.monotonic()
        try:
            launch = self.profile.launch(spec)
        except RuntimeNotConfigured as exc:
            return RunOutcome(ok=False, error=str(exc))
        env = spec.sandbox.environment({**launch.env, **spec.env})
        argv = list(launch.argv)
        try:
            argv[0] = spec.sandbox.command(argv[0], env)
        except OSError as exc:
            return RunOutcome(ok=False, error=f"cannot confine {argv[0]!r}: {exc}")
        mapper = AcpMapper(spec.workspace, emit)
        session = AcpSession(
            argv,
            env,
            spec.workspace,
            mapper,
            label=self.profile.label,
            run_id=spec.env.get(RUN_MARKER_ENV),
            idle_seconds=self.idle_seconds,
            policy=acp_policy.effective(self.permission, spec.acp_permission),
        )
        deadline = asyncio.timeout(spec.timeout_seconds)
        try:
            async with deadline:
                response = await self._turn(session, spec, launch, emit)
        except asyncio.CancelledError:
            # Shielded: a second cancel must not leave the agent running.
            await asyncio.shield(self._abort(session))
            raise
        except TimeoutError:
            await asyncio.shield(self._abort(session))
            return self._failed(session, f"timed out after {spec.timeout_seconds:g} s")
        except AcpFailure as exc:
            await asyncio.shield(self._abort(session))
            return self._failed(session, str(exc))
        except Exception as exc:  # the SDK's own errors: say what the agent answered
            await asyncio.shield(self._abort(session))
            said = _said(exc)
            key_env = getattr(self.profile, "key_env", None)
            if key_env and re.search(r"api.?key|HTTP 40[13]", said, re.IGNORECASE):
                said += f" [check {key_env}]"
            return self._failed(session, f"{self.profile.label} failed: {said}")
        await asyncio.shield(session.close(kill=False))
        return self._outcome(session, response, spec, launch, time.monotonic() - started)

    async def _abort(self, session: AcpSession) -> None:
        await session.cancel(self.cancel_grace_seconds)
        await session.close(kill=True)

    async def _turn(
        self, session: AcpSession, spec: RunSpec, launch: Launch, emit: Emit
    ) -> PromptResponse:
        await session.start()
        conn = session.conn
        init: InitializeResponse = await session.call(
            lambda: conn.initialize(
                protocol_version=PROTOCOL_VERSION,
                client_capabilities=acp.schema.ClientCapabilities(),
                client_info=acp_schema.Implementation(name="agentyard", version=self.version),
            ),
            "initializing",
        )
        if init.protocol_version != PROTOCOL_VERSION:
            raise AcpFailure(
                f"{self.profile.label} speaks ACP protocol version {init.protocol_version}; "
                f"Agentyard speaks version {PROTOCOL_VERSION} only"
            )
        session_id = await self._open(session, init, spec)
        await emit(ev.session_init(session_id, launch.model))
        try:
            response: PromptResponse = await session.call(
                lambda: conn.prompt(session_id=session_id, prompt=[acp.text_block(spec.prompt)]),
                "running the turn",
            )
        except ValidationError as exc:
            raise AcpFailure(
                f"{self.profile.label} ended the turn with an answer outside ACP version 1 "
                f"(e.g. an unknown stop reason): {shorten(str(exc), 300)}"
            ) from exc
        await session.flush()
        await session.mapper.close_block()
        return response

    async def _open(self, session: AcpSession, init: InitializeResponse, spec: RunSpec) -> str:
        """The session to prompt: the chat's, resumed or loaded if the agent can, else new."""
        conn = session.conn
        caps = init.agent_capabilities or acp_schema.AgentCapabilities()
        cwd = str(spec.workspace)
        previous = spec.resume_session
        if previous:
            session.adopt(previous)
            resumable = caps.session_capabilities is not None and (
                caps.session_capabilities.resume is not None
            )
            try:
                if resumable:
                    await session.call(
                        lambda: conn.resume_session(session_id=previous, cwd=cwd, mcp_servers=[]),
                        "resuming the session",
                    )
                    return previous
                if caps.load_session:
                    session.replaying = True
                    await session.call(
                        lambda: conn.load_session(session_id=previous, cwd=cwd, mcp_servers=[]),
                        "loading the session",
                    )
                    await session.settle_replay()
                    return previous
            except acp.RequestError as exc:
                # The agent lost it (or refuses): a new session, and the run says so.
                session.replaying = False
                note = {"continued": False, "sessionId": previous, "error": _said(exc)}
                await session.mapper.emit({"type": DATA_ACP, "data": note})
        return await self._new(session, init, cwd)

    async def _new(self, session: AcpSession, init: InitializeResponse, cwd: str) -> str:
        conn = session.conn
        for attempt in range(2):
            try:
                created = await session.call(
                    lambda: conn.new_session(cwd=cwd, mcp_servers=[]), "creating the session"
                )
            except acp.RequestError as exc:
                if exc.code != _AUTH_REQUIRED or attempt:
                    raise AcpFailure(
                        f"{self.profile.label} refused a session: {_said(exc)}"
                    ) from exc
                await self._authenticate(session, init, exc)
                continue
            session_id = str(created.session_id)
            session.adopt(session_id)
            return session_id
        raise AssertionError("unreachable")

    async def _authenticate(
        self, session: AcpSession, init: InitializeResponse, exc: acp.RequestError
    ) -> None:
        """The agent asked for authentication: use the configured method, if it offers it."""
        offered = [m.id for m in init.auth_methods or []]
        method = self.profile.auth_method
        if method is None or method not in offered:
            raise AcpFailure(
                f"{self.profile.label} needs authentication ({_said(exc)}); it offers "
                f"{', '.join(offered) or 'no method'}, and Agentyard cannot log in "
                "interactively: configure its key (or auth_method)"
            )
        conn = session.conn
        try:
            await session.call(lambda: conn.authenticate(method_id=method), "authenticating")
        except acp.RequestError as err:
            raise AcpFailure(f"{self.profile.label} refused authentication: {_said(err)}") from err

    def _failed(self, session: AcpSession, error: str) -> RunOutcome:
        return RunOutcome(ok=False, error=error, session_id=session.session_id)

    def _outcome(
        self,
        session: AcpSession,
        response: PromptResponse,
        spec: RunSpec,
        launch: Launch,
        seconds: float,
    ) -> RunOutcome:
        usage = _usage(response)
        usage["durationMs"] = int(seconds * 1000)
        if launch.model and "model" not in usage and len(usage) > 1:
            usage["model"] = launch.model
        cost, totals = _cost(session.mapper.cost, session.session_id, spec.prior_totals)
        stop = str(getattr(response.stop_reason, "value", response.stop_reason))
        error = None if stop == "end_turn" else _STOPS.get(stop, f"unknown stop reason {stop!r}")
        return RunOutcome(
            ok=error is None,
            error=error,
            session_id=session.session_id,
            usage=usage,
            cost_usd=cost,
            totals=totals,
        )


def _usage(response: PromptResponse) -> dict[str, Any]:
    """The turn's tokens as the agent reported them: ACP's (unstable) ``usage``, else
    Gemini's ``_meta.quota``; nothing when it reported none."""
    usage: dict[str, Any] = {}
    if response.usage is not None:
        raw = response.usage.model_dump(by_alias=True, exclude_none=True)
        usage = {
            name: raw[key] for key, name in _USAGE_KEYS.items() if isinstance(raw.get(key), int)
        }
        return usage
    quota = (response.field_meta or {}).get("quota")
    if isinstance(quota, dict):
        counts = quota.get("token_count")
        if isinstance(counts, dict):
            for key, name in (("input_tokens", "inputTokens"), ("output_tokens", "outputTokens")):
                if isinstance(counts.get(key), int):
                    usage[name] = counts[key]
        models = quota.get("model_usage")
        last = models[-1] if isinstance(models, list) and models else None
        if isinstance(last, dict) and last.get("model"):
            usage["model"] = str(last["model"])
    return usage


def _cost(
    reported: Mapping[str, Any] | None,
    session_id: str | None,
    prior_totals: Mapping[str, Any] | None,
) -> tuple[float | None, dict[str, Any] | None]:
    """The run's cost from the session's cumulative ``usage_update`` cost (USD only)."""
    if not reported or str(reported.get("currency", "USD")).upper() != "USD":
        return None, None
    total = float(reported["amount"])
    cost = total
    if prior_totals and prior_totals.get("sessionId") == session_id:
        prior = prior_totals.get("costUsd")
        if isinstance(prior, (int, float)):
            cost = max(0.0, round(total - prior, 10))
    return cost, {"sessionId": session_id, "costUsd": total}


def _said(exc: BaseException) -> str:
    """An agent's error in words: a provider's JSON error body (which agents pass on as the
    message) is reduced to its message and status."""
    text = str(exc).strip() or type(exc).__name__
    try:
        body = json.loads(text)["error"]
        status = " ".join(str(body[k]) for k in ("code", "status") if body.get(k))
        text = str(body["message"]) + (f" (HTTP {status})" if status else "")
    except (ValueError, LookupError, TypeError):
        pass
    data = getattr(exc, "data", None) if isinstance(exc, acp.RequestError) else None
    return text + (f" ({shorten(data, 300)})" if data else "")


def load_agents(raw: str | None) -> dict[str, AcpAgentSpec]:
    """``AGENTYARD_ACP_AGENTS``: ``{"name": {"argv": [...], "env": {...}}}``."""
    if not raw:
        return {}
    return {name: AcpAgentSpec.model_validate(v) for name, v in json.loads(raw).items()}
