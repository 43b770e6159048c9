"""Configuration from ``AGENTYARD_*`` environment variables (and the model providers' own)."""

from __future__ import annotations

from functools import cached_property
from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from agentyard.core.repo_rules import HostRule
from agentyard.runtimes.pricing import ModelPrice


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="AGENTYARD_", extra="ignore")

    data_dir: Path = Path(".agentyard")
    database_url: str | None = None
    """SQLAlchemy URL; default: SQLite in the data directory."""

    host: str = "127.0.0.1"
    port: int = 8080

    max_concurrent_runs: int = Field(default=2, ge=1)
    expected_run_seconds: float = Field(default=300.0, gt=0)
    run_timeout_seconds: float = Field(default=3600.0, gt=0)
    max_body_bytes: int = Field(default=1_048_576, ge=1024)
    max_upload_bytes: int = Field(default=50 * 1_048_576, ge=1024)
    """The body limit of the file upload route; every other route has ``max_body_bytes``."""
    max_header_count: int = Field(default=64, ge=16)
    max_header_bytes: int = Field(default=16 * 1024, ge=4096)
    """Requests with more headers, or more header bytes (names and values), get 431."""
    keepalive_seconds: float = Field(default=15.0, gt=0)
    queue_poll_seconds: float = Field(default=1.0, gt=0)
    cancel_wait_seconds: float = Field(default=10.0, gt=0)
    worker_heartbeat_seconds: float = Field(default=2.0, gt=0)
    worker_stalled_seconds: float = Field(default=10.0, gt=0)
    """A worker silent this long is presumed dead and its runs end ``interrupted``."""
    db_outage_seconds: float = Field(default=60.0, gt=0)
    """A run rides out a database outage this long (its writes retried, its events
    buffered); then it ends ``failed``, naming the database."""
    event_buffer_bytes: int = Field(default=64 * 1024 * 1024, ge=65536)
    """The events a run may hold in memory while the database is away."""
    sweep_seconds: float = Field(default=5.0, gt=0)
    """How often every process ends ``running`` runs whose executor is gone."""
    shutdown_grace_seconds: float = Field(default=30.0, ge=0)
    """On SIGTERM, how long the runs executing may go on to finish before they are
    interrupted (statusDetail "server shutting down"); a second signal cuts it short."""
    metrics_token: SecretStr | None = None
    """If set, ``/metrics`` asks for ``Authorization: Bearer <token>``; else it is open."""
    worker_metrics_port: int | None = Field(default=None, ge=0, le=65535)
    """``agentyard worker`` serves its ``/metrics`` on ``AGENTYARD_HOST`` at this port."""

    # -- limits and budgets: per task (defaults and caps) and per user
    task_max_duration_seconds: float | None = Field(default=None, gt=0)
    """``maxDuration`` of a task that gives none (none: only ``run_timeout_seconds``)."""
    task_max_duration_cap_seconds: float | None = Field(default=None, gt=0)
    """The largest ``maxDuration`` a task may ask for (larger is a 400)."""
    task_max_cost_usd: float | None = Field(default=None, gt=0)
    """``maxCostUsd`` of a task that gives none."""
    task_max_cost_cap_usd: float | None = Field(default=None, gt=0)
    """The largest ``maxCostUsd`` a task may ask for (larger is a 400)."""
    user_max_running_runs: int | None = Field(default=None, ge=1)
    """At most this many of one user's runs execute at once; the others wait queued."""
    user_max_queued_runs: int | None = Field(default=None, ge=1)
    """At most this many of one user's runs wait queued; past it, creating is a 429."""

    api_key: SecretStr | None = None
    """Accepted as a key of the ``admin`` user, beside the keys in the database."""
    key_cache_seconds: float = Field(default=5.0, ge=0)
    """How long a verified API key is taken as live without asking the database again (0:
    always ask). A revocation through this server, or ``agentyard keys revoke`` on its data
    directory, takes effect at once; one through another host's server on the same
    PostgreSQL, within this many seconds."""

    default_model: str = "claude-sonnet-4-5"
    claude_max_turns: int | None = None
    claude_system_prompt_append: str | None = None
    claude_env: dict[str, str] = Field(default_factory=dict)
    """Extra environment for the Claude CLI, as JSON (e.g. ``{"CLAUDE_CODE_MAX_RETRIES": "2"}``)."""

    anthropic_base_url: str | None = Field(
        default=None,
        validation_alias=AliasChoices("AGENTYARD_ANTHROPIC_BASE_URL", "ANTHROPIC_BASE_URL"),
    )
    anthropic_api_key: SecretStr | None = Field(
        default=None,
        validation_alias=AliasChoices("AGENTYARD_ANTHROPIC_API_KEY", "ANTHROPIC_API_KEY"),
    )

    codex_base_url: str | None = Field(
        default=None,
        validation_alias=AliasChoices("AGENTYARD_CODEX_BASE_URL", "OPENAI_BASE_URL"),
    )
    """An OpenAI-compatible base URL (Responses API); default: the OpenAI API."""
    codex_api_key: SecretStr | None = Field(
        default=None,
        validation_alias=AliasChoices("AGENTYARD_CODEX_API_KEY", "OPENAI_API_KEY"),
    )
    codex_default_model: str = "gpt-5.5"
    codex_prices: dict[str, ModelPrice] = Field(default_factory=dict)
    """Codex token prices in USD per million tokens, as JSON ``{"model": {"input_per_mtok":
    1.25, "cached_input_per_mtok": 0.125, "output_per_mtok": 10}}``, over the defaults."""
    codex_max_retries: int = Field(default=2, ge=0)
    """codex's retries of a failed model request or stream."""

    commands: str | None = None
    """Command runtime: JSON ``{"name": {"argv": [..., "{prompt}"], "stdin": false,
    "timeout_seconds": 1800, "env": {}}}``."""
    commands_file: Path | None = None
    default_command: str | None = None

    # -- ACP runtime (any Agent Client Protocol agent) and Gemini, built in on it
    acp_agents: str | None = None
    """ACP agents by name, as JSON ``{"opencode": {"argv": ["opencode", "acp"], "env": {},
    "permission": "workspace", "auth_method": null, "default_model": null}}``."""
    acp_idle_seconds: float = Field(default=600.0, gt=0)
    """An ACP agent that sends nothing (no update, no reply) this long fails its run."""
    acp_cancel_grace_seconds: float = Field(default=3.0, ge=0)
    """After ``session/cancel``: how long the turn may take to end before the kill."""
    acp_permission: Literal["workspace", "allow", "read-only", "deny"] = "workspace"
    """How ACP permission requests are answered: ``workspace`` allows what stays in the
    workspace, ``read-only`` only reads and searches, ``allow``/``deny`` everything. The
    server's policy: a task's ``acpPermission`` may narrow it for that task's runs, never
    widen it."""
    gemini_api_key: SecretStr | None = Field(
        default=None,
        validation_alias=AliasChoices("AGENTYARD_GEMINI_API_KEY", "GEMINI_API_KEY"),
    )
    gemini_base_url: str | None = Field(
        default=None,
        validation_alias=AliasChoices("AGENTYARD_GEMINI_BASE_URL", "GOOGLE_GEMINI_BASE_URL"),
    )
    """A Gemini-API-compatible base URL; default: the Gemini API."""
    gemini_default_model: str = "gemini-2.5-pro"
    gemini_cli_dir: Path | None = None
    """An installed ``@google/gemini-cli`` package directory; default: the project's."""

    secret_key: SecretStr | None = None
    """Encrypts stored GitHub tokens; default: a key generated once in the data dir."""
    session_hours: float = Field(default=12.0, gt=0, le=24 * 30)
    """How long a dashboard sign-in lasts (its cookie's expiry)."""
    github_api_url: str = "https://api.github.com"
    repo_hosts: list[str] = Field(default_factory=lambda: ["github.com"])
    """Hosts a ``repoUrl`` may name (JSON list); ``http://host:port`` allows plain http."""
    repo_private_hosts: list[str] = Field(default_factory=list)
    """Hosts allowed to resolve to loopback/private addresses (JSON list)."""
    git_author_name: str = "Agentyard"
    git_author_email: str = "agent@agentyard.local"
    git_timeout_seconds: float = Field(default=300.0, gt=0)

    webhook_timeout_seconds: float = Field(default=10.0, gt=0)
    """A webhook attempt succeeds with a 2xx within this long (the whole exchange)."""
    webhook_retry_base_seconds: float = Field(default=5.0, gt=0)
    """The first retry's delay; later ones grow (x5, x24, x120, x720, then hourly at 5 s)."""
    webhook_retry_for_seconds: float = Field(default=86400.0, gt=0)
    """A delivery is retried this long after it was created, then it is ``failed``."""
    webhook_private_hosts: list[str] = Field(default_factory=list)
    """Webhook hosts allowed to resolve to loopback/private addresses (JSON list);
    ``http://host:port`` also allows plain http to it."""

    sandbox: Literal["auto", "bwrap", "none"] = "auto"
    """How agents are confined: ``bwrap`` (the default wherever bubblewrap works) or ``none``."""
    sandbox_network: Literal["model", "allowlist"] = "model"
    """``model``: a sandbox reaches its model and nothing else; ``allowlist``: also the hosts
    in ``sandbox_allowed_hosts``, through an HTTPS proxy."""
    sandbox_allowed_hosts: list[str] = Field(default_factory=list)
    """Hosts (``*.example.com`` for subdomains) an ``allowlist`` sandbox may connect to."""
    sandbox_private_hosts: list[str] = Field(default_factory=list)
    """Allowed hosts that may resolve to loopback/private addresses (JSON list)."""
    sandbox_max_processes: int = Field(default=1024, ge=0)
    sandbox_max_open_files: int = Field(default=8192, ge=0)
    sandbox_max_file_bytes: int = Field(default=8 * 1024**3, ge=0)
    sandbox_max_memory_bytes: int = Field(default=8 * 1024**3, ge=0)
    sandbox_tmp_bytes: int = Field(default=2 * 1024**3, ge=0)
    sandbox_readonly_paths: list[Path] = Field(default_factory=list)
    """More host paths a sandbox sees read-only (e.g. a command agent's install)."""
    sandbox_bridge: Literal["auto", "native", "python"] = "auto"
    """A sandbox's first process, its model bridge: ``native`` (built with the system's C
    compiler), ``python``, or ``auto``: native where it builds and runs."""
    sandbox_favour_cgroup_moves: bool = True
    """As root with per-run cgroups: have the kernel favour moving processes between cgroups
    (``favordynmods``) while the server runs, so that a run's start does not wait for an RCU
    grace period (see ``agentyard.sandbox.cgroups.FavouredMoves``)."""

    log_level: str = "info"
    log_format: str = "console"

    @field_validator("repo_hosts")
    @classmethod
    def _repo_hosts_parse(cls, hosts: list[str]) -> list[str]:
        # Refused at start-up, with the reason: not every later repoUrl task failing.
        for entry in hosts:
            HostRule.parse(entry)
        return hosts

    @field_validator("metrics_token")
    @classmethod
    def _token_not_empty(cls, value: SecretStr | None) -> SecretStr | None:
        # An empty token is a variable that was not filled in: refuse it, rather than
        # guess whether /metrics should then be open or closed.
        if value is not None and not value.get_secret_value().strip():
            raise ValueError("AGENTYARD_METRICS_TOKEN is empty: unset it or give a token")
        return value

    @cached_property
    def resolved_data_dir(self) -> Path:
        return self.data_dir.expanduser().resolve()

    @property
    def db_url(self) -> str:
        if self.database_url:
            return self.database_url
        # Any SQLite URL runs on the event loop (agentyard.store.sqlite_loop): no driver named.
        return f"sqlite:///{self.resolved_data_dir / 'agentyard.db'}"

    @property
    def workspaces_dir(self) -> Path:
        return self.resolved_data_dir / "workspaces"

    @property
    def runtime_state_dir(self) -> Path:
        return self.resolved_data_dir / "runtime-state"
