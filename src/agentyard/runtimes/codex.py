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
import shlex
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agentyard.core import events as ev
from agentyard.core.routing import check_native_model
from agentyard.runtimes import statedir
from agentyard.runtimes.base import RUN_MARKER_ENV, Availability, Emit, RunOutcome, RunSpec
from agentyard.runtimes.lazy import LazyModule
from agentyard.runtimes.pricing import ModelPrice, cost_usd, price_for
from agentyard.runtimes.processes import kill_run_processes

if TYPE_CHECKING:
    import openai_codex as codex_sdk
    import openai_codex.models as codex_models
    from openai_codex import AsyncCodex, AsyncThread, AsyncTurnHandle
    from openai_codex.models import Notification
else:
    codex_sdk = LazyModule("openai_codex")  # imported by the first Codex run
    codex_models = LazyModule("openai_codex.models")

KEY_ENV = "OPENAI_API_KEY"
"""The variable operators set for the key; codex itself gets it as ``_PROVIDER_KEY_ENV``."""

DEFAULT_BASE_URL = "https://api.openai.com/v1"
PROVIDER = "agentyard"

_PROVIDER_KEY_ENV = "AGENTYARD_CODEX_API_KEY"
"""The variable the provider's ``env_key`` names; kept out of the agent's shell commands."""

# Inherited variables with these prefixes are blanked for codex: the SDK lays its ``env`` over
# the server's environment, and e.g. OPENAI_BASE_URL or CODEX_HOME would redirect the run,
# while the server's own secrets must not be readable by the agent's shell.
_BLANKED_PREFIXES = ("OPENAI_", "CODEX_", "AGENTYARD_", "ANTHROPIC_", "CLAUDE_")

_TOKEN_FIELDS = (
    "inputTokens",
    "cachedInputTokens",
    "outputTokens",
    "reasoningOutputTokens",
    "totalTokens",
)
"""codex's token counts; its wire spelling is also the usage vocabulary of every runtime."""

_TOOL_ITEMS = frozenset(
    {"commandExecution", "fileChange", "mcpToolCall", "dynamicToolCall", "webSearch"}
)
"""Thread items that are tool calls: a call event at their start, the output at their end."""

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
        mapper = _Mapper(spec.workspace, emit, self.base_url or DEFAULT_BASE_URL)
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


def _params(notification: Notification) -> dict[str, Any]:
    """A notification's params as the wire spells them (camelCase), typed model or not."""
    payload = notification.payload
    if isinstance(payload, codex_models.UnknownNotification):
        return dict(payload.params)
    dump = getattr(payload, "model_dump", None)
    if dump is None:
        return {}
    params: dict[str, Any] = dump(by_alias=True, mode="json")
    return params


def _breakdown(raw: Any) -> dict[str, int]:
    raw = raw if isinstance(raw, dict) else {}
    counts: dict[str, int] = {}
    for key in _TOKEN_FIELDS:
        value = raw.get(key)
        counts[key] = int(value) if isinstance(value, (int, float)) else 0
    return counts


def _shell_command(command: str) -> str:
    """The model's command without codex's ``/bin/bash -c '...'`` wrapper."""
    try:
        argv = shlex.split(command)
    except ValueError:
        return command
    wrapped = len(argv) == 3 and Path(argv[0]).name in _SHELLS and argv[1] in ("-c", "-lc")
    return argv[2] if wrapped else command


_SHELLS = frozenset({"bash", "sh", "zsh"})


