"""Executes one run: workspace -> runtime -> events -> finalize -> terminal status."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import structlog

from agentyard.core import acp_policy, details, envvars
from agentyard.core import events as ev
from agentyard.core.clock import iso, utcnow
from agentyard.core.events import Event
from agentyard.core.models import Chat, Run
from agentyard.core.redaction import RUNNING, DeltaRedactor, Redactor
from agentyard.core.status import RunStatus
from agentyard.events.log import EventLog
from agentyard.events.writer import EventWriter
from agentyard.guard import RunGuard
from agentyard.metrics import Metrics
from agentyard.runtimes.base import RUN_MARKER_ENV, AgentRuntime, RunOutcome, RunSpec
from agentyard.runtimes.pricing import ModelPrice
from agentyard.runtimes.processes import kill_run_processes
from agentyard.sandbox.base import Sandbox, SandboxRequest
from agentyard.sandbox.none import NoSandbox
from agentyard.store.faults import DatabaseFault, RetryPolicy, public_message
from agentyard.store.store import RunEnded, Store
from agentyard.workspace.workspaces import Prepared, WorkspaceError, Workspaces

log = structlog.get_logger(__name__)

T = TypeVar("T")

_STOP_GRACE_SECONDS = 15.0
"""How long an agent stopped at a limit may take to wind down before it is killed."""

_UNREADABLE_ENV = (
    "the task's environment variables cannot be decrypted (was AGENTYARD_SECRET_KEY changed?); "
    "continue the task with its environmentVariables given again"
)


@dataclass
class RunControl:
    """How a run executing here ends if its task is cancelled."""

    status: RunStatus = RunStatus.CANCELLED
    reason: str = "Cancelled by user"
    detail: str | None = None
    """The run's ``statusDetail`` (e.g. "server shutting down"), beside its ``error``."""
    resolve: Callable[[], tuple[RunStatus, str, str | None] | None] | None = None
    """Asked at cancel time, for queues that learn the cause only then (e.g. a shutdown)."""

    def interrupt(self, reason: str, detail: str | None = None) -> None:
        self.status = RunStatus.INTERRUPTED
        self.reason = reason
        self.detail = detail

    def fail(self, reason: str) -> None:
        self.status = RunStatus.FAILED
        self.reason = reason
        self.detail = None

    def outcome(self) -> tuple[RunStatus, str, str | None]:
        """Status, error and status detail the run ends with."""
        decided = self.resolve() if self.resolve is not None else None
        return decided or (self.status, self.reason, self.detail)


