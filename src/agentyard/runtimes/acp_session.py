"""One ACP agent process and its connection, on the official Python SDK (``acp``).

The process is started here, not by the SDK's ``spawn_agent_process``: it must be in its own
process group (cancel kills the whole tree), get exactly the environment the sandbox allows
(the SDK would add the server's ``HOME``/``PATH``), have its stderr drained (a full pipe
would block a chatty agent) and read with no practical line limit (asyncio's default of
64 KiB kills the connection on the first large message).

Updates are taken from the raw JSON-RPC stream (the connection's observer), in arrival order,
and mapped leniently by :class:`~agentyard.runtimes.acp_events.AcpMapper`; requests and
their typed answers go through the SDK. Every wait is bounded by an idle watchdog: an agent
that sends nothing (no update, no reply) for ``idle_seconds`` fails the run.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar, cast

from agentyard.core.acp_policy import Policy as Policy  # re-exported for its users
from agentyard.core.spawning import kill_group
from agentyard.runtimes.acp_events import AcpMapper
from agentyard.runtimes.lazy import LazyModule
from agentyard.runtimes.processes import kill_run_processes

if TYPE_CHECKING:
    import acp
    import acp.connection as acp_connection
    import acp.schema as acp_schema
    from acp.connection import StreamEvent
    from acp.schema import (
        AllowedOutcome,
        DeniedOutcome,
        PermissionOption,
        RequestPermissionResponse,
        ToolCallUpdate,
    )
else:
    acp = LazyModule("acp")  # imported by the first ACP run
    acp_connection = LazyModule("acp.connection")
    acp_schema = LazyModule("acp.schema")

LINE_LIMIT = 1 << 30
"""The reader's line limit (1 GiB): in effect, lines of any length."""
_STDERR_LINES = 20
_CLOSE_SECONDS = 2.0
"""How long a finished agent gets to exit on stdin EOF before its group is killed."""

_READ_KINDS = frozenset({"read", "search", "think"})

T = TypeVar("T")


class AcpFailure(Exception):
    """The run fails with this message (already in words a person reads)."""


class _Flush:
    """A marker in the update queue: set once everything before it has been mapped."""

    def __init__(self) -> None:
        self.done = asyncio.Event()


def decide(
    policy: Policy, tool_call: ToolCallUpdate, workspace: Path
) -> tuple[bool, dict[str, Any]]:
    """Whether the policy allows a tool call, and what the audit record says about it."""
    kind = tool_call.kind or "other"
    paths = [loc.path for loc in tool_call.locations or []]
    if policy == "allow":
        allowed = True
    elif policy == "deny":
        allowed = False
    elif policy == "read-only":
        allowed = kind in _READ_KINDS
    else:  # workspace: anything confined to the workspace (commands run in the sandbox)
        allowed = all(_inside(Path(p), workspace) for p in paths)
    record = {
        "toolCallId": tool_call.tool_call_id,
        "title": tool_call.title,
        "kind": kind,
        "locations": paths,
        "policy": policy,
    }
    return allowed, record


def choose(options: list[PermissionOption], allowed: bool) -> PermissionOption | None:
    """The option of the wanted kind (once before always), never chosen by position."""
    wanted = ("allow_once", "allow_always") if allowed else ("reject_once", "reject_always")
    for kind in wanted:
        for option in options:
            if option.kind == kind:
                return option
    return None


def _inside(path: Path, workspace: Path) -> bool:
    if not path.is_absolute():
        path = workspace / path
    resolved = Path(os.path.normpath(path))
    for root in (workspace, workspace.resolve()):
        if resolved == root or root in resolved.parents:
            return True
    return False


class _Client:
    """The client side the agent sees: permission requests only. No ``fs/*`` or
    ``terminal/*`` (not advertised, and the SDK answers them "method not found")."""

    def __init__(self, session: AcpSession) -> None:
        self.session = session

    async def session_update(self, session_id: str, update: Any, **kwargs: Any) -> None:
        return None  # mapped from the raw stream (see AcpSession._observe)

    async def request_permission(
        self,
        options: list[PermissionOption],
        session_id: str,
        tool_call: ToolCallUpdate,
        **kwargs: Any,
    ) -> RequestPermissionResponse:
        return await self.session.permission(options, session_id, tool_call)