class _Mapper:
    """Turns app-server notifications into events and remembers what the outcome needs."""

    def __init__(self, workspace: Path, emit: Emit, provider_url: str) -> None:
        self.workspace = workspace
        self.emit = emit
        self.provider_url = provider_url
        self.thread_id: str | None = None
        self.turn: dict[str, Any] | None = None
        self.errors: list[str] = []
        self.first_usage: dict[str, Any] | None = None
        self.last_usage: dict[str, Any] | None = None
        self._open_texts: set[str] = set()
        self._streamed: set[str] = set()
        self._tools: dict[str, str] = {}
        """Tool calls announced so far: item id -> tool name."""

    async def handle(self, notification: Notification) -> None:
        method = notification.method
        params = _params(notification)
        if method == "item/started":
            await self._started(params.get("item") or {})
        elif method == "item/completed":
            await self._completed(params.get("item") or {})
        elif method == "item/agentMessage/delta":
            await self._delta(str(params.get("itemId")), str(params.get("delta") or ""))
        elif method == "thread/tokenUsage/updated":
            usage = params.get("tokenUsage")
            if isinstance(usage, dict):
                if self.first_usage is None:
                    self.first_usage = usage
                self.last_usage = usage
        elif method == "error":
            error = params.get("error")
            if not params.get("willRetry") and isinstance(error, dict):
                self.errors.append(_error_text(error, self.provider_url))
        elif method == "turn/completed":
            turn = params.get("turn")
            self.turn = turn if isinstance(turn, dict) else {}

    async def _started(self, item: dict[str, Any]) -> None:
        kind, item_id = item.get("type"), str(item.get("id"))
        if kind == "agentMessage":
            await self._open_text(item_id)
        elif kind in _TOOL_ITEMS and (kind != "webSearch" or item.get("query")):
            await self._tool_call(item)  # a search's query may only be known at its end

    async def _completed(self, item: dict[str, Any]) -> None:
        kind, item_id = item.get("type"), str(item.get("id"))
        if kind == "agentMessage":
            text = str(item.get("text") or "")
            if item_id not in self._streamed and text:
                await self._delta(item_id, text)
            if item_id in self._open_texts:
                self._open_texts.discard(item_id)
                await self.emit({"type": ev.TEXT_END, "id": item_id})
        elif kind == "reasoning":
            parts = item.get("summary") or item.get("content") or []
            text = "\n\n".join(str(p) for p in parts if p)
            if text:
                await self.emit(*ev.reasoning(item_id, text))
        elif kind in _TOOL_ITEMS:
            await self._tool_call(item)
            await self._tool_output(item)

    async def _open_text(self, item_id: str) -> None:
        if item_id not in self._open_texts:
            self._open_texts.add(item_id)
            await self.emit({"type": ev.TEXT_START, "id": item_id})

    async def _delta(self, item_id: str, delta: str) -> None:
        if not delta:
            return
        await self._open_text(item_id)
        self._streamed.add(item_id)
        await self.emit({"type": ev.TEXT_DELTA, "id": item_id, "delta": delta})

    async def _tool_call(self, item: dict[str, Any]) -> None:
        item_id = str(item.get("id"))
        if item_id in self._tools:
            return
        name, tool_input = self._tool_input(item)
        self._tools[item_id] = name
        await self.emit(*ev.tool_call(item_id, name, tool_input))

    def _tool_input(self, item: dict[str, Any]) -> tuple[str, dict[str, Any]]:
        kind = item.get("type")
        if kind == "commandExecution":
            command = str(item.get("command") or "")
            return "bash", {"command": _shell_command(command), "cwd": item.get("cwd")}
        if kind == "fileChange":
            changes = [
                {**self._changed(change), "diff": change.get("diff")}
                for change in item.get("changes") or []
                if isinstance(change, dict)
            ]
            return "apply_patch", {"changes": changes}
        if kind == "webSearch":
            return "web_search", {"query": item.get("query")}
        arguments = item.get("arguments")
        tool_input = arguments if isinstance(arguments, dict) else {"arguments": arguments}
        if kind == "mcpToolCall":
            return f"mcp__{item.get('server')}__{item.get('tool')}", tool_input
        return str(item.get("tool") or "tool"), tool_input

    async def _tool_output(self, item: dict[str, Any]) -> None:
        item_id, kind = str(item.get("id")), item.get("type")
        name = self._tools[item_id]
        status = item.get("status")
        output: dict[str, Any]
        if kind == "commandExecution":
            output = {
                "stdout": item.get("aggregatedOutput") or "",
                "exitCode": item.get("exitCode"),
                "status": status,
            }
        elif kind == "fileChange":
            output = {"status": status}
        elif kind == "mcpToolCall":
            error = item.get("error")
            output = {
                "result": item.get("result"),
                "error": error.get("message") if isinstance(error, dict) else None,
                "status": status,
            }
        elif kind == "webSearch":
            output = {"action": item.get("action"), "results": item.get("results")}
        else:
            output = {
                "content": item.get("contentItems"),
                "success": item.get("success"),
                "status": status,
            }
        await self.emit(ev.tool_output(item_id, name, output))
        if kind == "fileChange" and status == "completed":
            changed = [
                self._changed(change)
                for change in item.get("changes") or []
                if isinstance(change, dict)
            ]
            if changed:
                await self.emit(ev.files(changed))

    def _changed(self, change: dict[str, Any]) -> dict[str, Any]:
        kind_info = change.get("kind")
        kind = kind_info.get("type") if isinstance(kind_info, dict) else kind_info
        changed: dict[str, Any] = {
            "path": self._relative(str(change.get("path") or "")),
            "kind": str(kind or "update"),
        }
        move_path = kind_info.get("move_path") if isinstance(kind_info, dict) else None
        if move_path:
            changed["movePath"] = self._relative(str(move_path))
        return changed

    def _relative(self, raw: str) -> str:
        path = Path(raw)
        if not path.is_absolute():
            return raw
        for root in (self.workspace, self.workspace.resolve()):
            with contextlib.suppress(ValueError):
                return str(path.relative_to(root))
        with contextlib.suppress(ValueError, OSError):
            return str(path.resolve().relative_to(self.workspace.resolve()))
        return raw  # outside the workspace: say where

    def failure(self, error: str) -> RunOutcome:
        return RunOutcome(ok=False, error=error, session_id=self.thread_id)

    async def close_texts(self) -> None:
        """End text blocks a failed turn left open."""
        for item_id in sorted(self._open_texts):
            await self.emit({"type": ev.TEXT_END, "id": item_id})
        self._open_texts.clear()

    def outcome(
        self,
        model: str,
        price: ModelPrice,
        prior_totals: Mapping[str, Any] | None,
        seconds: float,
    ) -> RunOutcome:
        usage, totals = self._usage(prior_totals)
        cost = cost_usd(usage, price)
        usage.update(durationMs=int(seconds * 1000), model=model)
        error = self._error()
        return RunOutcome(
            ok=error is None,
            error=error,
            session_id=self.thread_id,
            usage=usage,
            cost_usd=cost,
            totals=totals,
        )

    def _error(self) -> str | None:
        """Why the turn did not complete, or None if it did."""
        reported = self.errors[-1] if self.errors else None
        if self.turn is None:
            return reported or "codex ended the turn without a result"
        status = self.turn.get("status")
        if status == "completed":
            return None
        if status == "failed":
            error = self.turn.get("error")
            said = _error_text(error, self.provider_url) if isinstance(error, dict) else ""
            return said or reported or "the codex turn failed"
        return f"the codex turn ended {status}"

    def _usage(
        self, prior_totals: Mapping[str, Any] | None
    ) -> tuple[dict[str, Any], dict[str, Any] | None]:
        """This run's tokens, and the thread's totals to hand to the next run.

        codex counts per thread. The thread's count before this run is measured as the first
        update's ``total`` minus its ``last`` (the request that caused it); that equals the
        previous run's ``totals`` unless that run ended without reporting them (cancelled),
        in which case it is the right baseline and ``prior_totals`` is not.
        """
        zero = dict.fromkeys(_TOKEN_FIELDS, 0)
        if self.first_usage is None or self.last_usage is None:
            same_thread = prior_totals and prior_totals.get("sessionId") == self.thread_id
            return zero, dict(prior_totals) if same_thread and prior_totals else None
        first_total = _breakdown(self.first_usage.get("total"))
        first_last = _breakdown(self.first_usage.get("last"))
        end_total = _breakdown(self.last_usage.get("total"))
        usage: dict[str, Any] = {
            key: max(0, end_total[key] - max(0, first_total[key] - first_last[key])) for key in zero
        }
        totals: dict[str, Any] = {"sessionId": self.thread_id, **end_total}
        return usage, totals


