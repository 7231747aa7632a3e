"""Fixtures of the usage tests: machine deps on the stepped simulator with the quota guard wired."""

from __future__ import annotations

from typing import Any

import pytest

from autovibe.machines.deploy import DeployHooks, MachineDeps
from autovibe.usage import quotas


@pytest.fixture
def guarded(timed: MachineDeps) -> MachineDeps:
    """Deps with the deploy saga's quota step wired as composition wires it."""

    async def guard(params: Any) -> None:
        quotas.check_create(timed.db, str(params["project"]), now=timed.now())

    timed.hooks = DeployHooks(check_quota=guard)
    return timed
