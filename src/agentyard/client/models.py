"""The API's responses as pydantic models: what the client returns and what /openapi.json
documents (the server names these same classes), so the two cannot drift.

Fields are snake_case in Python and camelCase on the wire. Every model allows fields it does
not know: a newer server adding a field must not break an older client.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel


class Model(BaseModel):
    """camelCase on the wire, snake_case in Python, unknown fields kept."""

    model_config = ConfigDict(alias_generator=to_camel, validate_by_name=True, extra="allow")

    def wire(self) -> dict[str, Any]:
        """The model as the API's JSON (camelCase), e.g. for ``--json`` output."""
        return self.model_dump(mode="json", by_alias=True)


class ErrorBody(Model):
    """Every error the API answers: 400, 401, 403, 404, 409, 413."""

    error: str = Field(description="What is wrong, in words.", examples=["Task run_x not found"])


class RunRef(Model):
    run_id: str
    chat_id: str
    agent: str
    model: str | None = None
    assistant_message_id: str


class CreatedTask(Model):
    """``POST /tasks``: the new task, at once, before it starts."""

    task_id: str = Field(description="The task: the run, or the group of a multi-agent task.")
    run_id: str = Field(description="The (first) run: the id every per-run endpoint takes.")
    chat_id: str
    assistant_message_id: str
    status: str
    agent_count: int
    group_id: str | None = None
    runs: list[RunRef] | None = Field(default=None, description="Multi-agent tasks: every run.")
    webhook_secret: str | None = Field(
        default=None, description="With `webhookUrl` only: its signing secret, shown this once."
    )


class TaskSummary(Model):
    task_id: str
    run_id: str
    chat_id: str
    status: str
    agent: str
    model: str | None = None
    created_at: datetime | None = None
    started_at: datetime | None = None
    completed_at: datetime | None = None
    assistant_message_id: str


class TaskList(Model):
    tasks: list[TaskSummary]
    page: int
    limit: int
    has_more: bool


class FileStat(Model):
    path: str
    added: int
    removed: int
    binary: bool = False


class DiffStats(Model):
    files_changed: int
    lines_added: int
    lines_removed: int
    commits: list[Any] = []
    files: list[FileStat] = []


class GitHubInfo(Model):
    repo_url: str
    owner: str
    repo: str
    base_branch: str | None = None
    created_branch: str | None = None
    pushed: bool = False
    commits: list[Any] = []
    pr_url: str | None = None
    pr_number: int | None = None
    pr_error: str | None = None


class Message(Model):
    id: str
    role: str
    parts: list[dict[str, Any]]
    created_at: datetime | None = None


class Task(TaskSummary):
    """``GET /tasks/{runId}``: the run with its chat's messages."""

    title: str | None = None
    prompt: str | None = None
    previous_run_id: str | None = None
    error: str | None = None
    status_detail: str | None = None
    worker_id: str | None = None
    max_duration: float | None = None
    max_cost_usd: float | None = None
    acp_permission: str | None = None
    """The task's own ACP permission policy (``acpPermission``), if it chose one."""
    github: GitHubInfo | None = None
    diff_stats: DiffStats | None = None
    usage: dict[str, Any] | None = None
    cost_usd: float | None = None
    messages: list[Message] = []
    in_memory: Any = None


class RunStatus(Model):
    """``GET /tasks/{runId}/status``."""

    run_id: str
    status: str
    progress: int = Field(description="0-100: linear in elapsed time, 100 when completed.")
    error: str | None = None
    status_detail: str | None = Field(
        default=None, description="Why it waits, what it is doing, or why it ended."
    )
    started_at: datetime | None = None
    completed_at: datetime | None = None


class ContinuedTask(Model):
    task_id: str
    run_id: str
    chat_id: str
    assistant_message_id: str
    previous_run_id: str | None = None
    status: str


class UpdateResult(Model):
    """``PATCH /tasks/{runId}``: ``success`` is false when cancelling an ended run."""

    success: bool
    status: str
    message: str | None = None


class Diff(Model):
    run_id: str
    diff: str
    diff_stats: DiffStats | None = None


class Event(Model):
    """One stored event: ``seq`` (gap-free per run), ``type``, and the event's own fields
    in ``data`` (which holds ``type`` too, exactly as the server sent it)."""

    seq: int
    type: str
    data: dict[str, Any] = {}

    @classmethod
    def of(cls, seq: int, data: dict[str, Any]) -> Event:
        return cls(seq=seq, type=str(data.get("type", "")), data=data)

    def line(self) -> dict[str, Any]:
        """The event as one JSON object: its fields plus ``seq``."""
        return {**self.data, "seq": self.seq}


