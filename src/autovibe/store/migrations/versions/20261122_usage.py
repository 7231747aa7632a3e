"""Usage: sampling series, raw samples, hourly usage, limits and violations, quotas, enforcement.

Revision ID: 20261122_usage
Revises: 20261122_checkpoints
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from autovibe.store.tables import UtcDateTime

revision = "20261122_usage"
down_revision = "20261122_checkpoints"
branch_labels = None
depends_on = None


def _project(nullable: bool = False) -> sa.Column[int]:
    return sa.Column(
        "project_id", sa.Integer(), sa.ForeignKey("projects.id", ondelete="CASCADE"), nullable=nullable
    )


def _machine(*, primary_key: bool = False) -> sa.Column[int]:
    return sa.Column(
        "machine_id",
        sa.Integer(),
        sa.ForeignKey("machines.id", ondelete="CASCADE"),
        nullable=False,
        primary_key=primary_key,
    )


def upgrade() -> None:
    op.create_table(
        "usage_series",
        sa.Column("series", sa.String(64), primary_key=True),
        _project(),
        sa.Column("machine", sa.String(63), nullable=False),
        sa.Column("vmid", sa.Integer(), nullable=False),
        sa.Column("last", sa.JSON(), nullable=False),
        sa.Column("storage_bytes", sa.BigInteger(), nullable=True),
        sa.Column("storage_at", UtcDateTime(), nullable=True),
    )
    op.create_index("ix_usage_series_project_id", "usage_series", ["project_id"])
    op.create_table(
        "usage_samples",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("series", sa.String(64), nullable=False),
        sa.Column("taken_at", UtcDateTime(), nullable=False),
        sa.Column("running", sa.Boolean(), nullable=False),
        sa.Column("cpu", sa.Float(), nullable=False),
        sa.Column("maxcpu", sa.Float(), nullable=False),
        *(sa.Column(name, sa.BigInteger(), nullable=False)
          for name in ("mem", "maxmem", "netin", "netout", "diskread", "diskwrite", "uptime")),
        sa.UniqueConstraint("series", "taken_at"),
    )  # fmt: skip
    op.create_index("ix_usage_samples_series", "usage_samples", ["series"])
    op.create_index("ix_usage_samples_taken_at", "usage_samples", ["taken_at"])
    op.create_table(
        "usage_hourly",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("series", sa.String(64), nullable=False),
        _project(),
        sa.Column("machine", sa.String(63), nullable=False),
        sa.Column("hour", UtcDateTime(), nullable=False),
        sa.Column("cpu_core_hours", sa.Float(), nullable=False),
        sa.Column("mem_gib_hours", sa.Float(), nullable=False),
        *(sa.Column(name, sa.BigInteger(), nullable=False)
          for name in ("net_in_bytes", "net_out_bytes", "disk_read_bytes", "disk_write_bytes")),
        sa.Column("covered_s", sa.Float(), nullable=False),
        sa.Column("gap_s", sa.Float(), nullable=False),
        sa.UniqueConstraint("series", "hour"),
    )  # fmt: skip
    op.create_index("ix_usage_hourly_series", "usage_hourly", ["series"])
    op.create_index("ix_usage_hourly_project_id", "usage_hourly", ["project_id"])
    op.create_index("ix_usage_hourly_hour", "usage_hourly", ["hour"])
    op.create_table(
        "machine_limits",
        _machine(primary_key=True),
        sa.Column("max_cpu_pct", sa.Float(), nullable=True),
        sa.Column("max_mem_pct", sa.Float(), nullable=True),
        sa.Column("max_uptime_s", sa.BigInteger(), nullable=True),
        sa.Column("idle_cpu_pct", sa.Float(), nullable=True),
        sa.Column("idle_for_s", sa.BigInteger(), nullable=True),
    )
    op.create_table(
        "limit_violations",
        sa.Column("id", sa.Integer(), primary_key=True),
        _machine(),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("limit", sa.Float(), nullable=False),
        sa.Column("peak", sa.Float(), nullable=False),
        sa.Column("started_at", UtcDateTime(), nullable=False),
        sa.Column("ended_at", UtcDateTime(), nullable=True),
    )
    op.create_index("ix_limit_violations_machine_id", "limit_violations", ["machine_id"])
    op.create_table(
        "project_quotas",
        sa.Column("id", sa.Integer(), primary_key=True),
        _project(),
        sa.Column("metric", sa.String(32), nullable=False),
        sa.Column("limit", sa.Float(), nullable=False),
        sa.Column("period", sa.String(8), nullable=False),
        sa.UniqueConstraint("project_id", "metric"),
    )
    op.create_index("ix_project_quotas_project_id", "project_quotas", ["project_id"])
    op.create_table(
        "project_enforcement",
        sa.Column(
            "project_id", sa.Integer(), sa.ForeignKey("projects.id", ondelete="CASCADE"), primary_key=True
        ),
        sa.Column("level", sa.String(16), nullable=False),
        sa.Column("since", UtcDateTime(), nullable=False),
        sa.Column("detail", sa.JSON(), nullable=False),
    )
    op.create_table(
        "enforcement_events",
        sa.Column("id", sa.Integer(), primary_key=True),
        _project(nullable=True),
        sa.Column("at", UtcDateTime(), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("details", sa.JSON(), nullable=False),
        sa.Column("operation_id", sa.String(36), nullable=True),
    )
    op.create_index("ix_enforcement_events_project_id", "enforcement_events", ["project_id"])
    op.create_index("ix_enforcement_events_at", "enforcement_events", ["at"])


def downgrade() -> None:
    for table in (
        "enforcement_events", "project_enforcement", "project_quotas", "limit_violations", "machine_limits",
        "usage_hourly", "usage_samples", "usage_series",
    ):  # fmt: skip
        op.drop_table(table)
