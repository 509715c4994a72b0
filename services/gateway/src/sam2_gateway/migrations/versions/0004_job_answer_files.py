"""Batch-job answers kept as files beside the job files, not in the database (issue 30).

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"


def upgrade() -> None:
    with op.batch_alter_table("job_items") as items:
        items.add_column(sa.Column("answer_file", sa.String(120), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("job_items") as items:
        items.drop_column("answer_file")
