"""The use cases: create, continue, cancel, rename, get, list, logs, stream. No HTTP, no SQL."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

import structlog

from agentyard.core import acp_policy, details, envvars, idempotency, ids
from agentyard.core.acp_policy import Policy
from agentyard.core.clock import utcnow
from agentyard.core.errors import Conflict, Forbidden, InvalidInput, NotFound
from agentyard.core.models import Chat, Message, Run, StoredEvent
from agentyard.core.redaction import Redactor
from agentyard.core.repo_rules import branch_name
from agentyard.core.routing import resolve_agent
from agentyard.core.status import RunStatus
from agentyard.events.log import EventLog
from agentyard.queue.base import TaskQueue
from agentyard.receipts import Receipts
from agentyard.runtimes.base import AgentRuntime
from agentyard.store.store import Store
from agentyard.task_limits import TaskLimits
from agentyard.workspace.workspaces import WorkspaceError, Workspaces

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class NewTask:
    prompt: str
    model: str | None = None
    agent: str | None = None
    title: str | None = None
    repo_url: str | None = None
    selected_branch: str | None = None
    create_pull_request: bool = False
    env: Mapping[str, str] | None = field(default=None, repr=False)
    """Environment variables for the agent (secrets): sealed on the chat, redacted."""
    max_duration: float | None = None
    """``maxDuration``: seconds the run may execute before it is stopped (work saved)."""
    max_cost_usd: float | None = None
    """``maxCostUsd``: what its model use may cost before it is stopped (work saved)."""
    webhook_url: str | None = None
    """The task's own webhook; ``webhook_secret`` signs it (sealed on the chat)."""
    webhook_secret: str | None = field(default=None, repr=False)
    acp_permission: Policy | None = None
    """``acpPermission``: how an ACP agent's permission requests are answered in this task
    (and its follow-ups), instead of the server's policy."""


class WebhookUrlPolicy(Protocol):
    async def check(self, url: str, field: str = "url") -> None:
        """InvalidInput naming the broken rule."""
        ...


def _options(task: NewTask) -> dict[str, Any]:
    options: dict[str, Any] = {"createPullRequest": True} if task.create_pull_request else {}
    if task.acp_permission is not None:
        options[acp_policy.OPTION] = task.acp_permission
    return options


class RepoPolicy(Protocol):
    async def check(self, user_id: str, repo_url: str) -> str:
        """The normalised URL, or InvalidInput naming the broken rule."""
        ...


@dataclass(frozen=True)
class AgentChoice:
    agent: str | None
    model: str | None


@dataclass(frozen=True)
class Continuation:
    prompt: str
    model: str | None = None
    agent: str | None = None
    env: Mapping[str, str] | None = field(default=None, repr=False)
    """Laid over the chat's environment variables (a later value wins)."""
    max_duration: float | None = None
    """As for a new task; without it, the previous run's limit carries over."""
    max_cost_usd: float | None = None
    acp_permission: Policy | None = None
    """As for a new task; without it, the previous run's policy carries over."""


@dataclass
class TaskView:
    run: Run
    chat: Chat
    messages: list[Message] = field(default_factory=list)


@dataclass(frozen=True)
class CancelResult:
    success: bool
    status: RunStatus
    message: str


