"""The hub itself: what it manages, and its replicas."""

from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter
from pydantic import BaseModel

from autovibe import __version__
from autovibe.api.deps import Caller, HubDep
from autovibe.composition import describe_target

router = APIRouter(prefix="/hub", tags=["hub"])


class ReplicaRead(BaseModel):
    id: str
    leader: bool
    started_at: datetime
    heartbeat_at: datetime


class HubInfo(BaseModel):
    """``target`` names the PVE cluster (or simulated one) the hub drives; ``simulated`` is true for the
    embedded simulator; ``replica`` is the one answering, ``replicas`` all that beat recently."""

    version: str
    target: str
    simulated: bool
    replica: str
    leader: bool
    replicas: list[ReplicaRead]


@router.get("", response_model=HubInfo)
def hub_info(hub: HubDep, _identity: Caller) -> HubInfo:
    """What this hub drives and which replicas serve it (any authenticated caller)."""
    return HubInfo(
        version=__version__,
        target=describe_target(hub.settings),
        simulated=hub.settings.is_simulated,
        replica=hub.replica,
        leader=hub.is_leader,
        replicas=[
            ReplicaRead(id=r.id, leader=r.leader, started_at=r.started_at, heartbeat_at=r.heartbeat_at)
            for r in hub.replicas.alive()
        ],
    )
