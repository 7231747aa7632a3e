"""Checkpoints: retention policies (attached to projects and machines), checkpoint marks, schedules.

Revision ID: 20261122_checkpoints
Revises: 20261121_initial
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from autovibe.store.tables import UtcDateTime

revision = "20261122_checkpoints"
down_revision = "20261121_initial"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "retention_policies",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("name", sa.String(64), nullable=False, unique=True),
        sa.Column("rules", sa.JSON(), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("created_at", UtcDateTime(), nullable=False),
    )
    for table in ("projects", "machines"):
        with op.batch_alter_table(table) as batch:
            batch.add_column(sa.Column("retention_policy_id", sa.Integer(), nullable=True))
            batch.create_foreign_key(
                f"fk_{table}_retention_policy_id",
                "retention_policies",
                ["retention_policy_id"],
                ["id"],
                ondelete="RESTRICT",
            )
    op.create_table(
        "checkpoint_marks",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column(
            "machine_id", sa.Integer(), sa.ForeignKey("machines.id", ondelete="CASCADE"), nullable=False
        ),
        sa.Column("name", sa.String(40), nullable=False),
        sa.Column("pinned", sa.Boolean(), nullable=False),
        sa.Column("created_by", sa.String(128), nullable=False),
        sa.Column("operation_id", sa.String(36), nullable=True),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.UniqueConstraint("machine_id", "name"),
    )
    op.create_index("ix_checkpoint_marks_machine_id", "checkpoint_marks", ["machine_id"])
    op.create_table(
        "checkpoint_schedules",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column(
            "project_id", sa.Integer(), sa.ForeignKey("projects.id", ondelete="CASCADE"), nullable=True
        ),
        sa.Column(
            "machine_id", sa.Integer(), sa.ForeignKey("machines.id", ondelete="CASCADE"), nullable=True
        ),
        sa.Column("every_s", sa.Integer(), nullable=False),
        sa.Column("ram", sa.Boolean(), nullable=False),
        sa.Column("prune", sa.Boolean(), nullable=False),
        sa.Column("last_run_at", UtcDateTime(), nullable=True),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.CheckConstraint("(project_id IS NULL) <> (machine_id IS NULL)", name="one_target"),
        sa.UniqueConstraint("project_id"),
        sa.UniqueConstraint("machine_id"),
    )


def downgrade() -> None:
    op.drop_table("checkpoint_schedules")
    op.drop_index("ix_checkpoint_marks_machine_id", "checkpoint_marks")
    op.drop_table("checkpoint_marks")
    for table in ("machines", "projects"):
        with op.batch_alter_table(table) as batch:
            batch.drop_constraint(f"fk_{table}_retention_policy_id", type_="foreignkey")
            batch.drop_column("retention_policy_id")
    op.drop_table("retention_policies")
