"""The command runtime: any CLI agent (aider, gemini-cli, goose, a script) as a run.

A command is an argv template configured by name; ``{prompt}`` is replaced by the prompt as
one argument (never through a shell), the prompt is also in ``AGENTYARD_PROMPT`` and, if the
command asks for it, on stdin. Output lines become text events; exit 0 completes the run.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from agentyard.core import events as ev
from agentyard.core.errors import InvalidInput
from agentyard.core.spawning import Process, kill_group, start_process
from agentyard.runtimes.base import Availability, Emit, RunOutcome, RunSpec
from agentyard.runtimes.processes import kill_run_processes

_STDERR_TAIL = 20
# The server's own configuration and provider credentials never reach a command.
_PRIVATE_PREFIXES = ("AGENTYARD_", "ANTHROPIC_", "OPENAI_", "CODEX_", "CLAUDE_")
_CHUNK = 65536
_LINE_MAX = 1_048_576
_DRAIN_SECONDS = 1.0
"""How long output is read after the agent exits before what holds it open is killed."""


class CommandSpec(BaseModel):
    argv: list[str] = Field(min_length=1)
    stdin: bool = False
    timeout_seconds: float = Field(default=1800.0, gt=0)
    env: dict[str, str] = Field(default_factory=dict)


@dataclass
class CommandRuntime:
    commands: Mapping[str, CommandSpec]
    default: str | None = None
    models: Mapping[str, tuple[str, str, tuple[str, str, str]]] = field(default_factory=dict)
    """Model providers a confined command may use: route -> (base URL variable, key
    variable, (upstream URL, real key, auth style)); handed over through the model proxy."""
    name: str = field(default="command", init=False)

    def availability(self) -> Availability:
        if not self.commands:
            return Availability(
                False,
                "no commands configured (set AGENTYARD_COMMANDS or AGENTYARD_COMMANDS_FILE)",
                None,
            )
        return Availability(True, "commands: " + ", ".join(sorted(self.commands)), self._default())

    def _default(self) -> str | None:
        return self.default or (next(iter(self.commands)) if self.commands else None)

    def check_model(self, model: str | None) -> None:
        """A command run's ``model`` names a configured command."""
        name = model or self._default()
        if name is None or name not in self.commands:
            known = ", ".join(sorted(self.commands)) or "none configured"
            raise InvalidInput(f"unknown command {model!r} for agent 'command' (commands: {known})")

    async def run(self, spec: RunSpec, emit: Emit) -> RunOutcome:
        name = spec.model or self._default()
        command = self.commands.get(name or "")
        if command is None:
            return RunOutcome(ok=False, error=f"unknown command {name!r}")
        argv = [arg.replace("{prompt}", spec.prompt) for arg in command.argv]
        env: dict[str, str] = {}
        if not spec.sandbox.isolated:
            env = {k: v for k, v in os.environ.items() if not k.startswith(_PRIVATE_PREFIXES)}
        else:
            # Confined, a command may reach the configured models, through the proxy only.
            for route, (url_env, key_env, upstream) in self.models.items():
                model = spec.sandbox.endpoint(route, *upstream)
                env[url_env], env[key_env] = model.base_url, model.api_key
        env.update(command.env)
        env.update(spec.env)
        env["AGENTYARD_PROMPT"] = spec.prompt
        env = spec.sandbox.environment(env)
        try:
            argv[0] = spec.sandbox.command(argv[0], env)
        except OSError as exc:
            return RunOutcome(ok=False, error=f"cannot confine {argv[0]!r}: {exc}")
        timeout = min(command.timeout_seconds, spec.timeout_seconds)
        started = time.monotonic()
        try:
            proc = await start_process(
                argv,
                cwd=spec.workspace,
                env=env,
                stdin_data=spec.prompt.encode() if command.stdin else None,
            )
        except OSError as exc:
            return RunOutcome(ok=False, error=f"cannot start {argv[0]!r}: {exc.strerror or exc}")
        tail: deque[str] = deque(maxlen=_STDERR_TAIL)
        assert proc.stdout is not None and proc.stderr is not None
        read = _Progress()
        pumps = [
            asyncio.create_task(_pump(proc.stdout, "stdout", emit, None, read)),
            asyncio.create_task(_pump(proc.stderr, "stderr", emit, tail, read)),
        ]
        try:
            async with asyncio.timeout(timeout):
                code = await _exit_code(proc, pumps)
                await _drain(proc, pumps, spec.run_id, read)
        except TimeoutError:
            kill_group(proc.pid)
            await proc.wait()
            return RunOutcome(ok=False, error=f"command {name!r} timed out after {timeout:g} s")
        except asyncio.CancelledError:
            kill_group(proc.pid)
            with contextlib.suppress(Exception):
                await asyncio.shield(proc.wait())
            raise
        finally:
            if proc.returncode is None:
                kill_group(proc.pid)
            for pump in pumps:
                pump.cancel()
            await asyncio.gather(*pumps, return_exceptions=True)
        usage = {"durationMs": int((time.monotonic() - started) * 1000)}
        if code == 0:
            return RunOutcome(ok=True, usage=usage, cost_usd=0.0)
        detail = "\n".join(tail).strip()
        error = f"command {name!r} exited with code {code}" + (f": {detail}" if detail else "")
        return RunOutcome(ok=False, error=error, usage=usage, cost_usd=0.0)


