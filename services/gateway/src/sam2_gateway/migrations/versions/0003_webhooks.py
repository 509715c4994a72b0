"""Webhook deliveries of batch jobs and each key's signing secret (issue 30).

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"


def upgrade() -> None:
    with op.batch_alter_table("jobs") as jobs:
        jobs.add_column(sa.Column("webhook_state", sa.String(16), nullable=True))
        jobs.add_column(
            sa.Column("webhook_attempts", sa.Integer(), nullable=False, server_default="0")
        )
        jobs.add_column(sa.Column("webhook_next_at", sa.DateTime(timezone=True), nullable=True))
        jobs.add_column(sa.Column("webhook_error", sa.Text(), nullable=True))
    op.create_table(
        "webhook_secrets",
        sa.Column("key_id", sa.String(12), primary_key=True),
        sa.Column("secret", sa.Text(), nullable=False),
        sa.Column("previous", sa.Text(), nullable=True),
        sa.Column("rotated_at", sa.DateTime(timezone=True), nullable=True),
    )


def downgrade() -> None:
    op.drop_table("webhook_secrets")
    with op.batch_alter_table("jobs") as jobs:
        for column in ("webhook_error", "webhook_next_at", "webhook_attempts", "webhook_state"):
            jobs.drop_column(column)
