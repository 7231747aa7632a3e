"""The machines invariant, checked the way an operator would: list PVE, list the store, compare.

After any deploy (with faults, after a crash and ``ops resume``) every requested machine must be either
*deployed* — a store row, and a PVE VM of that vmid with that name, running, unlocked, on the recorded
node, carrying the marker of the operation that recorded it — or *absent* from both PVE and the store.
Nothing else may exist: no orphan VM (a non-template guest without a row), no dangling row (a row
without its VM), no name twice in PVE, and no operation left unfinished in the journal.

PVE is read through ``/cluster/resources`` and each guest's config, with the real ``PveClient``; a
``SimApp`` (for instance one reopened from another process's state file) is wrapped in an in-process
client for that, so the check sees exactly what any PVE client would.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass

import httpx
from sqlalchemy import select

from autovibe.machines.deploy import KIND as DEPLOY_KIND
from autovibe.machines.deploy import marker
from autovibe.operations.journal import Journal
from autovibe.operations.models import OperationRecord, OpStatus
from autovibe.pve import PveClient, TokenAuth
from autovibe.sim.app import SimApp
from autovibe.store.db import Database
from autovibe.store.tables import Machine


@dataclass(frozen=True)
class Guest:
    """A non-template VM as PVE reports it."""

    vmid: int
    name: str
    node: str
    status: str
    lock: str | None
    description: str


@dataclass(frozen=True)
class Row:
    """A machine row of the store."""

    name: str
    vmid: int
    node: str
    operation_id: str | None


@dataclass(frozen=True)
class Audit:
    """One look at both sides; :meth:`assert_clean` states the invariant."""

    guests: tuple[Guest, ...]
    rows: tuple[Row, ...]
    operations: tuple[OperationRecord, ...]

    def deployed(self) -> set[str]:
        return {row.name for row in self.rows}

    def assert_clean(self, requested: Iterable[str], *, running: bool = True) -> set[str]:
        """Assert the invariant for the machines named ``requested``; return the deployed names."""
        requested = set(requested)
        by_vmid = {guest.vmid: guest for guest in self.guests}
        rows_by_vmid = {row.vmid: row for row in self.rows}
        names = Counter(guest.name for guest in self.guests)
        problems: list[str] = []
        problems += [f"VM name {name!r} exists {n} times in PVE" for name, n in names.items() if n > 1]
        problems += [
            f"orphan VM {g.vmid} ({g.name!r}, {g.status}, lock={g.lock}) has no store row"
            for g in self.guests
            if g.vmid not in rows_by_vmid
        ]
        for row in self.rows:
            problems += _row_problems(row, by_vmid.get(row.vmid), running=running)
        problems += [
            f"store row {row.name!r} was never requested" for row in self.rows if row.name not in requested
        ]
        problems += _journal_problems(self.operations, self.rows)
        assert not problems, "cluster and store disagree:\n  " + "\n  ".join(problems)
        return self.deployed()


def _row_problems(row: Row, guest: Guest | None, *, running: bool) -> list[str]:
    if guest is None:
        return [f"dangling store row {row.name!r}: VM {row.vmid} does not exist in PVE"]
    problems = []
    if guest.name != row.name:
        problems.append(f"VM {row.vmid} is named {guest.name!r} in PVE but {row.name!r} in the store")
    if guest.node != row.node:
        problems.append(f"VM {row.vmid} is on {guest.node} in PVE but {row.node} in the store")
    if running and guest.status != "running":
        problems.append(f"machine {row.name!r} (VM {row.vmid}) is {guest.status}, not running")
    if guest.lock is not None:
        problems.append(f"machine {row.name!r} (VM {row.vmid}) is still locked ({guest.lock})")
    if row.operation_id is None or marker(row.operation_id) not in guest.description:
        problems.append(f"VM {row.vmid} does not carry the marker of operation {row.operation_id}")
    return problems


def _journal_problems(operations: Iterable[OperationRecord], rows: Iterable[Row]) -> list[str]:
    recorded = {row.operation_id for row in rows}
    problems = []
    for op in operations:
        if not op.status.finished:
            step = op.current_step
            where = f"{step.name}={step.status}" if step else "no step"
            problems.append(f"operation {op.id} ({op.kind}) is {op.status} at {where}")
        elif op.kind == DEPLOY_KIND and (op.status is OpStatus.COMPLETED) != (op.id in recorded):
            problems.append(
                f"deploy {op.id} is {op.status} but its machine is {_recorded(op.id in recorded)}"
            )
    return problems


def _recorded(yes: bool) -> str:
    return "recorded" if yes else "not recorded"


async def list_guests(pve: PveClient) -> tuple[Guest, ...]:
    """Every non-template QEMU guest: one ``/cluster/resources`` read, then each one's config."""
    guests = []
    for res in await pve.cluster_resources(type="vm"):
        if res.template or res.type != "qemu" or res.vmid is None:
            continue
        config = await pve.get(f"/nodes/{res.node}/qemu/{res.vmid}/config")
        guests.append(
            Guest(
                vmid=int(res.vmid),
                name=str(res.name),
                node=str(res.node),
                status=str(res.status),
                lock=config.get("lock"),
                description=str(config.get("description", "")),
            )
        )
    return tuple(sorted(guests, key=lambda g: g.vmid))


def list_rows(db: Database) -> tuple[Row, ...]:
    with db.session() as session:
        rows = session.scalars(select(Machine).order_by(Machine.vmid))
        return tuple(Row(m.name, m.vmid, m.node, m.operation_id) for m in rows)


async def audit(pve: PveClient, db: Database) -> Audit:
    return Audit(
        guests=await list_guests(pve),
        rows=list_rows(db),
        operations=tuple(Journal(db).recent(limit=100_000)),
    )


@asynccontextmanager
async def sim_client(sim: SimApp) -> AsyncIterator[PveClient]:
    """A ``PveClient`` on ``sim`` in process (no sockets), as the embedded CLI wires it."""
    client = PveClient(
        "https://pve1:8006",
        auth=TokenAuth(sim.ensure_token()),
        transport=httpx.ASGITransport(app=sim),
        clock=sim.clock.now,
    )
    async with client:
        yield client


async def audit_sim(sim: SimApp, db: Database) -> Audit:
    async with sim_client(sim) as pve:
        return await audit(pve, db)


__all__ = ["Audit", "Guest", "Row", "audit", "audit_sim", "list_guests", "list_rows", "sim_client"]
