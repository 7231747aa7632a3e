"""Sampling: one ``/cluster/resources?type=vm`` read per cycle, whatever the number of guests.

Each managed machine's new sample is integrated against its previous one (kept on its
:class:`~autovibe.store.tables.UsageSeries` row) with the pure accounting rules, and the result is
added to that machine's hourly usage rows, split at hour boundaries. Quotas and reports then add up
hourly rows instead of re-reading raw samples, and raw samples are only kept for
``usage.raw_retention_h`` (sparklines, limits, idle detection).

Storage is measured separately and less often (``usage.storage_every_s``): the sizes of each machine's
volumes (disks, snapshot and RAM-state volumes) from the storage content listings, one request per
storage instance, since PVE reports ``disk`` as 0 for VMs in ``/cluster/resources``.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import delete, insert, select
from sqlalchemy.orm import Session

from autovibe.machines.deploy import MachineDeps
from autovibe.pve import ClusterResource
from autovibe.store.db import Database
from autovibe.store.tables import Machine, UsageHourly, UsageSample, UsageSeries
from autovibe.usage.accounting import Sample, Usage, integrate

HOUR = 3600.0
_VOLUME_CONTENT = ("images", "rootdir")


def series_key(machine: Machine) -> str:
    """A key that outlives the machine's row: the deploy that created it (unique per machine)."""
    return machine.operation_id or f"machine-{machine.id}"


def to_sample(resource: ClusterResource, at: float) -> Sample:
    running = resource.status == "running"
    return Sample(
        time=at,
        running=running,
        cpu=float(resource.cpu) if running else 0.0,
        maxcpu=float(resource.maxcpu),
        mem=int(resource.mem) if running else 0,
        netin=int(resource.netin),
        netout=int(resource.netout),
        diskread=int(resource.diskread),
        diskwrite=int(resource.diskwrite),
        uptime=int(resource.uptime) if running else 0,
    )


@dataclass(frozen=True)
class Sampled:
    """One managed machine's sample from this cycle."""

    series: str
    machine_id: int
    machine: str
    project_id: int
    vmid: int
    node: str
    maxmem: int
    sample: Sample


async def read(deps: MachineDeps, *, now: datetime) -> list[Sampled]:
    """This cycle's samples of every managed machine PVE still has: exactly one PVE request."""
    # Fresh: each sample pairs these counters with the time it is taken, so a shared answer would not do.
    answer = await deps.pve.cluster_resources(type="vm", fresh=True)
    resources = {int(r.vmid): r for r in answer if r.vmid is not None}
    with deps.db.session() as session:
        rows = [(m.id, m.name, m.vmid, m.project_id, series_key(m)) for m in session.scalars(select(Machine))]
    at = now.timestamp()
    out = []
    for machine_id, name, vmid, project_id, series in rows:
        resource = resources.get(vmid)
        if resource is None or resource.template:
            continue
        out.append(
            Sampled(
                series,
                machine_id,
                name,
                project_id,
                vmid,
                str(resource.node),
                int(resource.maxmem),
                to_sample(resource, at),
            )
        )
    return out


def _hour(ts: float) -> float:
    return ts - ts % HOUR


def _by_hour(previous: Sample, current: Sample, max_gap_s: float) -> Iterable[tuple[float, Usage]]:
    """The usage between two samples, cut at UTC hour boundaries."""
    start = previous.time
    while start < current.time:
        end = min(_hour(start) + HOUR, current.time)
        yield _hour(start), integrate([previous, current], start=start, end=end, max_gap_s=max_gap_s)
        start = end


def record(db: Database, sampled: Sequence[Sampled], *, max_gap_s: float) -> None:
    """Store this cycle's samples and add what each machine used since its last sample to its hours."""
    if not sampled:
        return
    with db.session() as session:
        keys = [s.series for s in sampled]
        series = {
            row.series: row
            for row in session.scalars(select(UsageSeries).where(UsageSeries.series.in_(keys)))
        }
        deltas: dict[tuple[str, float], Usage] = defaultdict(Usage.zero)
        owners: dict[str, Sampled] = {}
        for item in sampled:
            owners[item.series] = item
            row = series.get(item.series)
            if row is None:
                row = UsageSeries(series=item.series, project_id=item.project_id, machine=item.machine,
                                  vmid=item.vmid, last={})  # fmt: skip
                session.add(row)
            elif row.last:
                previous = Sample(**row.last)
                if previous.time < item.sample.time:
                    for hour, usage in _by_hour(previous, item.sample, max_gap_s):
                        deltas[(item.series, hour)] = deltas[(item.series, hour)] + usage
            row.project_id, row.machine, row.vmid, row.last = (
                item.project_id,
                item.machine,
                item.vmid,
                asdict(item.sample),
            )
        _add_hours(session, deltas, owners)
        session.execute(insert(UsageSample), [_sample_row(s) for s in sampled])


