"""Persistence: SQLAlchemy 2 typed tables, the database handle, migrations and repositories.

PVE is the source of truth for what exists; the store keeps what PVE cannot: projects, machines'
ownership and lineage, leases, and the operations journal.
"""