class Service:
    def __init__(
        self,
        store: Store,
        events: EventLog,
        queue: TaskQueue,
        runtimes: Mapping[str, AgentRuntime],
        workspaces: Workspaces,
        repos: RepoPolicy | None = None,
        secrets: envvars.Box | None = None,
        limits: TaskLimits | None = None,
        webhook_urls: WebhookUrlPolicy | None = None,
    ) -> None:
        self.webhook_urls = webhook_urls
        self.limits = limits or TaskLimits()
        self.secrets = secrets
        self.workspaces = workspaces
        self.repos = repos
        self.store = store
        self.events = events
        self.queue = queue
        self.runtimes = runtimes
        self.agents = tuple(runtimes)
        self.receipts = Receipts(store, secrets)

    def _resolve(self, agent: str | None, model: str | None) -> str:
        chosen = resolve_agent(agent, model, self.agents)
        check = getattr(self.runtimes[chosen], "check_model", None)
        if check is not None:
            check(model)
        return chosen

    # -- commands -------------------------------------------------------------------------------

    async def create_task(
        self, user_id: str, task: NewTask, receipt: idempotency.Receipt | None = None
    ) -> Run:
        with self.receipts.flight(user_id, receipt):
            return await self._create_task(user_id, task, receipt)

    async def _create_task(
        self, user_id: str, task: NewTask, receipt: idempotency.Receipt | None
    ) -> Run:
        agent = self._resolve(task.agent, task.model)
        limits = self.limits.chosen(task.max_duration, task.max_cost_usd, None)
        await self.limits.check_queue_room(self.store, user_id, 1)
        repo_url = await self._check_repo(user_id, task)
        hook = await self._webhook(task)
        sealed = self._seal(task.env)
        now = utcnow()
        chat = _new_chat(user_id, task, sealed, now)
        chat.webhook_url, chat.webhook_secret_sealed = hook
        run = Run.queued(
            chat.chat_id, user_id, agent, task.model, task.prompt, utcnow(),
            options=_options(task) | limits,
        )  # fmt: skip
        self._attach_repo(chat, run, task, repo_url, None)
        async with self.receipts.keeping(user_id, receipt, [run]) as record:
            await self.store.create_run(
                run,
                run.user_message(),
                new_chat=chat,
                on_insert=self.queue.in_transaction,
                receipt=record,
            )
        await self.queue.enqueued(run.run_id)
        return run

    async def create_group(
        self,
        user_id: str,
        task: NewTask,
        choices: list[AgentChoice],
        receipt: idempotency.Receipt | None = None,
    ) -> tuple[str, list[Run]]:
        """One prompt to 2-5 agents: a run, chat and workspace each, one group id."""
        with self.receipts.flight(user_id, receipt):
            return await self._create_group(user_id, task, choices, receipt)

    async def _create_group(
        self,
        user_id: str,
        task: NewTask,
        choices: list[AgentChoice],
        receipt: idempotency.Receipt | None,
    ) -> tuple[str, list[Run]]:
        if not 2 <= len(choices) <= 5:
            raise InvalidInput(f"'selectedAgents' must have 2 to 5 entries (got {len(choices)})")
        agents = [self._resolve(c.agent, c.model) for c in choices]
        limits = self.limits.chosen(task.max_duration, task.max_cost_usd, None)
        await self.limits.check_queue_room(self.store, user_id, len(choices))
        repo_url = await self._check_repo(user_id, task)
        hook = await self._webhook(task)  # every run of the group reports to it
        sealed = self._seal(task.env)  # every run of the group gets the same variables
        group_id = ids.new_group_id()
        now = utcnow()
        items: list[tuple[Run, Message, Chat]] = []
        for index, (agent, choice) in enumerate(zip(agents, choices, strict=True)):
            chat = _new_chat(user_id, task, sealed, now)
            chat.webhook_url, chat.webhook_secret_sealed = hook
            run = Run.queued(
                chat.chat_id, user_id, agent, choice.model, task.prompt, utcnow(),
                options={**_options(task), **limits, "groupIndex": index},
            )  # fmt: skip
            run.group_id = group_id
            self._attach_repo(chat, run, task, repo_url, f"{agent}-{index + 1}")
            items.append((run, run.user_message(), chat))
        async with self.receipts.keeping(user_id, receipt, [run for run, _, _ in items]) as record:
            await self.store.create_group_runs(
                group_id, task.prompt, items, on_insert=self.queue.in_transaction, receipt=record
            )
        for run, _, _ in items:
            await self.queue.enqueued(run.run_id)
        return group_id, [run for run, _, _ in items]

    async def continue_task(
        self,
        user_id: str,
        run_id: str,
        follow_up: Continuation,
        receipt: idempotency.Receipt | None = None,
    ) -> Run:
        with self.receipts.flight(user_id, receipt):
            return await self._continue_task(user_id, run_id, follow_up, receipt)

    async def _continue_task(
        self,
        user_id: str,
        run_id: str,
        follow_up: Continuation,
        receipt: idempotency.Receipt | None,
    ) -> Run:
        if follow_up.model is not None and follow_up.agent is None:
            raise InvalidInput("'model' requires 'agent' when continuing a task")
        previous = await self._owned_run(user_id, run_id)
        limits = self.limits.chosen(follow_up.max_duration, follow_up.max_cost_usd, previous)
        permission = follow_up.acp_permission or acp_policy.known(
            previous.options.get(acp_policy.OPTION)
        )
        if permission is not None:
            limits[acp_policy.OPTION] = permission
        await self.limits.check_queue_room(self.store, user_id, 1)
        chat_values = None
        if follow_up.env:
            chat_values = {"env_encrypted": await self._merged_env(previous, follow_up.env)}
        # The follow-up goes to the end of the chat, behind a run still active (FIFO); a
        # concurrent follow-up that got there first is simply followed.
        for _ in range(_FOLLOW_UP_ATTEMPTS):
            latest = await self.store.latest_run_in_chat(previous.chat_id)
            assert latest is not None
            if follow_up.agent is None:
                agent, model = latest.agent, latest.model
            else:
                agent = self._resolve(follow_up.agent, follow_up.model)
                model = follow_up.model
            run = Run.queued(
                previous.chat_id, user_id, agent, model, follow_up.prompt, utcnow(),
                previous_run_id=latest.run_id, options=limits,
            )  # fmt: skip
            async with self.receipts.keeping(user_id, receipt, [run]) as record:
                inserted = await self.store.continue_chat(
                    run,
                    run.user_message(),
                    latest.run_id,
                    on_insert=self.queue.in_transaction,
                    chat_values=chat_values,
                    receipt=record,
                )
            if inserted:
                await self.queue.enqueued(run.run_id)
                return run
        raise Conflict("the chat is receiving many follow-ups at once; try again")

    async def cancel(self, user_id: str, run_id: str) -> CancelResult:
        run = await self._owned_run(user_id, run_id)
        if run.status.terminal:
            return CancelResult(
                False, run.status, f"Task {run_id} is already {run.status.value}; nothing to cancel"
            )
        await self.queue.cancel(run_id)
        after = await self.store.get_run(run_id)
        assert after is not None
        if after.status is RunStatus.CANCELLED:
            return CancelResult(True, after.status, f"Task {run_id} cancelled successfully")
        return CancelResult(
            False, after.status, f"Task {run_id} could not be cancelled ({after.status.value})"
        )

    async def rename(self, user_id: str, run_id: str, title: str) -> Run:
        run = await self._owned_run(user_id, run_id)
        await self.store.update_chat(run.chat_id, title=title)
        return run

    # -- queries --------------------------------------------------------------------------------

    async def get_run(self, user_id: str, run_id: str) -> Run:
        return await self._described(await self._owned_run(user_id, run_id))

    async def _described(self, run: Run) -> Run:
        """A queued run with its ``statusDetail``: why and where it waits, as of now."""
        if run.status is not RunStatus.QUEUED:
            return run
        if await self.store.earlier_active_in_chat(run):
            run.status_detail = details.WAITING_FOR_CHAT
            return run
        cap = self.limits.user_max_running
        if cap is not None:
            running = await self.store.count_runs(RunStatus.RUNNING, run.user_id)
            if running >= cap:
                run.status_detail = details.waiting_for_user_slot(running, cap)
                return run
        position, total = await self.store.queue_position(run)
        run.status_detail = details.waiting_for_slot(position, total)
        return run

    async def find_run(self, run_id: str) -> Run | None:
        return await self.store.get_run(run_id) if ids.is_run_id(run_id) else None

    async def get_task(self, user_id: str, run_id: str) -> TaskView:
        run = await self._described(await self._owned_run(user_id, run_id))
        chat = await self.store.get_chat(run.chat_id)
        assert chat is not None
        messages = await self.store.list_messages(run.chat_id)
        # The assistant message of a run still in flight is folded from its events so far.
        for message in messages:
            if message.role == "assistant" and not message.parts:
                owner = (
                    run
                    if message.run_id == run.run_id
                    else await self.store.get_run(message.run_id)
                )
                if owner is not None and not owner.status.terminal:
                    message.parts = await self.events.assistant_parts(owner.run_id)
        return TaskView(run=run, chat=chat, messages=messages)

    async def list_tasks(
        self, user_id: str, status: RunStatus | None, page: int, limit: int
    ) -> tuple[list[Run], bool]:
        runs = await self.store.list_runs(user_id, status, (page - 1) * limit, limit + 1)
        return runs[:limit], len(runs) > limit

    async def diff(self, user_id: str, run_id: str) -> tuple[Run, str]:
        """The run's unified diff (its workspace's ``base..head``); empty before it ends."""
        run = await self._owned_run(user_id, run_id)
        return run, await self.run_diff(run)

    async def run_diff(self, run: Run) -> str:
        git = run.git or {}
        chat = await self.chat_of(run)
        if not (git.get("headSha") and chat.workspace_path):
            return ""
        redactor = self.redactor_of(chat)
        if redactor is None:
            raise Conflict(
                f"the diff of run {run.run_id} is withheld: its chat's environment variables "
                "cannot be decrypted to redact them (was AGENTYARD_SECRET_KEY changed?)"
            )
        try:
            diff = await self.workspaces.diff(
                Path(chat.workspace_path), git["baseSha"], git["headSha"]
            )
        except WorkspaceError as exc:
            raise NotFound(f"the diff of run {run.run_id} is no longer available ({exc})") from None
        return redactor.redact(diff)

    def redactor_of(self, chat: Chat) -> Redactor | None:
        """What redacts the chat's secrets; None when they cannot be decrypted."""
        if chat.env_encrypted is None:
            return Redactor(())
        variables = self._open(chat.env_encrypted)
        return None if variables is None else Redactor(variables.values())

    async def chat_of(self, run: Run) -> Chat:
        chat = await self.store.get_chat(run.chat_id)
        assert chat is not None
        return chat

    async def logs(self, user_id: str, run_id: str) -> tuple[Run, list[StoredEvent]]:
        run = await self._owned_run(user_id, run_id)
        return run, await self.events.read(run_id)

    def follow(
        self, run_id: str, after_seq: int, keepalive: float
    ) -> AsyncIterator[StoredEvent | None]:
        return self.events.follow(run_id, after_seq, keepalive)

    def follow_batches(
        self, run_id: str, after_seq: int, keepalive: float
    ) -> AsyncIterator[list[StoredEvent] | None]:
        return self.events.follow_batches(run_id, after_seq, keepalive)

    # -- helpers -----------------------------------------------------------------------------

    def _seal(self, variables: Mapping[str, str] | None) -> str | None:
        if not variables:
            return None
        if self.secrets is None:
            raise InvalidInput(f"this server does not accept '{envvars.FIELD}'")
        return envvars.seal(self.secrets, variables)

    def _open(self, sealed: str) -> dict[str, str] | None:
        return None if self.secrets is None else envvars.unseal(self.secrets, sealed)

    async def _merged_env(self, run: Run, variables: Mapping[str, str]) -> str | None:
        """The chat's variables with ``variables`` laid over them, sealed. Variables that
        can no longer be decrypted (another secret key) are replaced."""
        chat = await self.chat_of(run)
        current = self._open(chat.env_encrypted) if chat.env_encrypted else None
        merged = {**(current or {}), **variables}
        envvars.check(merged)
        return self._seal(merged)

    async def _webhook(self, task: NewTask) -> tuple[str | None, str | None]:
        """The task's own webhook URL, checked, and its secret sealed; or nothing."""
        if task.webhook_url is None:
            return None, None
        if self.webhook_urls is None or self.secrets is None or task.webhook_secret is None:
            raise InvalidInput("this server does not accept 'webhookUrl'")
        await self.webhook_urls.check(task.webhook_url, "webhookUrl")
        return task.webhook_url.strip(), self.secrets.seal(task.webhook_secret)

    async def _check_repo(self, user_id: str, task: NewTask) -> str | None:
        if task.repo_url is None:
            if task.selected_branch is not None or task.create_pull_request:
                raise InvalidInput("'selectedBranch' and 'createPullRequest' need a 'repoUrl'")
            return None
        if self.repos is None:
            raise InvalidInput("this server does not run tasks on repositories")
        return await self.repos.check(user_id, task.repo_url)

    @staticmethod
    def _attach_repo(
        chat: Chat, run: Run, task: NewTask, repo_url: str | None, suffix: str | None
    ) -> None:
        if repo_url is None:
            return
        chat.repo_url = repo_url
        chat.base_branch = task.selected_branch
        chat.created_branch = branch_name(task.prompt, run.run_id, suffix)

    async def _owned_run(self, user_id: str, run_id: str) -> Run:
        run = await self.find_run(run_id)
        if run is None:
            raise NotFound(f"Task {run_id} not found")
        if run.user_id != user_id:
            raise Forbidden("Task belongs to a different user")
        return run


_FOLLOW_UP_ATTEMPTS = 10


def _new_chat(user_id: str, task: NewTask, sealed: str | None, now: datetime) -> Chat:
    return Chat(
        chat_id=ids.new_chat_id(),
        user_id=user_id,
        created_at=now,
        title=task.title,
        env_encrypted=sealed,
    )