def _error_text(error: Mapping[str, Any], provider_url: str) -> str:
    """A turn error as a person reads it: the provider's own message where codex kept it."""
    message = str(error.get("message") or "").strip()
    with contextlib.suppress(ValueError, LookupError, TypeError, AttributeError):
        # An HTTP 4xx arrives as the provider's raw JSON body.
        body = json.loads(message)["error"]
        kind = body.get("code") or body.get("type")
        message = str(body["message"]) + (f" ({kind})" if kind else "")
    details = str(error.get("additionalDetails") or "").strip()
    if details and details not in message:
        message = f"{message} ({details})" if message else details
    cause = _cause(error.get("codexErrorInfo"), provider_url)
    if cause:
        message = f"{message} [{cause}]" if message else cause
    return message


_CAUSES = {
    # codex words a provider's HTTP 5xx as "high demand" and drops the body.
    "internalServerError": "the model provider answered with a server error (HTTP 5xx)",
    "serverOverloaded": "the model provider is overloaded",
    "unauthorized": f"the model provider refused the key (HTTP 401): check {KEY_ENV}",
    "rateLimitExceeded": "rate limited by the model provider (HTTP 429)",
    "usageLimitExceeded": "usage limit of the model provider reached",
    "contextWindowExceeded": "the conversation no longer fits the model's context window",
}


def _cause(info: Any, provider_url: str) -> str | None:
    """What codex's ``codexErrorInfo`` says happened (a name, or a one-key object)."""
    if isinstance(info, str):
        return _CAUSES.get(info)
    if isinstance(info, dict) and len(info) == 1:
        name, detail = next(iter(info.items()))
        status = detail.get("httpStatusCode") if isinstance(detail, dict) else None
        if status:
            return f"HTTP {status} from the model provider at {provider_url}"
        if name in ("httpConnectionFailed", "responseStreamConnectionFailed"):
            return f"cannot reach the model provider at {provider_url}"
        return str(name)
    return None
