"""The API's request bodies as pydantic models: the client sends them, /openapi.json
documents them (with descriptions and an example each).

The server does not validate with these models: it parses bodies itself, so that bad input is
a 400 naming the field, exactly as before. These models only describe that contract.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel


class Body(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, validate_by_name=True)

    def wire(self) -> dict[str, Any]:
        """The JSON the API expects: camelCase, fields left unset omitted."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


EnvVars = dict[str, str] | str
AcpPermission = Literal["workspace", "allow", "read-only", "deny"]


class AgentChoice(Body):
    agent: str | None = Field(default=None, description="claude, codex or command.")
    model: str | None = Field(default=None, description="The agent's model.")


class CreateTask(Body):
    """A new task: one run, or with ``selectedAgents`` one run per agent (a group)."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {"prompt": "Add a README in French", "agent": "claude"},
                {
                    "prompt": "Fix the failing test",
                    "repoUrl": "https://github.com/octocat/hello",
                    "createPullRequest": True,
                    "selectedAgents": [{"agent": "claude"}, {"agent": "codex"}],
                },
            ]
        }
    )

    prompt: str | None = Field(default=None, description="What the agent should do.")
    message: str | None = Field(default=None, description="Alias of `prompt`.")
    model: str | None = Field(default=None, max_length=200, description="Model id.")
    agent: str | None = Field(
        default=None, max_length=40, description="claude (default), codex or command."
    )
    title: str | None = Field(default=None, max_length=200)
    repo_url: str | None = Field(
        default=None, max_length=2000, description="https URL on an allow-listed host."
    )
    selected_branch: str | None = Field(
        default=None, max_length=255, description="Base branch; default the repository's."
    )
    create_pull_request: bool | None = Field(
        default=None, description="Open a pull request after the push."
    )
    environment_variables: EnvVars | None = Field(
        default=None,
        description="Per-task secrets: an object of strings, or KEY=VALUE lines.",
    )
    selected_agents: list[AgentChoice] | None = Field(
        default=None, description="2 to 5 agents: one run each, sharing a group id."
    )
    type: Literal["claude", "agent"] | None = Field(default=None, description="Agent task.")
    max_duration: float | None = Field(
        default=None,
        gt=0,
        description="Seconds the run may execute; then it is stopped, its work saved, failed.",
    )
    max_cost_usd: float | None = Field(
        default=None,
        gt=0,
        description="What the run's model use may cost (USD, metered at the model proxy).",
    )
    webhook_url: str | None = Field(
        default=None,
        max_length=2000,
        description="This task's own webhook (https); signed with `webhookSecret`.",
    )
    acp_permission: AcpPermission | None = Field(
        default=None,
        description="How an ACP agent's (gemini's) permission requests are answered in this "
        "task: `workspace` (allow what stays in the workspace), `read-only`, `allow` or `deny`; "
        "default and upper bound: the server's `AGENTYARD_ACP_PERMISSION` (a looser choice is "
        "held to it). Other agents ignore it.",
    )


class ContinueTask(Body):
    """A follow-up run on the same chat, workspace and branch."""

    model_config = ConfigDict(json_schema_extra={"examples": [{"prompt": "Now add tests"}]})

    prompt: str | None = Field(default=None, description="The follow-up.")
    message: str | None = Field(default=None, description="Alias of `prompt`.")
    agent: str | None = Field(default=None, max_length=40)
    model: str | None = Field(default=None, max_length=200)
    environment_variables: EnvVars | None = Field(
        default=None, description="Laid over the chat's variables."
    )
    max_duration: float | None = Field(
        default=None, gt=0, description="As for a new task; default: the previous run's."
    )
    max_cost_usd: float | None = Field(
        default=None, gt=0, description="As for a new task; default: the previous run's."
    )
    acp_permission: AcpPermission | None = Field(
        default=None, description="As for a new task; default: the previous run's."
    )


class UpdateTask(Body):
    """Cancel and/or rename: at least one of the two."""

    model_config = ConfigDict(json_schema_extra={"examples": [{"action": "cancel"}]})

    action: Literal["cancel"] | None = None
    title: str | None = Field(default=None, min_length=1, max_length=200)


class CancelGroup(Body):
    model_config = ConfigDict(json_schema_extra={"examples": [{"action": "cancel"}]})

    action: Literal["cancel"]


class SelectWinner(Body):
    model_config = ConfigDict(
        json_schema_extra={"examples": [{"runId": "run_0123", "createPullRequest": True}]}
    )

    run_id: str = Field(description="The winning run (one of the group's).")
    create_pull_request: bool | None = Field(
        default=None, description="Open a pull request from the winner's branch."
    )


class WriteFile(Body):
    model_config = ConfigDict(
        json_schema_extra={"examples": [{"content": "hello\n", "encoding": "text"}]}
    )

    content: str
    encoding: Literal["text", "base64"] | None = Field(default=None, description="Default text.")


class ConnectGit(Body):
    model_config = ConfigDict(json_schema_extra={"examples": [{"githubToken": "ghp_…"}]})

    github_token: str = Field(
        max_length=1000, description="Validated with GitHub, stored encrypted, never returned."
    )


WebhookEvent = Literal["*", "queued", "running", "completed", "failed", "cancelled", "interrupted"]


class CreateWebhook(Body):
    """A webhook endpoint: every status change of the caller's runs, signed."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"url": "https://ci.example.com/hooks/agentyard", "events": ["*"]}]
        }
    )

    url: str = Field(max_length=2000, description="https; no loopback or private targets.")
    events: list[WebhookEvent] | None = Field(
        default=None, min_length=1, description="Run statuses, or `*` (default) for all."
    )
    description: str | None = Field(default=None, max_length=500)


ALL: tuple[type[Body], ...] = (
    CreateTask,
    ContinueTask,
    UpdateTask,
    CancelGroup,
    SelectWinner,
    WriteFile,
    ConnectGit,
    CreateWebhook,
)