class AcpSession:
    """The agent process, its connection, and the ordered stream of its updates."""

    def __init__(
        self,
        argv: list[str],
        env: Mapping[str, str],
        cwd: Path,
        mapper: AcpMapper,
        *,
        label: str,
        run_id: str | None,
        idle_seconds: float,
        policy: Policy,
    ) -> None:
        self.argv, self.env, self.cwd = argv, dict(env), cwd
        self.mapper = mapper
        self.label = label
        self.run_id = run_id
        self.idle_seconds = idle_seconds
        self.policy = policy
        self.session_id: str | None = None
        self.replaying = False
        """Loading a session: its replayed history is not this run's output."""
        self.cancelling = False
        self.stderr: deque[str] = deque(maxlen=_STDERR_LINES)
        self.proc: asyncio.subprocess.Process | None = None
        self.conn: Any = None
        self._last_seen = time.monotonic()
        self._replayed_at = 0.0
        self._known = asyncio.Event()
        self._queue: asyncio.Queue[Any] = asyncio.Queue()
        self._tasks: list[asyncio.Task[None]] = []
        self.pending: asyncio.Task[Any] | None = None
        """The request being waited for (kept so that a cancel can wait for its answer)."""

    # -- process

    async def start(self) -> None:
        try:
            self.proc = await asyncio.create_subprocess_exec(
                *self.argv,
                cwd=self.cwd,
                env=self.env,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                limit=LINE_LIMIT,
                start_new_session=True,
            )
        except OSError as exc:
            raise AcpFailure(f"cannot start {self.label}: {exc.strerror or exc}") from exc
        assert self.proc.stdin is not None and self.proc.stdout is not None
        client = cast(acp.Client, _Client(self))
        self.conn = acp.connect_to_agent(
            client, self.proc.stdin, self.proc.stdout, observers=[self._observe]
        )
        self._tasks = [
            asyncio.create_task(self._drain_stderr()),
            asyncio.create_task(self._consume()),
        ]

    async def _drain_stderr(self) -> None:
        assert self.proc is not None and self.proc.stderr is not None
        with contextlib.suppress(Exception):
            while True:
                chunk = await self.proc.stderr.read(65536)
                if not chunk:
                    return
                for line in chunk.decode(errors="replace").splitlines():
                    if line.strip():
                        self.stderr.append(line[:2000])

    async def close(self, *, kill: bool) -> None:
        """End the process (on stdin EOF, briefly, unless ``kill``) and everything it began."""
        proc = self.proc
        if proc is not None and proc.returncode is None and not kill:
            with contextlib.suppress(Exception):
                assert proc.stdin is not None
                proc.stdin.close()
                await asyncio.wait_for(proc.wait(), _CLOSE_SECONDS)
        if proc is not None:
            kill_group(proc.pid)
        if self.run_id:
            # Commands the agent started may have left its process group.
            with contextlib.suppress(Exception):
                await asyncio.to_thread(kill_run_processes, self.run_id)
        if self.conn is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.conn.close(), _CLOSE_SECONDS)
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(BaseException):
                await task
        if proc is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(proc.wait(), _CLOSE_SECONDS)

    def exit_detail(self) -> str:
        code = self.proc.returncode if self.proc is not None else None
        said = "\n".join(self.stderr).strip()
        text = f"{self.label} exited" + (f" with code {code}" if code is not None else "")
        return text + (f": {said}" if said else "")

    # -- the update stream

    def _observe(self, event: StreamEvent) -> None:
        if event.direction != acp_connection.StreamDirection.INCOMING:
            return
        self._last_seen = time.monotonic()
        message = event.message
        if message.get("method") == "session/update" and "id" not in message:
            params = message.get("params")
            if isinstance(params, dict):
                self._queue.put_nowait(params)

    async def _consume(self) -> None:
        while True:
            item = await self._queue.get()
            if isinstance(item, _Flush):
                item.done.set()
            elif isinstance(item, tuple):
                await self.mapper.permission(*item)
            else:
                # An update may arrive before the session/new answer that names its session.
                await self._known.wait()
                if item.get("sessionId") != self.session_id:
                    continue  # another (or a forged) session's: not this run's
                if self.replaying:
                    self._replayed_at = time.monotonic()
                    continue
                await self.mapper.update(item.get("update"))

    def adopt(self, session_id: str) -> None:
        self.session_id = session_id
        self._known.set()

    async def flush(self) -> None:
        """Wait until every update received so far has been mapped."""
        marker = _Flush()
        self._queue.put_nowait(marker)
        await marker.done.wait()

    async def settle_replay(self, quiet: float = 0.3, limit: float = 5.0) -> None:
        """After ``session/load``: some agents replay history after answering, so updates
        are still dropped until the stream has been quiet a moment."""
        started = time.monotonic()
        await self.flush()
        while time.monotonic() - started < limit:
            last = max(self._replayed_at, self._last_seen)
            if time.monotonic() - last >= quiet:
                break
            await asyncio.sleep(quiet / 3)
            await self.flush()
        self.replaying = False

    # -- requests

    async def call(self, request: Callable[[], Awaitable[T]], what: str) -> T:
        """One request, bounded by the idle watchdog; a dead agent is a failure in words."""
        task: asyncio.Task[T] = asyncio.ensure_future(request())
        self.pending = task
        self._last_seen = time.monotonic()
        tick = max(0.05, min(1.0, self.idle_seconds / 4))
        try:
            while not task.done():
                await asyncio.wait({task}, timeout=tick)
                idle = time.monotonic() - self._last_seen
                if not task.done() and idle >= self.idle_seconds:
                    task.cancel()
                    raise AcpFailure(
                        f"{self.label} sent nothing for {self.idle_seconds:g} s while {what} "
                        "(no update and no reply; AGENTYARD_ACP_IDLE_SECONDS)"
                    )
            try:
                return task.result()
            except ConnectionError as exc:
                if self.proc is not None:
                    with contextlib.suppress(Exception):
                        await asyncio.wait_for(self.proc.wait(), 1.0)
                raise AcpFailure(f"{self.exit_detail()} (while {what})") from exc
        finally:
            if self.pending is task and task.done():
                self.pending = None

    async def permission(
        self, options: list[PermissionOption], session_id: str, tool_call: ToolCallUpdate
    ) -> RequestPermissionResponse:
        """Answer by the policy, by option kind; every request is answered."""
        allowed, record = decide(self.policy, tool_call, self.cwd)
        option = (
            None if self.cancelling or session_id != self.session_id else choose(options, allowed)
        )
        if option is None:
            record["decision"] = "cancelled"
            outcome: AllowedOutcome | DeniedOutcome = acp_schema.DeniedOutcome(outcome="cancelled")
        else:
            record["decision"] = "allow" if allowed else "reject"
            record["optionId"] = option.option_id
            outcome = acp_schema.AllowedOutcome(outcome="selected", option_id=option.option_id)
        raw = tool_call.model_dump(mode="json", by_alias=True, exclude_none=True)
        self._queue.put_nowait((record, raw))
        return acp_schema.RequestPermissionResponse(outcome=outcome)

    async def cancel(self, grace: float) -> None:
        """``session/cancel``, a short grace for the turn to end, then (by the caller) the
        process tree."""
        self.cancelling = True
        if self.conn is None or self.session_id is None:
            return
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.conn.cancel(session_id=self.session_id), 1.0)
        pending = self.pending
        if pending is not None and not pending.done():
            with contextlib.suppress(BaseException):
                await asyncio.wait_for(asyncio.shield(pending), grace)
