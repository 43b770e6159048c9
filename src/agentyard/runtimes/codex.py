"""The Codex runtime: codex (through the ``openai-codex`` SDK) mapped onto the event vocabulary.

One run is one ``codex app-server`` process (the binary bundled with the SDK), driven over
stdio JSON-RPC by ``AsyncCodex``, started in the run's workspace with its own ``CODEX_HOME``
under the chat's state directory, so that the next run of the chat can resume the thread.
The model is reached through one OpenAI-compatible provider (Responses API) configured in a
generated ``config.toml``; its key travels only in the environment, and nothing of the
server's environment (``OPENAI_*``, ``CODEX_*``, its own secrets) reaches codex. Codex
reports tokens but no cost: runs are priced with :mod:`agentyard.runtimes.pricing`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agentyard.core import events as ev
from agentyard.core.routing import check_native_model
from agentyard.runtimes import statedir
from agentyard.runtimes.base import RUN_MARKER_ENV, Availability, Emit, RunOutcome, RunSpec
from agentyard.runtimes.codex_events import KEY_ENV, CodexMapper
from agentyard.runtimes.lazy import LazyModule
from agentyard.runtimes.pricing import ModelPrice, price_for
from agentyard.runtimes.processes import kill_run_processes

if TYPE_CHECKING:
    import openai_codex as codex_sdk
    import openai_codex.models as codex_models
    from openai_codex import AsyncCodex, AsyncThread, AsyncTurnHandle
else:
    codex_sdk = LazyModule("openai_codex")  # imported by the first Codex run
    codex_models = LazyModule("openai_codex.models")

DEFAULT_BASE_URL = "https://api.openai.com/v1"
PROVIDER = "agentyard"

_PROVIDER_KEY_ENV = "AGENTYARD_CODEX_API_KEY"
"""The variable the provider's ``env_key`` names; kept out of the agent's shell commands."""

# Inherited variables with these prefixes are blanked for codex: the SDK lays its ``env`` over
# the server's environment, and e.g. OPENAI_BASE_URL or CODEX_HOME would redirect the run,
# while the server's own secrets must not be readable by the agent's shell.
_BLANKED_PREFIXES = ("OPENAI_", "CODEX_", "AGENTYARD_", "ANTHROPIC_", "CLAUDE_")

_START_SECONDS = 30.0
"""How long a cancelled run waits for a half-started app-server, so that it can be closed."""
_INTERRUPT_SECONDS = 2.0
"""How long a stopped turn gets to acknowledge the interrupt."""
_CLOSE_SECONDS = 10.0
"""Bound on closing the client (the SDK itself waits 2 s for the process, then kills it)."""


@dataclass
class CodexRuntime:
    base_url: str | None = None
    """OpenAI-compatible base URL (codex POSTs ``{base_url}/responses``); OpenAI if not given."""
    api_key: str | None = None
    default_model: str = "gpt-5.5"
    """A slug of codex's bundled catalog: with an unknown one codex offers no apply_patch tool."""
    prices: Mapping[str, ModelPrice] | None = None
    """Laid over ``pricing.DEFAULT_PRICES``."""
    max_retries: int = 2
    """codex's ``request_max_retries`` and ``stream_max_retries`` for the provider."""
    name: str = field(default="codex", init=False)

    def check_model(self, model: str | None) -> None:
        """On the provider's own API, another provider's model is a 400 at create time."""
        if self.base_url is None:
            check_native_model(self.name, model)

    def availability(self) -> Availability:
        if _bundled_codex() is None:
            return Availability(
                False, "the codex binary was not found (reinstall openai-codex)", None
            )
        if not self.api_key:
            return Availability(
                False,
                f"no API key: set {KEY_ENV} (and OPENAI_BASE_URL for a compatible gateway)",
                None,
            )
        where = self.base_url or "the OpenAI API"
        return Availability(True, f"Codex via {where}", self.default_model)

    def model(self, spec: RunSpec) -> str:
        """The slug sent to the provider (an ``openai/`` routing prefix is dropped)."""
        return (spec.model or self.default_model).removeprefix("openai/")

    def prepare_home(self, spec: RunSpec, model: str, base_url: str) -> Path:
        """Create the chat's ``CODEX_HOME`` and (re)write its ``config.toml``; returns the home."""
        home = statedir.own_dir(spec.state_dir, "codex")
        # Confined, the environment holds only what the agent may have (the task's own
        # variables, e.g. NPM_TOKEN): codex must not drop *KEY*/*TOKEN* names from shells.
        toml = self.config_toml(model, base_url, spec.workspace, spec.sandbox.isolated)
        statedir.write_file(home, "config.toml", toml)
        return home

    def config_toml(
        self,
        model: str,
        base_url: str | None = None,
        workspace: Path | None = None,
        confined: bool = False,
    ) -> str:
        """codex's configuration: the provider, no network beyond it, no key."""
        retries = max(0, self.max_retries)
        return "\n".join(
            [
                "# Written by Agentyard before every run; edits are overwritten.",
                f"model = {_toml_str(model)}",
                f"model_provider = {_toml_str(PROVIDER)}",
                "check_for_update_on_startup = false",
                # Commands run in a plain shell with the server's environment: a login shell
                # would source the operator's dotfiles (slow, and a killed run can leave their
                # locks behind, e.g. pyenv's rehash lock, hanging every later command).
                "allow_login_shell = false",
                "",
                "[analytics]",
                "enabled = false",
                "",
                "[features]",
                "plugins = false",
                "shell_snapshot = false",
                # Otherwise an unreachable provider is retried for ever ("waiting for network").
                "unbounded_connection_retries = false",
                "",
                "[shell_environment_policy]",
                f"exclude = [{_toml_str(_PROVIDER_KEY_ENV)}]",
                f"ignore_default_excludes = {'true' if confined else 'false'}",
                "",
                # The workspace is a repository's code, not the operator's: its own
                # .codex/config.toml (MCP servers are commands) must never be loaded.
                *(
                    [f"[projects.{_toml_str(str(workspace))}]", 'trust_level = "untrusted"', ""]
                    if workspace is not None
                    else []
                ),
                f"[model_providers.{PROVIDER}]",
                'name = "Agentyard"',
                f"base_url = {_toml_str(base_url or self.base_url or DEFAULT_BASE_URL)}",
                f"env_key = {_toml_str(_PROVIDER_KEY_ENV)}",
                'wire_api = "responses"',
                f"request_max_retries = {retries}",
                f"stream_max_retries = {retries}",
                "",
            ]
        )

    def environment(self, spec: RunSpec, home: Path, api_key: str) -> dict[str, str]:
        """What the SDK lays over ``os.environ`` for the app-server (in a sandbox: all it
        sees)."""
        env: dict[str, str] = {}
        if not spec.sandbox.isolated:
            env = {key: "" for key in os.environ if key.startswith(_BLANKED_PREFIXES)}
        env["CODEX_HOME"] = str(home)
        env[_PROVIDER_KEY_ENV] = api_key
        env.update(spec.env)
        return spec.sandbox.environment(env)

    async def run(self, spec: RunSpec, emit: Emit) -> RunOutcome:
        if not self.api_key:
            return RunOutcome(ok=False, error=f"Codex is not configured: set {KEY_ENV}")
        started = time.monotonic()
        model = self.model(spec)
        provider = spec.sandbox.endpoint(
            "openai", self.base_url or DEFAULT_BASE_URL, self.api_key, "bearer"
        )
        home = self.prepare_home(spec, model, provider.base_url)
        env = self.environment(spec, home, provider.api_key)
        binary = _bundled_codex()
        config = codex_sdk.CodexConfig(
            codex_bin=spec.sandbox.command(str(binary), env) if binary else None,
            env=env,
            cwd=str(spec.workspace),
        )
        session = _Session(codex_sdk.AsyncCodex(config), spec.env.get(RUN_MARKER_ENV))
        mapper = CodexMapper(spec.workspace, emit, self.base_url or DEFAULT_BASE_URL)
        deadline = asyncio.timeout(spec.timeout_seconds)
        try:
            async with deadline:
                await session.open()
                thread = await session.thread(spec, model)
                mapper.thread_id = thread.id
                await emit(ev.session_init(thread.id, model))
                turn = await session.start_turn(thread, spec.prompt)
                async for notification in turn.stream():
                    await mapper.handle(notification)
                await mapper.close_texts()
        except asyncio.CancelledError:
            # Shielded: a second cancel must not leave the app-server running.
            await asyncio.shield(session.stop(interrupt=True))
            raise
        except TimeoutError:
            await asyncio.shield(session.stop(interrupt=True))
            if not deadline.expired():
                return mapper.failure("codex timed out")
            return mapper.failure(f"timed out after {spec.timeout_seconds:g} s")
        except Exception as exc:
            await asyncio.shield(session.stop(interrupt=False))
            return mapper.failure(session.explain(exc))
        else:
            await asyncio.shield(session.stop(interrupt=False))
        price = price_for(model, self.prices)
        return mapper.outcome(model, price, spec.prior_totals, time.monotonic() - started)


