"""The Claude runtime: Claude Code (through the Claude Agent SDK) mapped onto the event vocabulary.

One run is one CLI process (the SDK's bundled ``claude``), started in the run's workspace with
its own ``CLAUDE_CONFIG_DIR`` under the chat's state directory, so that the next run of the chat
can resume the session. Nothing of the server's environment or of the repository's ``.claude/``
may steer it: inherited ``ANTHROPIC_*``/``CLAUDE_*`` variables (and the server's own
``AGENTYARD_*``/``OPENAI_*`` secrets) are blanked, and no setting sources are loaded. Operators
pass CLI variables explicitly through ``extra_env``.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import os
import shutil
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agentyard.core import events as ev
from agentyard.core.routing import check_native_model
from agentyard.runtimes import cli_process, statedir
from agentyard.runtimes.base import Availability, Emit, RunOutcome, RunSpec
from agentyard.runtimes.lazy import LazyModule

if TYPE_CHECKING:
    import claude_agent_sdk as sdk
    from claude_agent_sdk.types import SystemPromptPreset
else:
    sdk = LazyModule("claude_agent_sdk")  # imported by the first Claude run

KEY_ENV = "ANTHROPIC_API_KEY"
DEFAULT_BASE_URL = "https://api.anthropic.com"

_FILE_TOOLS = frozenset({"Write", "Edit", "MultiEdit", "NotebookEdit"})

# Inherited variables with these prefixes are blanked for the CLI: the SDK merges its ``env``
# over the server's environment, and e.g. ANTHROPIC_AUTH_TOKEN, ANTHROPIC_MODEL or
# CLAUDE_CODE_USE_BEDROCK would silently redirect or re-model the run, while the server's own
# secrets (AGENTYARD_*, OPENAI_*) must not be readable by the agent's shell.
_BLANKED_PREFIXES = ("ANTHROPIC_", "CLAUDE_", "AGENTYARD_", "OPENAI_")
# ... except the SDK's own protocol variables, which it reads itself or must keep its values.
_SDK_DEFAULTS = {"CLAUDE_CODE_ENTRYPOINT": "sdk-py", "CLAUDE_CODE_SDK_READS_SESSION_STATE": "1"}
_SDK_PREFIX = "CLAUDE_AGENT_SDK_"

_QUIET_ENV = {
    "IS_SANDBOX": "1",  # bypassPermissions refuses to run as root without it
    "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",  # no DNS, /api/hello probe or title call
    "DISABLE_TELEMETRY": "1",
    "DISABLE_ERROR_REPORTING": "1",
    "DISABLE_AUTOUPDATER": "1",
}

_INTERRUPT_SECONDS = 2.0
"""How long a stopped run's CLI gets to acknowledge the interrupt."""
_DISCONNECT_SECONDS = 6.0
"""How long it then gets to exit on its own (flushing the session) before it is killed."""
_STDERR_LINES = 20


