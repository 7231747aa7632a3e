"""One router per area. ``ROUTERS`` are mounted under ``/api/v1`` with the common error responses."""

from __future__ import annotations

from fastapi import APIRouter

from autovibe.api.routers import (
    approvals,
    audit,
    checkpoints,
    hub,
    jobs,
    limits,
    machines,
    network,
    operations,
    projects,
    quotas,
    retention,
    roles,
    tokens,
    usage,
    users,
)

ROUTERS: tuple[APIRouter, ...] = (
    projects.router,
    machines.router,
    checkpoints.router,
    retention.router,
    usage.router,
    quotas.router,
    limits.router,
    network.router,
    operations.router,
    jobs.router,
    hub.router,
    approvals.router,
    audit.router,
    users.router,
    tokens.router,
    roles.router,
)