async def _exit_code(proc: Process, pumps: list[asyncio.Task[None]]) -> int:
    """The agent's exit code, once its own process has exited (not once its output is
    closed: a daemon it started may keep that open). A pump's failure (its events could not
    be written) is raised at once."""
    waiter = asyncio.ensure_future(proc.wait())
    pending: set[asyncio.Future[Any]] = {waiter, *pumps}
    try:
        while not waiter.done():
            done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
            for finished in done:
                finished.result()
    finally:
        waiter.cancel()
    return waiter.result()


class _Progress:
    """What the pumps are doing: a drain goes on while they read or store output."""

    def __init__(self) -> None:
        self.chunks = 0
        self.reading = 0
        """Pumps waiting for output (not storing what they read)."""


async def _drain(
    proc: Process,
    pumps: list[asyncio.Task[None]],
    run_id: str,
    read: _Progress,
) -> None:
    """After the agent's exit, what it wrote is read to the end, however long that takes
    while output keeps coming (a busy server stores it slowly: nothing may be cut). If the
    output stays open and silent for a moment, something the agent left behind holds it:
    the run's remaining processes are killed (its process group, and every process carrying
    the run's marker), and what is left is read to the end."""
    if await _until_silent(pumps, read):
        kill_group(proc.pid)
        await asyncio.to_thread(kill_run_processes, run_id)
        await _until_silent(pumps, read)
    for pump in pumps:
        if pump.done():
            pump.result()  # a failure to write its events


async def _until_silent(pumps: list[asyncio.Task[None]], read: _Progress) -> bool:
    """Wait for the pumps to reach the end of their streams; True if they are still open
    after ``_DRAIN_SECONDS`` in which nothing came (every open pump waiting for output)."""
    while True:
        before = read.chunks
        _, pending = await asyncio.wait(pumps, timeout=_DRAIN_SECONDS)
        if not pending:
            return False
        if read.chunks == before and read.reading == len(pending):
            return True


async def _pump(
    stream: asyncio.StreamReader,
    block_id: str,
    emit: Emit,
    tail: deque[str] | None,
    read: _Progress,
) -> None:
    """Each output line as a text delta. Read in chunks: a line longer than a chunk (or
    with no newline at all) is still delivered, in pieces of at most ``_LINE_MAX``."""
    opened = False
    pending = b""
    while True:
        read.reading += 1
        try:
            chunk = await stream.read(_CHUNK)
        finally:
            read.reading -= 1
        read.chunks += 1
        if chunk:
            pending += chunk
            *lines, pending = pending.split(b"\n")
            pieces = [line + b"\n" for line in lines]
            if len(pending) > _LINE_MAX:
                pieces.append(pending)
                pending = b""
        else:
            pieces = [pending] if pending else []
        for raw in pieces:
            text = raw.decode(errors="replace")
            if tail is not None:
                tail.append(text.rstrip("\n"))
            if not opened:
                await emit({"type": ev.TEXT_START, "id": block_id})
                opened = True
            await emit({"type": ev.TEXT_DELTA, "id": block_id, "delta": text})
        if not chunk:
            break
    if opened:
        await emit({"type": ev.TEXT_END, "id": block_id})


def load_commands(raw_json: str | None, file: Path | None) -> dict[str, CommandSpec]:
    """Commands from a JSON file and/or a JSON string: ``{"name": {"argv": [...], ...}}``."""
    import json

    merged: dict[str, object] = {}
    if file is not None:
        merged.update(json.loads(file.read_text()))
    if raw_json:
        merged.update(json.loads(raw_json))
    return {name: CommandSpec.model_validate(value) for name, value in merged.items()}
