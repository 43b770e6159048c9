"""The schema, one SQLAlchemy metadata for SQLite and PostgreSQL alike."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Dialect


class UTCDateTime(sa.types.TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every dialect (SQLite keeps naive text)."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        assert isinstance(value, datetime)
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


metadata = sa.MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

api_keys = sa.Table(
    "api_keys",
    metadata,
    sa.Column("key_id", sa.String(40), primary_key=True),
    sa.Column("user_id", sa.String(200), nullable=False),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("key_hash", sa.String(64), nullable=False, unique=True),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.Column("revoked_at", UTCDateTime(), nullable=True),
)

chats = sa.Table(
    "chats",
    metadata,
    sa.Column("chat_id", sa.String(40), primary_key=True),
    sa.Column("user_id", sa.String(200), nullable=False, index=True),
    sa.Column("title", sa.String(200), nullable=True),
    sa.Column("repo_url", sa.Text(), nullable=True),
    sa.Column("base_branch", sa.String(255), nullable=True),
    sa.Column("created_branch", sa.String(255), nullable=True),
    sa.Column("workspace_path", sa.Text(), nullable=True),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    # The chat's environment variables (a task's secrets), sealed with the SecretBox.
    sa.Column("env_encrypted", sa.Text(), nullable=True),
    # The task's own webhook (``webhookUrl``) and its signing secret, sealed; follow-ups and
    # every run of a multi-agent group share them.
    sa.Column("webhook_url", sa.Text(), nullable=True),
    sa.Column("webhook_secret_sealed", sa.Text(), nullable=True),
)

runs = sa.Table(
    "runs",
    metadata,
    sa.Column("run_id", sa.String(40), primary_key=True),
    sa.Column("chat_id", sa.String(40), sa.ForeignKey("chats.chat_id"), nullable=False),
    sa.Column("user_id", sa.String(200), nullable=False),
    sa.Column("group_id", sa.String(40), nullable=True, index=True),
    sa.Column("agent", sa.String(40), nullable=False),
    sa.Column("model", sa.String(200), nullable=True),
    sa.Column("prompt", sa.Text(), nullable=False),
    sa.Column("status", sa.String(20), nullable=False),
    sa.Column("status_detail", sa.Text(), nullable=True),
    sa.Column("error", sa.Text(), nullable=True),
    sa.Column("user_message_id", sa.String(40), nullable=False),
    sa.Column("assistant_message_id", sa.String(40), nullable=False),
    sa.Column("previous_run_id", sa.String(40), nullable=True),
    sa.Column("session_id", sa.String(200), nullable=True),
    sa.Column("usage", sa.JSON(), nullable=True),
    sa.Column("cost_usd", sa.Float(), nullable=True),
    sa.Column("totals", sa.JSON(), nullable=True),
    sa.Column("git", sa.JSON(), nullable=True),
    sa.Column("options", sa.JSON(), nullable=True),
    sa.Column("event_seq", sa.Integer(), nullable=False, server_default="0"),
    sa.Column("worker_id", sa.String(200), nullable=True),
    sa.Column("heartbeat_at", UTCDateTime(), nullable=True),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.Column("started_at", UTCDateTime(), nullable=True),
    sa.Column("completed_at", UTCDateTime(), nullable=True),
    sa.Index("ix_runs_status_created_at", "status", "created_at"),
    sa.Index("ix_runs_user_id_created_at", "user_id", "created_at"),
    sa.Index("ix_runs_chat_id_created_at", "chat_id", "created_at"),
    # The claim asks, for every queued run, how many runs its user has running and whether
    # its chat has one running or an earlier one queued: point look-ups with these two (without
    # them SQLite walks every queued run per queued run: 1,000 queued, 0.4 s a claim).
    sa.Index("ix_runs_status_user_id", "status", "user_id"),
    sa.Index("ix_runs_chat_id_status_created_at", "chat_id", "status", "created_at"),
)

messages = sa.Table(
    "messages",
    metadata,
    sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
    sa.Column("message_id", sa.String(40), nullable=False, unique=True),
    sa.Column("chat_id", sa.String(40), sa.ForeignKey("chats.chat_id"), nullable=False),
    sa.Column("run_id", sa.String(40), nullable=False),
    sa.Column("role", sa.String(20), nullable=False),
    sa.Column("parts", sa.JSON(), nullable=False),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.Index("ix_messages_chat_id_id", "chat_id", "id"),
)

events = sa.Table(
    "events",
    metadata,
    sa.Column("run_id", sa.String(40), primary_key=True),
    sa.Column("seq", sa.Integer(), primary_key=True, autoincrement=False),
    sa.Column("type", sa.String(40), nullable=False),
    sa.Column("data", sa.JSON(), nullable=False),
    sa.Column("created_at", UTCDateTime(), nullable=False),
)

git_credentials = sa.Table(
    "git_credentials",
    metadata,
    sa.Column("user_id", sa.String(200), primary_key=True),
    sa.Column("token_encrypted", sa.Text(), nullable=False),
    sa.Column("login", sa.String(200), nullable=True),
    sa.Column("profile", sa.JSON(), nullable=True),
    sa.Column("scopes", sa.Text(), nullable=True),
    sa.Column("created_at", UTCDateTime(), nullable=False),
)

groups = sa.Table(
    "groups",
    metadata,
    sa.Column("group_id", sa.String(40), primary_key=True),
    sa.Column("user_id", sa.String(200), nullable=False),
    sa.Column("prompt", sa.Text(), nullable=False),
    sa.Column("selected_run_id", sa.String(40), nullable=True),
    sa.Column("selected_at", UTCDateTime(), nullable=True),
    sa.Column("pr_url", sa.Text(), nullable=True),
    sa.Column("pr_number", sa.Integer(), nullable=True),
    sa.Column("created_at", UTCDateTime(), nullable=False),
)

# One row per Idempotency-Key of a user, written in the transaction that inserts its run(s):
# a crash never leaves a run without its key nor a key without its run. Kept 24 hours.
idempotency_keys = sa.Table(
    "idempotency_keys",
    metadata,
    sa.Column("user_id", sa.String(200), primary_key=True),
    sa.Column("key", sa.String(255), primary_key=True),
    sa.Column("route", sa.String(200), nullable=False),
    # Per request field, a keyed hash of its value: a mismatch names the fields, and no
    # value (a prompt, an environment variable) is kept.
    sa.Column("fingerprint", sa.JSON(), nullable=False),
    sa.Column("status_code", sa.Integer(), nullable=False),
    # The first response, sealed (it may carry a webhook signing secret).
    sa.Column("response_sealed", sa.Text(), nullable=False),
    sa.Column("run_id", sa.String(40), nullable=False),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.Index("ix_idempotency_keys_created_at", "created_at"),
)

# A user's registered webhook endpoints; the signing secret is sealed with the SecretBox.
webhook_endpoints = sa.Table(
    "webhook_endpoints",
    metadata,
    sa.Column("endpoint_id", sa.String(40), primary_key=True),
    sa.Column("user_id", sa.String(200), nullable=False, index=True),
    sa.Column("url", sa.Text(), nullable=False),
    sa.Column("events", sa.JSON(), nullable=False),
    sa.Column("description", sa.Text(), nullable=True),
    sa.Column("secret_sealed", sa.Text(), nullable=False),
    sa.Column("created_at", UTCDateTime(), nullable=False),
)

# The outbox: one row per message to one URL, written in the transaction that changes the
# run's status. ``delivery_id`` is the message's ``webhook-id``; ``endpoint_id`` is NULL for
# a task's own ``webhookUrl``. A claimer holds ``lease_until`` while it attempts.
webhook_deliveries = sa.Table(
    "webhook_deliveries",
    metadata,
    sa.Column("delivery_id", sa.String(40), primary_key=True),
    sa.Column("endpoint_id", sa.String(40), nullable=True),
    sa.Column("user_id", sa.String(200), nullable=False),
    sa.Column("run_id", sa.String(40), nullable=False),
    sa.Column("url", sa.Text(), nullable=False),
    sa.Column("type", sa.String(40), nullable=False),
    sa.Column("payload", sa.JSON(), nullable=False),
    sa.Column("state", sa.String(20), nullable=False),
    sa.Column("attempts", sa.Integer(), nullable=False, server_default="0"),
    sa.Column("next_attempt_at", UTCDateTime(), nullable=False),
    sa.Column("lease_until", UTCDateTime(), nullable=True),
    sa.Column("last_status_code", sa.Integer(), nullable=True),
    sa.Column("last_error", sa.Text(), nullable=True),
    sa.Column("last_response", sa.Text(), nullable=True),
    sa.Column("attempt_log", sa.JSON(), nullable=False),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.Column("delivered_at", UTCDateTime(), nullable=True),
    sa.Index("ix_webhook_deliveries_state_next_attempt_at", "state", "next_attempt_at"),
    sa.Index("ix_webhook_deliveries_endpoint_id_created_at", "endpoint_id", "created_at"),
)