@dataclass
class ClaudeRuntime:
    anthropic_base_url: str | None = None
    anthropic_api_key: str | None = None
    default_model: str = "claude-sonnet-4-5"
    max_turns: int | None = None
    system_prompt_append: str | None = None
    extra_env: Mapping[str, str] = field(default_factory=dict)
    """More environment for the CLI (after the defaults, before the run's own)."""
    cli_path: str | None = None
    """The ``claude`` executable; the one bundled with the SDK if not given."""
    name: str = field(default="claude", init=False)

    def check_model(self, model: str | None) -> None:
        """On the provider's own API, another provider's model is a 400 at create time."""
        if self.anthropic_base_url is None:
            check_native_model(self.name, model)

    def availability(self) -> Availability:
        cli = self._cli()
        if cli is None:
            return Availability(
                False, "the Claude Code CLI was not found (reinstall claude-agent-sdk)", None
            )
        if not self.anthropic_api_key:
            return Availability(
                False, f"no API key: set {KEY_ENV} (and ANTHROPIC_BASE_URL for a gateway)", None
            )
        where = self.anthropic_base_url or "the Anthropic API"
        return Availability(True, f"Claude Code via {where}", self.default_model)

    def _cli(self) -> str | None:
        if self.cli_path:
            return self.cli_path if Path(self.cli_path).is_file() else None
        spec = importlib.util.find_spec("claude_agent_sdk")  # without importing it
        origin = spec.origin if spec is not None else None
        if origin is None:
            return shutil.which("claude")
        bundled = Path(origin).parent / "_bundled" / "claude"
        if bundled.is_file():
            return str(bundled)
        return shutil.which("claude")

    def options(self, spec: RunSpec) -> sdk.ClaudeAgentOptions:
        """The SDK options of a run (creates its config directory)."""
        config_dir = statedir.own_dir(spec.state_dir, "claude")
        system_prompt: SystemPromptPreset = {"type": "preset", "preset": "claude_code"}
        if self.system_prompt_append:
            system_prompt["append"] = self.system_prompt_append
        env = self.environment(spec, config_dir)
        cli = self._cli()
        return sdk.ClaudeAgentOptions(
            cwd=str(spec.workspace),
            permission_mode="bypassPermissions",
            setting_sources=[],
            system_prompt=system_prompt,
            model=spec.model or self.default_model,
            resume=spec.resume_session,
            max_turns=self.max_turns,
            env=env,
            cli_path=spec.sandbox.command(cli, env) if cli else self.cli_path,
        )

    def environment(self, spec: RunSpec, config_dir: Path) -> dict[str, str]:
        """What the SDK lays over ``os.environ`` for the CLI (in a sandbox: all it sees)."""
        env: dict[str, str] = {}
        if not spec.sandbox.isolated:
            env = {
                key: _SDK_DEFAULTS.get(key, "")
                for key in os.environ
                if key.startswith(_BLANKED_PREFIXES) and not key.startswith(_SDK_PREFIX)
            }
        env.update(_SDK_DEFAULTS)
        env["CLAUDE_AGENT_SDK_VERSION"] = sdk.__version__
        env.update(_QUIET_ENV)
        model = spec.sandbox.endpoint(
            "anthropic",
            self.anthropic_base_url or DEFAULT_BASE_URL,
            self.anthropic_api_key or "",
            "x-api-key",
        )
        env[KEY_ENV] = model.api_key
        env["ANTHROPIC_BASE_URL"] = model.base_url
        env["CLAUDE_CONFIG_DIR"] = str(config_dir)
        env.update(self.extra_env)
        env.update(spec.env)
        return spec.sandbox.environment(env)

    async def run(self, spec: RunSpec, emit: Emit) -> RunOutcome:
        if not self.anthropic_api_key:
            return RunOutcome(ok=False, error=f"Claude is not configured: set {KEY_ENV}")
        stderr: deque[str] = deque(maxlen=_STDERR_LINES)
        options = self.options(spec)
        options.stderr = stderr.append
        _start_clis_from_a_thread()
        client = sdk.ClaudeSDKClient(options)
        mapper = _Mapper(spec.workspace, emit)
        deadline = asyncio.timeout(spec.timeout_seconds)
        try:
            async with deadline:
                await client.connect()
                await client.query(spec.prompt)
                async for message in client.receive_response():
                    await mapper.handle(message)
        except asyncio.CancelledError:
            # Shielded: a second cancel must not leave the CLI running.
            await asyncio.shield(_stop(client))
            raise
        except sdk.ResultError as exc:
            # Raised when the CLI exits after an error result; the result may be all we have.
            await _disconnect(client)
            if mapper.result is None:
                return mapper.failure(_result_error_text(exc), None, exc.session_id)
        except Exception as exc:
            await _stop(client)
            if isinstance(exc, TimeoutError) and deadline.expired():
                return mapper.failure(f"timed out after {spec.timeout_seconds:g} s", None)
            if isinstance(exc, sdk.CLINotFoundError):
                return mapper.failure(f"the Claude Code CLI was not found: {exc}", None)
            return mapper.failure(f"Claude Code failed: {exc}", stderr)
        else:
            await _disconnect(client)
        return mapper.outcome(spec.prior_totals, stderr)


