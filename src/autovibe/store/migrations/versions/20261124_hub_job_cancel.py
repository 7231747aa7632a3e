"""Hub jobs can be cancelled: who asked, and when (the replica running the job polls for it).

A migration of its own, not an edit of 20261123_hub: stores created by the release that shipped that
revision are at it already and would never get these columns otherwise.

Revision ID: 20261124_hub_job_cancel
Revises: 20261123_hub
Create Date: 2026-11-24
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from autovibe.store.tables import UtcDateTime

revision = "20261124_hub_job_cancel"
down_revision = "20261123_hub"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # batch: SQLite can add a nullable column in place, but dropping one (downgrade) rebuilds the table
    with op.batch_alter_table("hub_jobs") as table:
        table.add_column(sa.Column("cancel_requested_at", UtcDateTime(), nullable=True))
        table.add_column(sa.Column("cancel_requested_by", sa.String(128), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("hub_jobs") as table:
        table.drop_column("cancel_requested_by")
        table.drop_column("cancel_requested_at")