def _sample_row(item: Sampled) -> dict[str, Any]:
    s = item.sample
    return {
        "series": item.series, "taken_at": datetime.fromtimestamp(s.time, UTC), "running": s.running,
        "cpu": s.cpu, "maxcpu": s.maxcpu, "mem": s.mem, "maxmem": item.maxmem, "netin": s.netin,
        "netout": s.netout, "diskread": s.diskread, "diskwrite": s.diskwrite, "uptime": s.uptime,
    }  # fmt: skip


def _add_hours(session: Session, deltas: dict[tuple[str, float], Usage], owners: dict[str, Sampled]) -> None:
    if not deltas:
        return
    hours = {datetime.fromtimestamp(h, UTC) for _, h in deltas}
    existing = {
        (row.series, row.hour.timestamp()): row
        for row in session.scalars(
            select(UsageHourly).where(
                UsageHourly.series.in_({s for s, _ in deltas}), UsageHourly.hour.in_(hours)
            )
        )
    }
    for (series, hour), usage in deltas.items():
        row = existing.get((series, hour))
        if row is None:
            owner = owners[series]
            row = UsageHourly(
                series=series, project_id=owner.project_id, machine=owner.machine,
                hour=datetime.fromtimestamp(hour, UTC), cpu_core_hours=0.0, mem_gib_hours=0.0, net_in_bytes=0,
                net_out_bytes=0, disk_read_bytes=0, disk_write_bytes=0, covered_s=0.0, gap_s=0.0,
            )  # fmt: skip
            session.add(row)
        row.cpu_core_hours += usage.cpu_core_hours
        row.mem_gib_hours += usage.mem_gib_hours
        row.net_in_bytes += usage.net_in_bytes
        row.net_out_bytes += usage.net_out_bytes
        row.disk_read_bytes += usage.disk_read_bytes
        row.disk_write_bytes += usage.disk_write_bytes
        row.covered_s += usage.covered_s
        row.gap_s += usage.gap_s


def prune_raw(db: Database, *, now: datetime, keep: timedelta) -> int:
    """Delete raw samples older than ``keep`` (their usage is already in the hourly rows)."""
    with db.session() as session:
        result = session.execute(delete(UsageSample).where(UsageSample.taken_at < now - keep))
        return int(getattr(result, "rowcount", 0) or 0)


# ---- storage ---------------------------------------------------------------------------------------
async def measure_storage(deps: MachineDeps, *, now: datetime) -> dict[int, int]:
    """Bytes of every guest's volumes (disks, snapshot and RAM-state volumes), by vmid.

    One listing per storage instance that holds guest images: per node for local storage, once for
    shared storage. Also stores the figures on each managed machine's series.
    """
    storages: list[dict[str, Any]] = await deps.pve.get("/cluster/resources", type="storage")
    listed: set[str] = set()
    sizes: dict[int, int] = defaultdict(int)
    for storage in storages:
        content = str(storage.get("content", ""))
        if storage.get("status") not in (None, "available") or not any(c in content for c in _VOLUME_CONTENT):
            continue
        shared = bool(int(storage.get("shared", 0) or 0))
        key = str(storage["storage"]) if shared else f"{storage['storage']}@{storage['node']}"
        if key in listed:
            continue
        listed.add(key)
        volumes = await deps.pve.get(f"/nodes/{storage['node']}/storage/{storage['storage']}/content")
        for volume in volumes:
            if volume.get("vmid") is not None and volume.get("content") in _VOLUME_CONTENT:
                sizes[int(volume["vmid"])] += int(volume.get("size") or 0)
    with deps.db.session() as session:
        for row in session.scalars(select(UsageSeries)):
            if row.vmid in sizes:
                row.storage_bytes, row.storage_at = sizes[row.vmid], now
    return dict(sizes)


def storage_due(db: Database, *, now: datetime, every_s: float) -> bool:
    with db.session() as session:
        latest = session.scalars(
            select(UsageSeries.storage_at).where(UsageSeries.storage_at.is_not(None)).order_by(
                UsageSeries.storage_at.desc()
            ).limit(1)
        ).first()  # fmt: skip
    return latest is None or (now - latest).total_seconds() >= every_s