class Runner:
    def __init__(
        self,
        store: Store,
        events: EventLog,
        runtimes: Mapping[str, AgentRuntime],
        workspaces: Workspaces,
        state_root: Path,
        timeout_seconds: float,
        tokens: Callable[[str], Awaitable[str | None]],
        pull_requests: Callable[[Run, Chat, str], Awaitable[dict[str, Any]]] | None = None,
        sandbox: Sandbox | None = None,
        markers: Mapping[str, str] | None = None,
        secrets: envvars.Box | None = None,
        policy: RetryPolicy | None = None,
        event_buffer_bytes: int = 64 * 1024 * 1024,
        prices: Mapping[str, ModelPrice] | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        self.metrics = metrics or Metrics()
        self.prices = prices
        """Token prices over the defaults, for the cost metered at the model proxy."""
        self.policy = policy or RetryPolicy()
        """How long a run rides out a database outage (its writes are retried meanwhile)."""
        self.event_buffer_bytes = event_buffer_bytes
        self._writers: dict[str, EventWriter] = {}
        self.secrets = secrets
        self._redaction: dict[str, DeltaRedactor] = {}
        """The redaction of each run executing here (its secrets, its held-back deltas)."""
        self.sandbox: Sandbox = sandbox or NoSandbox()
        self.markers = dict(markers or {})
        """Environment set in every agent process beside the run id (the installation)."""
        self.tokens = tokens
        self.pull_requests = pull_requests
        self.store = store
        self.events = events
        self.runtimes = runtimes
        self.workspaces = workspaces
        self.state_root = state_root
        self.timeout_seconds = timeout_seconds

    async def execute(self, run: Run, control: RunControl | None = None) -> RunStatus:
        """Run a claimed (``running``) run to its terminal status; never raises but on cancel.

        Cancelling the calling task kills the agent's whole process tree and ends the run
        ``cancelled`` (or as ``control`` says, e.g. ``interrupted`` at shutdown).
        """
        writer = EventWriter(
            self.events, run.run_id, self.policy, self.event_buffer_bytes, run.event_seq
        )
        self._writers[run.run_id] = writer
        try:
            return await self._execute(run, control)
        finally:
            self._redaction.pop(run.run_id, None)
            RUNNING.unregister(run.run_id)
            if self._writers.get(run.run_id) is writer:
                del self._writers[run.run_id]
            await writer.close()

    async def _execute(self, run: Run, control: RunControl | None) -> RunStatus:
        control = control or RunControl()
        bound = log.bind(run_id=run.run_id, chat_id=run.chat_id, agent=run.agent)
        started = run.started_at or utcnow()
        self.metrics.queue_wait.labels(agent=run.agent).observe(
            max(0.0, (started - run.created_at).total_seconds())
        )
        writer = self._writers[run.run_id]
        try:
            await writer.emit(ev.start(run.run_id, iso(started) or ""))
            outcome = await self._run_agent(run, writer)
        except RunEnded:
            # Ended elsewhere (cancelled, or declared dead) while executing here: stop.
            await asyncio.to_thread(kill_run_processes, run.run_id)
            bound.info("run ended elsewhere; stopped")
            status = await self.policy.run(
                lambda: self._status(run.run_id), what="read the run's status", forever=True
            )
            return status or RunStatus.CANCELLED
        except asyncio.CancelledError:
            # Shielded: a second cancel must not leave the run without its terminal status.
            await asyncio.shield(self.stop(run, control))
            bound.info("run stopped", status=control.outcome()[0].value)
            raise
        except DatabaseFault as exc:
            # An outage past the limit, a full buffer or a full disk: the agent stops, and
            # the run ends naming the database as soon as the database takes the write.
            bound.error("run stopped by the database", error=str(exc))
            await asyncio.to_thread(kill_run_processes, run.run_id)
            await self._end(run, RunStatus.FAILED, str(exc), None)
            return RunStatus.FAILED
        except Exception as exc:  # a bug or an unexpected failure: the run must still end
            bound.exception("run crashed")
            await asyncio.to_thread(kill_run_processes, run.run_id)
            await self._end(run, RunStatus.FAILED, public_message(exc), None)
            return RunStatus.FAILED
        status = RunStatus.COMPLETED if outcome.ok else RunStatus.FAILED
        await self._end(run, status, None if outcome.ok else (outcome.error or "failed"), outcome)
        # The run's secrets are still registered here: the log processor redacts them.
        if outcome.ok:
            bound.info("run ended", status=status.value)
        else:
            bound.warning("run failed", status=status.value, error=outcome.error)
        return status

    async def _db(self, op: Callable[[], Awaitable[T]], what: str) -> T:
        """A database call the run depends on, retried across an outage up to the limit."""
        return await self.policy.run(op, what=what)

    async def _run_agent(self, run: Run, writer: EventWriter) -> RunOutcome:
        runtime = self.runtimes.get(run.agent)
        if runtime is None:
            return RunOutcome(ok=False, error=f"runtime {run.agent!r} is not available")
        chat = await self._db(lambda: self.store.get_chat(run.chat_id), "read the chat")
        assert chat is not None
        variables = self._variables(chat)
        if variables is None:
            return RunOutcome(ok=False, error=_UNREADABLE_ENV)
        redaction = self._redaction[run.run_id] = DeltaRedactor(Redactor(variables.values()))
        RUNNING.register(run.run_id, variables.values())
        token = (
            await self._db(lambda: self.tokens(run.user_id), "read the GitHub token")
            if chat.repo_url
            else None
        )
        if chat.repo_url and token is None:
            return RunOutcome(
                ok=False, error="no GitHub token stored: connect GitHub (POST /api/v1/git/config)"
            )
        await writer.emit(status_detail=details.PREPARING)
        try:
            prepared = await self.workspaces.prepare(chat, token)
        except WorkspaceError as exc:
            return RunOutcome(ok=False, error=f"the workspace could not be prepared: {exc}")
        workspace = prepared.path
        # Both with the run's next write (its "agent working" detail): no transaction of
        # their own.
        if chat.workspace_path != str(workspace) or chat.base_branch != prepared.base_branch:
            chat.workspace_path, chat.base_branch = str(workspace), prepared.base_branch
            writer.update_chat(
                chat.chat_id, workspace_path=chat.workspace_path, base_branch=chat.base_branch
            )
        await writer.emit(git={"baseSha": prepared.base_sha})
        previous_id = run.previous_run_id
        previous = (
            await self._db(lambda: self.store.get_run(previous_id), "read the previous run")
            if previous_id
            else None
        )
        same_runtime = previous is not None and previous.agent == run.agent
        state_dir = self.state_root / run.chat_id
        state_dir.mkdir(parents=True, exist_ok=True)
        spec = RunSpec(
            run_id=run.run_id,
            chat_id=run.chat_id,
            prompt=run.prompt,
            model=run.model,
            workspace=workspace,
            state_dir=state_dir,
            resume_session=previous.session_id if same_runtime and previous else None,
            prior_totals=previous.totals if same_runtime and previous else None,
            env={**variables, RUN_MARKER_ENV: run.run_id},
            timeout_seconds=self.timeout_seconds,
            acp_permission=acp_policy.known(run.options.get(acp_policy.OPTION)),
        )

        touched = False
        """Whether the agent reported a file it wrote (its save skips the status)."""

        async def emit(*events: Event) -> None:
            nonlocal touched
            values: dict[str, Any] = {}
            for item in events:
                if item.get("type") == ev.FILES:
                    touched = True
                if item.get("type") == ev.SESSION_INIT and item.get("sessionId"):
                    # Kept with the next write, so that even an interrupted run can be continued.
                    values["session_id"] = str(item["sessionId"])
            # Secrets redacted before anything is stored (deltas may be held back a little).
            redacted = [out for item in events for out in redaction.feed(item)]
            if redacted or values:
                await writer.emit(*redacted, **values)

        guard = self._guard(run)
        request = SandboxRequest(
            run.run_id,
            workspace,
            state_dir,
            marker_env={**self.markers, RUN_MARKER_ENV: run.run_id},
            watch=guard,
        )
        await writer.emit(status_detail=details.WORKING)
        async with self.sandbox.confine(request) as confined:
            outcome = await self._guarded(
                runtime.run(dataclasses.replace(spec, sandbox=confined), emit), guard, writer
            )
        if not confined.reaped:  # else its end killed every process of the run
            await asyncio.to_thread(kill_run_processes, run.run_id)
        # Everything the agent said is stored before the run is judged (or DatabaseFault).
        await writer.flush()
        status = await self._db(lambda: self._status(run.run_id), "read the run's status")
        if status is None or status.terminal:
            raise RunEnded(run.run_id)  # e.g. cancelled: its work is neither saved nor pushed
        # Saved whether the agent succeeded or not: a failed run's partial work is committed
        # (and pushed) too, so that a follow-up can build on it rather than lose it.
        await writer.emit(status_detail=details.SAVING)
        try:
            outcome.git, save_error = await self._finalize(
                run, chat, prepared, token, changed=touched
            )
        except WorkspaceError as exc:
            save_error = str(exc)
        if save_error is not None:
            outcome.ok = False
            outcome.error = f"the agent finished but its work could not be saved: {save_error}"
        return outcome

    def _guard(self, run: Run) -> RunGuard:
        """The run's limits; ``maxDuration`` counts from the run's start."""
        max_duration = run.options.get("maxDuration")
        if isinstance(max_duration, (int, float)):
            elapsed = (utcnow() - run.started_at).total_seconds() if run.started_at else 0.0
            max_duration = max(0.0, float(max_duration) - elapsed)
        else:
            max_duration = None
        max_cost = run.options.get("maxCostUsd")
        return RunGuard(
            max_duration=max_duration,
            max_cost_usd=float(max_cost) if isinstance(max_cost, (int, float)) else None,
            prices=self.prices,
        )

    async def _guarded(
        self, work: Awaitable[RunOutcome], guard: RunGuard, writer: EventWriter
    ) -> RunOutcome:
        """The agent's outcome, unless the guard stops it first (a limit, a rejected key):
        then the agent is ended and the outcome says why."""

        async def notify(event: Event | None, detail: str) -> None:
            await writer.emit(*([event] if event is not None else []), status_detail=detail)

        agent = asyncio.ensure_future(work)
        watcher = asyncio.create_task(guard.watch(notify), name="run-guard")
        try:
            await asyncio.wait({agent, watcher}, return_when=asyncio.FIRST_COMPLETED)
            ended_by_itself = agent.done()
        finally:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher
            if not agent.done():
                agent.cancel()
                # The runtime ends its agent as on a cancel; a stuck one is killed after.
                with contextlib.suppress(asyncio.CancelledError, Exception, TimeoutError):
                    await asyncio.wait_for(agent, _STOP_GRACE_SECONDS)
        if ended_by_itself:
            return agent.result()
        stop = guard.stopped
        assert stop is not None
        return RunOutcome(
            ok=False,
            error=stop.error,
            detail=stop.detail,
            cost_usd=guard.cost_usd if guard.metered else None,
        )

    async def _finalize(
        self, run: Run, chat: Chat, prepared: Prepared, token: str | None, *, changed: bool
    ) -> tuple[dict[str, Any], str | None]:
        """Commit the agent's changes (and push them, for a repository); the run's diff
        statistics, commits and pull request, and why the push failed if it did.
        ``changed``: the agent reported writing a file (a hint: the tree may still be
        clean)."""
        title = (run.prompt.strip().splitlines() or ["Agent run"])[0][:72]
        message = f"{title}\n\nAgentyard run {run.run_id}"
        saved = await self.workspaces.commit(
            prepared.path, message, changed=changed, base=prepared.base_sha
        )
        stats = await self.workspaces.stats(prepared.path, prepared.base_sha, saved)
        if chat.repo_url and stats["commits"]:
            try:
                await self.workspaces.publish(chat, prepared.path, token)
            except WorkspaceError as exc:
                return stats, str(exc)
            stats["pushed"] = True
            if run.options.get("createPullRequest") and self.pull_requests is not None:
                assert token is not None
                stats.update(await self.pull_requests(run, chat, token))
        return stats, None

    async def _status(self, run_id: str) -> RunStatus | None:
        current = await self.store.get_run(run_id)
        return None if current is None else current.status

    async def stop(self, run: Run, control: RunControl) -> None:
        """Kill what the run started and end it as ``control`` says (no-op if it has ended)."""
        await asyncio.to_thread(kill_run_processes, run.run_id)
        status, reason, detail = control.outcome()
        await self._end(run, status, reason, None, status_detail=detail)

    async def _end(
        self,
        run: Run,
        status: RunStatus,
        error: str | None,
        outcome: RunOutcome | None,
        *,
        status_detail: str | None = None,
    ) -> None:
        redactor = await self.policy.run(
            lambda: self._redactor(run, needed=error is not None or outcome is not None),
            what="read the chat",
            forever=True,
        )
        redaction = self._redaction.get(run.run_id)
        held = redaction.flush() if redaction is not None else []
        await self._store_last_events(run, held)
        values: dict[str, Any] = {}
        if outcome is not None:
            values.update(usage=outcome.usage, cost_usd=outcome.cost_usd, totals=outcome.totals)
            if outcome.git is not None:
                values["git"] = redactor.redact_value(outcome.git)
            if outcome.session_id:
                values["session_id"] = outcome.session_id
        error = redactor.redact(error) if error else error
        if outcome is not None and outcome.detail:
            status_detail = status_detail or outcome.detail
        # A terminal write is retried until it lands (also past a full disk): a run must
        # never stay ``running`` after its executor let go of it.
        ended = await self.policy.run(
            lambda: self.events.finish(
                run.run_id, status, error=error, status_detail=status_detail, **values
            ),
            what="end the run",
            forever=True,
        )
        if ended:
            seconds = (utcnow() - run.started_at).total_seconds() if run.started_at else None
            cost = outcome.cost_usd if outcome is not None else None
            self.metrics.run_ended(run.agent, status.value, seconds, cost)

    async def _store_last_events(self, run: Run, held: list[Event]) -> None:
        """What the run's writer still holds goes before ``finish``, if it can be stored."""
        writer = self._writers.get(run.run_id)
        try:
            if writer is not None:
                if held:
                    await writer.emit(*held)
                await writer.flush()
            elif held:
                await self.policy.run(
                    lambda: self.events.append(run.run_id, *held), what="append events"
                )
        except RunEnded:
            pass  # ended elsewhere: the finish is a no-op too
        except Exception as exc:  # e.g. DatabaseFault: the run ends without them
            log.warning(
                "events lost at the end of a run", run_id=run.run_id, error=public_message(exc)
            )
            if writer is not None:
                writer.discard()

    def _variables(self, chat: Chat) -> dict[str, str] | None:
        """The chat's environment variables in clear; None when they cannot be decrypted."""
        if chat.env_encrypted is None:
            return {}
        if self.secrets is None:
            return None
        return envvars.unseal(self.secrets, chat.env_encrypted)

    async def _redactor(self, run: Run, needed: bool) -> Redactor:
        """The run's redactor: its execution's here, else one read from its chat."""
        redaction = self._redaction.get(run.run_id)
        if redaction is not None:
            return redaction.redactor
        chat = await self.store.get_chat(run.chat_id) if needed else None
        variables = self._variables(chat) if chat is not None else None
        return Redactor((variables or {}).values())
