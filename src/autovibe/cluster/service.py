"""Cluster-wide reads: the status view and the doctor's checks.

Services receive the ``PveClient`` (keyword-only) and never know whether PVE is real or simulated.
The doctor's privilege check is a pure function of ``GET /access/permissions``
(:func:`missing_privileges`), so it is tested without any cluster.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from autovibe.cluster.models import (
    Check,
    ClusterStatus,
    DoctorReport,
    GuestView,
    NodeView,
    RequiredPrivilege,
    StorageView,
)
from autovibe.cluster.privileges import required_privileges
from autovibe.pve import ClusterResource, PveApiError, PveAuthError, PveClient, PveError, PveTlsError

REQUIRED_PRIVILEGES: tuple[RequiredPrivilege, ...] = required_privileges()
"""What autovibe needs and the ACL path to grant each on, derived from PVE's permission rules for the
calls autovibe makes (:mod:`autovibe.cluster.privileges`). PVE checks VM privileges on ``/vms/{vmid}``,
storage ones on ``/storage/{id}``, SDN on ``/sdn/zones/{zone}/{vnet}``: those must be held on the parent
with propagation. The cluster-wide firewall (IP sets) is checked on ``/`` itself."""

MAX_CLOCK_SKEW = 5.0
"""Seconds of node clock skew the doctor tolerates: PVE tickets, task times and snapshot times are
compared across hosts, and TLS validity starts "now"."""


async def cluster_status(*, pve: PveClient) -> ClusterStatus:
    """The PVE version plus nodes, guests and storages, from one ``/cluster/resources`` read."""
    version = await pve.version()
    rows = await pve.get("/cluster/resources")
    return build_status(version.version, version.release, rows if isinstance(rows, list) else [])


def build_status(version: str, release: str, rows: Iterable[Mapping[str, Any]]) -> ClusterStatus:
    """Sort raw ``/cluster/resources`` rows into the status view (pure; pools and SDN are left out).

    Raw rows rather than ``ClusterResource`` because the view also shows ``lock``, ``content`` and
    ``plugintype``, which the client's model does not keep.
    """
    nodes: list[NodeView] = []
    guests: list[GuestView] = []
    storages: list[StorageView] = []
    for raw in rows:
        row = ClusterResource.model_validate(raw)
        if row.type == "node" and row.node:
            nodes.append(_node_view(row))
        elif row.type in ("qemu", "lxc") and row.vmid is not None:
            guests.append(_guest_view(row, lock=raw.get("lock")))
        elif row.type == "storage" and row.storage:
            storages.append(_storage_view(row, raw))
    return ClusterStatus(
        version=version,
        release=release,
        nodes=tuple(sorted(nodes, key=lambda n: n.name)),
        guests=tuple(sorted(guests, key=lambda g: g.vmid)),
        storages=tuple(sorted(storages, key=lambda s: (s.storage, s.node))),
    )


def _node_view(row: ClusterResource) -> NodeView:
    return NodeView(
        name=row.node or row.id,
        status=row.status or "unknown",
        cpu=row.cpu,
        maxcpu=int(row.maxcpu),
        mem=row.mem,
        maxmem=row.maxmem,
        uptime=row.uptime,
    )


def _guest_view(row: ClusterResource, *, lock: Any) -> GuestView:
    return GuestView(
        vmid=row.vmid or 0,
        name=row.name or "",
        node=row.node or "",
        type="lxc" if row.type == "lxc" else "qemu",
        status=row.status or "unknown",
        template=row.template,
        maxcpu=int(row.maxcpu),
        maxmem=row.maxmem,
        maxdisk=row.maxdisk,
        lock=str(lock) if lock else None,
        tags=row.tags,
    )


def _storage_view(row: ClusterResource, raw: Mapping[str, Any]) -> StorageView:
    content = str(raw.get("content") or "")
    return StorageView(
        storage=row.storage or row.id,
        node=row.node or "",
        status=row.status or "unknown",
        plugin=str(raw.get("plugintype") or ""),
        disk=row.disk,
        maxdisk=row.maxdisk,
        content=tuple(sorted(part for part in content.split(",") if part)),
    )


# ---- privileges (pure) -----------------------------------------------------------------------


def privileges_at(permissions: Mapping[str, Mapping[str, int]], path: str) -> frozenset[str]:
    """The privileges effective on ``path`` according to a ``GET /access/permissions`` answer.

    The answer lists effective privileges per ACL path (inherited ones included). A path it does not
    list inherits from its nearest listed ancestor the privileges marked to propagate (flag 1).
    """
    if path in permissions:
        return frozenset(permissions[path])
    parent = path
    while parent != "/":
        parent = parent.rsplit("/", 1)[0] or "/"
        if parent in permissions:
            return frozenset(priv for priv, propagate in permissions[parent].items() if propagate)
    return frozenset()


def privileges_below(permissions: Mapping[str, Mapping[str, int]], path: str) -> frozenset[str]:
    """The privileges that reach the objects below ``path`` (``/vms`` -> ``/vms/<vmid>``): those held on
    ``path`` with the propagate flag, or inherited from an ancestor with it."""
    parent = path
    while parent not in permissions:
        if parent == "/":
            return frozenset()
        parent = parent.rsplit("/", 1)[0] or "/"
    return frozenset(priv for priv, propagate in permissions[parent].items() if propagate)


def missing_privileges(
    permissions: Mapping[str, Mapping[str, int]],
    required: Sequence[RequiredPrivilege] = REQUIRED_PRIVILEGES,
) -> list[RequiredPrivilege]:
    """The required privileges the credentials lack, in ``required`` order (empty = all held).

    A privilege that must propagate counts only when it reaches below its path: granted on ``/vms``
    without propagation it covers no VM.
    """
    return [
        need
        for need in required
        if need.name not in (privileges_below if need.propagate else privileges_at)(permissions, need.path)
    ]


def missing_by_path(missing: Iterable[RequiredPrivilege]) -> dict[str, list[str]]:
    """Missing privilege names grouped by ACL path, in the order first seen."""
    grouped: dict[str, list[str]] = {}
    for need in missing:
        grouped.setdefault(need.path, []).append(need.name)
    return grouped


# ---- doctor ----------------------------------------------------------------------------------


async def run_doctor(
    *,
    pve: PveClient,
    tls_mode: str,
    clock: Callable[[], float],
    authid: str | None = None,
    max_skew: float = MAX_CLOCK_SKEW,
) -> DoctorReport:
    """Check reachability, TLS trust, authentication, node clocks and privileges, in that order.

    ``tls_mode`` describes how the host is trusted (shown as the TLS finding); ``clock`` is the
    client's notion of now (compared with each node's ``/nodes/{node}/time``); ``authid`` names the
    credentials in hints. Never raises for a PVE failure: each becomes a failed check, and checks
    that depend on a failed one are skipped.
    """
    first = await _first_contact(pve, tls_mode=tls_mode)
    if any(check.status != "ok" for check in first):
        skipped = [Check(name=name, status="skip", detail="not checked") for name in ("clock", "privileges")]
        return DoctorReport(checks=(*first, *skipped))
    clock_check = await _check_clock(pve, clock=clock, max_skew=max_skew)
    privilege_check = await _check_privileges(pve, authid=authid)
    return DoctorReport(checks=(*first, clock_check, privilege_check))


async def _first_contact(pve: PveClient, *, tls_mode: str) -> tuple[Check, Check, Check]:
    """Reachability, TLS and auth from one ``GET /version`` (it needs a valid login, PVE 'user: all')."""
    started = time.perf_counter()
    try:
        version = await pve.version()
    except PveTlsError as exc:
        return (
            Check(name="reachability", status="fail", detail=str(exc)),
            Check(name="tls", status="fail", detail=tls_mode, hint=_TLS_HINT),
            Check(name="auth", status="skip", detail="not checked"),
        )
    except PveApiError as exc:
        # PVE answered, so the network and TLS are fine; the credentials are not.
        reached = Check(name="reachability", status="ok", detail=f"PVE answered (HTTP {exc.status})")
        hint = exc.hint if isinstance(exc, PveAuthError) else None
        return reached, Check(name="tls", status="ok", detail=tls_mode), _auth_failed(exc, hint)
    except PveError as exc:
        return (
            Check(name="reachability", status="fail", detail=str(exc), hint=exc.hint or _REACH_HINT),
            Check(name="tls", status="skip", detail=tls_mode),
            Check(name="auth", status="skip", detail="not checked"),
        )
    elapsed_ms = (time.perf_counter() - started) * 1000
    return (
        Check(
            name="reachability", status="ok", detail=f"PVE {version.version} answered in {elapsed_ms:.0f} ms"
        ),
        Check(name="tls", status="ok", detail=tls_mode),
        Check(name="auth", status="ok", detail="credentials accepted"),
    )


_TLS_HINT = (
    "pin the node certificate with --fingerprint / AUTOVIBE_FINGERPRINT (Node > System > Certificates), "
    "or set ca_bundle to /etc/pve/pve-root-ca.pem"
)
_REACH_HINT = "check pve_url, DNS and that port 8006 is open from here"


def _auth_failed(exc: PveApiError, hint: str | None) -> Check:
    return Check(
        name="auth",
        status="fail",
        detail=exc.message,
        hint=hint or "check the API token or user/password, and that the user and token are enabled",
    )


async def _check_clock(pve: PveClient, *, clock: Callable[[], float], max_skew: float) -> Check:
    try:
        nodes = [node.node for node in await pve.nodes() if node.online]
        skews = await asyncio.gather(*(_node_skew(pve, node, clock) for node in nodes))
    except PveError as exc:
        return Check(name="clock", status="fail", detail=f"cannot read node time: {exc}", hint=exc.hint)
    if not skews:
        return Check(name="clock", status="fail", detail="no node is online")
    detail = ", ".join(f"{node} {skew:+.1f} s" for node, skew in zip(nodes, skews, strict=True))
    worst = max(abs(skew) for skew in skews)
    if worst > max_skew:
        return Check(
            name="clock",
            status="fail",
            detail=f"{detail} (limit ±{max_skew:.0f} s)",
            hint="run NTP (chrony) on the nodes and on this machine",
        )
    return Check(name="clock", status="ok", detail=f"{detail} (limit ±{max_skew:.0f} s)")


async def _node_skew(pve: PveClient, node: str, clock: Callable[[], float]) -> float:
    before = clock()
    answer = await pve.get(f"/nodes/{node}/time")
    after = clock()
    # PVE reports whole seconds; compare with the middle of the round trip.
    return float(answer["time"]) - (before + after) / 2


async def _check_privileges(pve: PveClient, *, authid: str | None) -> Check:
    try:
        permissions = await pve.permissions()
    except PveError as exc:
        return Check(
            name="privileges", status="fail", detail=f"cannot read permissions: {exc}", hint=exc.hint
        )
    missing = missing_privileges(permissions)
    if not missing:
        paths = len({need.path for need in REQUIRED_PRIVILEGES})
        return Check(
            name="privileges",
            status="ok",
            detail=f"all {len(REQUIRED_PRIVILEGES)} required privileges held on {paths} ACL paths",
        )
    listed = "; ".join(
        f"missing on {path}: {', '.join(names)}" for path, names in missing_by_path(missing).items()
    )
    who = f"--tokens '{authid}'" if authid and "!" in authid else f"--users '{authid or 'USER@REALM'}'"
    return Check(
        name="privileges",
        status="fail",
        detail=listed,
        hint="run `autovibe pve role --apply` with an administrator's credentials, or grant the roles "
        f"`autovibe pve role --print` shows to {who} (a privilege-separated token needs its own ACLs too)",
    )