def _start_clis_from_a_thread() -> None:
    """The SDK's transport starts its CLI as the server's other agents start (see
    :mod:`agentyard.runtimes.cli_process`): not forked from the event loop."""
    from claude_agent_sdk._internal.transport import subprocess_cli

    cli_process.install(subprocess_cli)


async def _stop(client: sdk.ClaudeSDKClient) -> None:
    """Stop the CLI at once: interrupt the turn, close its stdin, kill it if it lingers."""
    transport = getattr(client, "_transport", None)
    process = getattr(transport, "_process", None)  # kept to kill it should close() hang
    with contextlib.suppress(Exception):
        async with asyncio.timeout(_INTERRUPT_SECONDS):
            await client.interrupt()
    await _disconnect(client)
    if process is not None and getattr(process, "returncode", 0) is None:
        with contextlib.suppress(ProcessLookupError, OSError):
            process.kill()


async def _disconnect(client: sdk.ClaudeSDKClient) -> None:
    with contextlib.suppress(Exception):
        async with asyncio.timeout(_DISCONNECT_SECONDS):
            await client.disconnect()


def _result_error_text(exc: sdk.ResultError) -> str:
    return _failure_text(
        exc.subtype, exc.terminal_reason, exc.api_error_status, exc.errors, exc.result
    )


def _failure_text(
    subtype: str | None,
    terminal_reason: str | None,
    api_error_status: int | None,
    errors: list[str] | None,
    result_text: str | None,
) -> str:
    """A readable reason: what the CLI said, then why the loop ended."""
    said = [e.strip() for e in errors or [] if e and e.strip()]
    if result_text and result_text.strip() and result_text.strip() not in said:
        said.append(result_text.strip())
    why = [w for w in (terminal_reason, subtype if subtype != "success" else None) if w]
    if api_error_status is not None:
        why.append(f"HTTP {api_error_status}")
    text = "; ".join(said) or "Claude Code reported an error"
    return f"{text} ({', '.join(dict.fromkeys(why))})" if why else text