def _bundled_codex() -> Path | None:
    try:
        from codex_cli_bin import bundled_codex_path

        path: Path = bundled_codex_path()
    except (ImportError, OSError):
        return None
    return path if path.is_file() else None


def _toml_str(value: str) -> str:
    """A TOML basic string (JSON's escapes are valid TOML)."""
    return json.dumps(value)


class _Session:
    """One app-server process: opening, the thread, the turn, and stopping it for good."""

    def __init__(self, codex: AsyncCodex, run_id: str | None) -> None:
        self.codex = codex
        self.run_id = run_id
        self.resuming: str | None = None
        self._opening: asyncio.Future[AsyncCodex] | None = None
        self._turn: AsyncTurnHandle | None = None

    async def open(self) -> None:
        # Its own task, shielded: a cancel mid-spawn must still find the process to close.
        self._opening = asyncio.ensure_future(self.codex.__aenter__())
        await asyncio.shield(self._opening)

    async def thread(self, spec: RunSpec, model: str) -> AsyncThread:
        options: dict[str, Any] = {
            "cwd": str(spec.workspace),
            "model": model,
            "model_provider": PROVIDER,
            "sandbox": codex_sdk.Sandbox.full_access,
            # Approval policy "never": nothing asks.
            "approval_mode": codex_sdk.ApprovalMode.deny_all,
        }
        if spec.resume_session:
            self.resuming = spec.resume_session
            return await self.codex.thread_resume(spec.resume_session, **options)
        return await self.codex.thread_start(**options)

    async def start_turn(self, thread: AsyncThread, prompt: str) -> AsyncTurnHandle:
        self.resuming = None
        self._turn = await thread.turn(prompt)
        return self._turn

    async def stop(self, *, interrupt: bool) -> None:
        """Interrupt the turn (bounded), close the client, kill whatever carries the marker."""
        if self._opening is not None and not self._opening.done():
            with contextlib.suppress(BaseException):
                await asyncio.wait_for(asyncio.shield(self._opening), _START_SECONDS)
        if interrupt and self._turn is not None:
            with contextlib.suppress(Exception):
                async with asyncio.timeout(_INTERRUPT_SECONDS):
                    await self._turn.interrupt()
        with contextlib.suppress(Exception):
            async with asyncio.timeout(_CLOSE_SECONDS):
                await self.codex.close()
        if self.run_id:
            # Shell commands the agent started may outlive the app-server.
            with contextlib.suppress(Exception):
                await asyncio.to_thread(kill_run_processes, self.run_id)

    def explain(self, exc: BaseException) -> str:
        text = str(exc).strip() or type(exc).__name__
        if isinstance(exc, FileNotFoundError):
            return f"the codex binary was not found: {text}"
        if self.resuming:
            return f"cannot resume codex thread {self.resuming}: {text}"
        return f"codex failed: {text}"
