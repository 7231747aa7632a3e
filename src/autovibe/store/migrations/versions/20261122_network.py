"""Machines remember the network isolation profile last applied to them.

Revision ID: 20261122_network
Revises: 20261122_usage
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "20261122_network"
down_revision = "20261122_usage"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("machines") as batch:
        batch.add_column(sa.Column("network_profile", sa.String(32), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("machines") as batch:
        batch.drop_column("network_profile")
