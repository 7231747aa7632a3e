"""Route registry: PVE handlers declare the schema path they implement.

A handler receives a ``Call`` (cluster state, caller identity, validated parameters, simulated time)
and returns plain data for the ``{"data": ...}`` envelope, or a ``Reply`` when it must add ``total``.
Parameters arrive already checked against the PVE schema and coerced (integers as int, booleans as
bool, everything else as str); path placeholders such as ``{vmid}`` are in ``params`` too.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from autovibe.sim.cluster import Cluster


@dataclass(frozen=True)
class Identity:
    """Who is calling: a user (``root@pam``) or one of its API tokens (``root@pam!ci``)."""

    userid: str
    tokenid: str | None = None

    @property
    def authid(self) -> str:
        """The id PVE writes into UPIDs and ACLs: ``user@realm`` or ``user@realm!token``."""
        return f"{self.userid}!{self.tokenid}" if self.tokenid else self.userid


@dataclass
class Call:
    cluster: Cluster
    identity: Identity | None
    params: dict[str, Any]
    now: float
    method: str = "GET"
    path: str = "/"


@dataclass
class Reply:
    data: Any
    total: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)


Handler = Callable[[Call], Any]


@dataclass(frozen=True)
class Route:
    method: str
    path: str
    handler: Handler


ROUTES: dict[tuple[str, str], Route] = {}


def route(method: str, path: str) -> Callable[[Handler], Handler]:
    """Register ``handler`` for ``method`` on the schema path template ``path``."""

    def register(handler: Handler) -> Handler:
        key = (method, path)
        if key in ROUTES:
            raise RuntimeError(f"duplicate simulator route {method} {path}")
        ROUTES[key] = Route(method, path, handler)
        return handler

    return register