class _Mapper:
    """Turns the SDK's messages into events and remembers what the outcome needs."""

    def __init__(self, workspace: Path, emit: Emit) -> None:
        self.workspace = workspace
        self.emit = emit
        self.session_id: str | None = None
        self.result: sdk.ResultMessage | None = None
        self._blocks = 0
        self._tools: dict[str, tuple[str, dict[str, Any]]] = {}

    def _block_id(self, kind: str) -> str:
        self._blocks += 1
        return f"{kind}-{self._blocks}"

    async def handle(self, message: Any) -> None:
        if isinstance(message, sdk.SystemMessage):
            if message.subtype == "init" and message.data.get("session_id"):
                self.session_id = str(message.data["session_id"])
                model = message.data.get("model")
                await self.emit(ev.session_init(self.session_id, str(model) if model else None))
        elif isinstance(message, sdk.AssistantMessage):
            await self._assistant(message)
        elif isinstance(message, sdk.UserMessage):
            await self._tool_results(message)
        elif isinstance(message, sdk.ResultMessage):
            self.result = message
            self.session_id = message.session_id or self.session_id

    async def _assistant(self, message: sdk.AssistantMessage) -> None:
        if message.error is not None and message.model == "<synthetic>":
            return  # the CLI's "API Error: ..." stand-in; the result carries it as the error
        for block in message.content:
            if isinstance(block, sdk.TextBlock) and block.text:
                await self.emit(*ev.text(self._block_id("text"), block.text))
            elif isinstance(block, sdk.ThinkingBlock) and block.thinking:
                await self.emit(*ev.reasoning(self._block_id("reasoning"), block.thinking))
            elif isinstance(block, sdk.ToolUseBlock):
                tool_input = dict(block.input or {})
                self._tools[block.id] = (block.name, tool_input)
                await self.emit(*ev.tool_call(block.id, block.name, tool_input))

    async def _tool_results(self, message: sdk.UserMessage) -> None:
        if not isinstance(message.content, list):
            return
        results = [b for b in message.content if isinstance(b, sdk.ToolResultBlock)]
        # The structured result belongs to the message's (single) tool result.
        structured = message.tool_use_result if len(results) == 1 else None
        for block in results:
            name, tool_input = self._tools.get(block.tool_use_id, ("unknown", {}))
            output: dict[str, Any] = {"content": block.content, "isError": bool(block.is_error)}
            if isinstance(structured, dict):
                # The file tools echo the file's text (content, originalFile): the input has it.
                output.update(
                    (k, v)
                    for k, v in structured.items()
                    if k not in ("content", "originalFile", "isError")
                )
            await self.emit(ev.tool_output(block.tool_use_id, name, output))
            if name in _FILE_TOOLS and not block.is_error:
                changed = self._changed_file(tool_input, structured)
                if changed is not None:
                    await self.emit(ev.files([changed]))

    def _changed_file(
        self, tool_input: Mapping[str, Any], structured: Mapping[str, Any] | None
    ) -> dict[str, Any] | None:
        raw = (structured or {}).get("filePath") or tool_input.get("file_path")
        raw = raw or tool_input.get("notebook_path")
        if not isinstance(raw, str) or not raw:
            return None
        path = Path(raw)
        if not path.is_absolute():
            path = self.workspace / path
        try:
            shown = str(path.resolve().relative_to(self.workspace.resolve()))
        except ValueError:
            shown = str(path)  # outside the workspace: say where
        kind = "add" if (structured or {}).get("type") == "create" else "update"
        return {"path": shown, "kind": kind}

    def failure(
        self, error: str, stderr: deque[str] | None, session_id: str | None = None
    ) -> RunOutcome:
        detail = "\n".join(stderr).strip() if stderr else ""
        if detail:
            error = f"{error}\n{detail}"
        return RunOutcome(ok=False, error=error, session_id=session_id or self.session_id)

    def outcome(self, prior_totals: Mapping[str, Any] | None, stderr: deque[str]) -> RunOutcome:
        result = self.result
        if result is None:
            return self.failure("Claude Code ended without a result", stderr)
        ok = not result.is_error and result.subtype == "success"
        session_id = result.session_id or self.session_id
        total = result.total_cost_usd
        cost = total
        if total is not None and prior_totals and prior_totals.get("sessionId") == session_id:
            prior = prior_totals.get("costUsd")
            if isinstance(prior, (int, float)):
                # The CLI's figure is session-cumulative.
                cost = max(0.0, round(total - prior, 10))
        usage = _usage(result)
        error = None
        if not ok:
            error = _failure_text(
                result.subtype,
                result.terminal_reason,
                result.api_error_status,
                result.errors,
                result.result,
            )
        return RunOutcome(
            ok=ok,
            error=error,
            session_id=session_id,
            usage=usage,
            cost_usd=cost,
            totals={"costUsd": total, "sessionId": session_id},
        )


_USAGE_KEYS = {
    "input_tokens": "inputTokens",
    "output_tokens": "outputTokens",
    "cache_creation_input_tokens": "cacheCreationInputTokens",
    "cache_read_input_tokens": "cacheReadInputTokens",
}


def _usage(result: sdk.ResultMessage) -> dict[str, Any]:
    """This run's token counts (the CLI's ``usage`` covers the run, even after a resume)."""
    raw = result.usage or {}
    usage: dict[str, Any] = {
        name: raw[key] for key, name in _USAGE_KEYS.items() if isinstance(raw.get(key), int)
    }
    usage.update(durationMs=result.duration_ms, numTurns=result.num_turns)
    return usage
