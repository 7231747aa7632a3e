"""Projects, machines and the operations journal.

Revision ID: 20261121_initial
Revises:
Create Date: 2026-11-21
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from autovibe.store.tables import UtcDateTime

revision = "20261121_initial"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "projects",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("name", sa.String(64), nullable=False, unique=True),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("labels", sa.JSON(), nullable=False),
        sa.Column("created_at", UtcDateTime(), nullable=False),
    )
    op.create_table(
        "machines",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("name", sa.String(63), nullable=False, unique=True),
        sa.Column("vmid", sa.Integer(), nullable=False, unique=True),
        sa.Column("node", sa.String(64), nullable=False),
        sa.Column(
            "project_id", sa.Integer(), sa.ForeignKey("projects.id", ondelete="RESTRICT"), nullable=False
        ),
        sa.Column("profile", sa.String(64), nullable=False),
        sa.Column("labels", sa.JSON(), nullable=False),
        sa.Column("parent_machine", sa.String(63), nullable=True),
        sa.Column("parent_checkpoint", sa.String(40), nullable=True),
        sa.Column("created_by", sa.String(128), nullable=False),
        sa.Column("operation_id", sa.String(36), nullable=True),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.Column("updated_at", UtcDateTime(), nullable=False),
        sa.Column("expires_at", UtcDateTime(), nullable=True),
    )
    op.create_index("ix_machines_project_id", "machines", ["project_id"])
    op.create_table(
        "operations",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("kind", sa.String(64), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("params", sa.JSON(), nullable=False),
        sa.Column("state", sa.JSON(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("owner", sa.String(128), nullable=False),
        sa.Column("actor", sa.String(128), nullable=False),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.Column("updated_at", UtcDateTime(), nullable=False),
    )
    op.create_index("ix_operations_kind", "operations", ["kind"])
    op.create_index("ix_operations_status", "operations", ["status"])
    op.create_table(
        "operation_steps",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column(
            "operation_id", sa.String(36), sa.ForeignKey("operations.id", ondelete="CASCADE"), nullable=False
        ),
        sa.Column("index", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("started_at", UtcDateTime(), nullable=True),
        sa.Column("finished_at", UtcDateTime(), nullable=True),
        sa.UniqueConstraint("operation_id", "index"),
    )
    op.create_index("ix_operation_steps_operation_id", "operation_steps", ["operation_id"])


def downgrade() -> None:
    op.drop_table("operation_steps")
    op.drop_table("operations")
    op.drop_table("machines")
    op.drop_table("projects")
