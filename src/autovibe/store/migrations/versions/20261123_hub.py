"""The hub: submitted jobs, their progress events, running replicas.

Revision ID: 20261123_hub
Revises: 20261122_security
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from autovibe.store.tables import UtcDateTime

revision = "20261123_hub"
down_revision = "20261122_security"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "hub_jobs",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("kind", sa.String(64), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("params", sa.JSON(), nullable=False),
        sa.Column("actor", sa.String(128), nullable=False),
        sa.Column("project", sa.String(64), nullable=True),
        sa.Column("replica", sa.String(128), nullable=True),
        sa.Column("result", sa.JSON(), nullable=True),
        sa.Column("error", sa.JSON(), nullable=True),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.Column("started_at", UtcDateTime(), nullable=True),
        sa.Column("finished_at", UtcDateTime(), nullable=True),
    )
    op.create_index("ix_hub_jobs_status", "hub_jobs", ["status"])
    op.create_index("ix_hub_jobs_created_at", "hub_jobs", ["created_at"])
    op.create_table(
        "hub_job_events",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("job_id", sa.String(36), sa.ForeignKey("hub_jobs.id", ondelete="CASCADE"), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("at", UtcDateTime(), nullable=False),
        sa.Column("data", sa.JSON(), nullable=False),
        sa.UniqueConstraint("job_id", "seq"),
    )
    op.create_index("ix_hub_job_events_job_id", "hub_job_events", ["job_id"])
    op.create_table(
        "hub_replicas",
        sa.Column("id", sa.String(128), primary_key=True),
        sa.Column("started_at", UtcDateTime(), nullable=False),
        sa.Column("heartbeat_at", UtcDateTime(), nullable=False),
        sa.Column("leader", sa.Boolean(), nullable=False),
        sa.Column("url", sa.Text(), nullable=True),
    )


def downgrade() -> None:
    op.drop_table("hub_replicas")
    op.drop_index("ix_hub_job_events_job_id", table_name="hub_job_events")
    op.drop_table("hub_job_events")
    op.drop_index("ix_hub_jobs_created_at", table_name="hub_jobs")
    op.drop_index("ix_hub_jobs_status", table_name="hub_jobs")
    op.drop_table("hub_jobs")