class Logs(Model):
    run_id: str
    chat_id: str
    status: str
    source: str
    event_count: int
    events: list[dict[str, Any]]
    error: str | None = None

    def typed_events(self) -> list[Event]:
        return [
            Event.of(int(e["seq"]), {k: v for k, v in e.items() if k != "seq"}) for e in self.events
        ]


class RawStatus(Model):
    """``GET /agent/status``: nulls for a run the caller cannot see."""

    run_id: str | None = None
    status: str | None = None
    assistant_message_id: str | None = None
    error: str | None = None


class FileEntry(Model):
    name: str
    path: str
    type: str
    size: int | None = None


class FileList(Model):
    files: list[FileEntry]
    path: str
    recursive: bool


class FileContent(Model):
    path: str
    content: str
    encoding: str = Field(description="'text' (UTF-8) or 'base64'.")
    mime_type: str | None = None
    size: int


class FileChange(Model):
    success: bool
    path: str
    size: int | None = None


class Uploaded(Model):
    name: str
    path: str
    size: int


class UploadResult(Model):
    uploaded: list[Uploaded]


class GroupRun(RunStatus):
    agent: str
    model: str | None = None
    usage: dict[str, Any] | None = None
    cost_usd: float | None = None
    diff_stats: DiffStats | None = None


class Group(Model):
    """``GET /groups/{taskId}``: a multi-agent task's runs and its aggregate status."""

    task_id: str
    status: str
    agent_count: int
    selected_run_id: str | None = None
    pr_url: str | None = None
    pr_number: int | None = None
    runs: list[GroupRun]


class ComparedRun(Model):
    run_id: str
    agent: str
    model: str | None = None
    status: str
    files_changed: int
    lines_added: int
    lines_removed: int
    files: list[FileStat]
    diff: str


class FilePart(Model):
    added: int
    removed: int
    diff: str


class ComparedFile(Model):
    path: str
    runs: dict[str, FilePart | None] = Field(description="Per run id; null: left alone.")


class Comparison(Model):
    task_id: str
    status: str
    runs: list[ComparedRun]
    files: list[ComparedFile]


class AgentInfo(Model):
    agent: str
    configured: bool
    detail: str | None = None
    default_model: str | None = None


class Agents(Model):
    agents: list[AgentInfo]
    sandbox: dict[str, Any]


class GitConnected(Model):
    success: bool
    login: str | None = None


class GitAccount(Model):
    """``GET /git/config`` and ``/git/status``: never the token itself."""

    connected: bool
    token_valid: bool | None = None
    login: str | None = None
    name: str | None = None
    email: str | None = None
    avatar_url: str | None = None
    scopes: Any = None
    token_created_at: datetime | None = None
    message: str | None = None


class Done(Model):
    success: bool
    message: str | None = None


class Repos(Model):
    repos: list[dict[str, Any]]
    total: int


class Branches(Model):
    branches: list[dict[str, Any]]
    default_branch: str | None = Field(default=None, alias="default_branch")
    total: int


class Health(Model):
    ok: bool
    version: str


class WebhookEndpoint(Model):
    """A webhook endpoint (its secret is shown only when it is created)."""

    id: str
    url: str
    events: list[str]
    description: str | None = None
    created_at: datetime | None = None


class CreatedWebhook(WebhookEndpoint):
    """The new endpoint, with its Standard Webhooks signing secret, shown this once."""

    secret: str = Field(description="`whsec_...`: verifies `webhook-signature`.")


class WebhookList(Model):
    """The caller's webhook endpoints."""

    webhooks: list[WebhookEndpoint]


class WebhookDeleted(Model):
    """The endpoint and its deliveries are gone."""

    success: bool
    id: str


class WebhookAttempt(Model):
    attempt: int
    at: datetime | None = None
    status_code: int | None = None
    error: str | None = None
    response: str | None = Field(default=None, description="The response body's first KiB.")
    duration_ms: int | None = None


class WebhookDelivery(Model):
    """One message to one endpoint: its state and every attempt, newest first."""

    id: str = Field(description="The message's `webhook-id`, the same on every attempt.")
    endpoint_id: str | None = None
    run_id: str
    type: str
    state: str = Field(description="pending, delivered or failed.")
    attempts: int
    next_attempt_at: datetime | None = None
    last_status_code: int | None = None
    last_error: str | None = None
    last_response: str | None = None
    attempt_log: list[WebhookAttempt]
    payload: dict[str, Any]
    created_at: datetime | None = None
    delivered_at: datetime | None = None


class WebhookDeliveries(Model):
    """An endpoint's deliveries, newest first."""

    deliveries: list[WebhookDelivery]
    page: int
    limit: int
    has_more: bool
