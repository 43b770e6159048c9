"""indexes on runs for the claim: (status, user_id) and (chat_id, status, created_at)

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_runs_status_user_id", "runs", ["status", "user_id"])
    op.create_index(
        "ix_runs_chat_id_status_created_at", "runs", ["chat_id", "status", "created_at"]
    )


def downgrade() -> None:
    op.drop_index("ix_runs_chat_id_status_created_at", table_name="runs")
    op.drop_index("ix_runs_status_user_id", table_name="runs")
