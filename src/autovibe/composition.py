"""The composition root: the only place that decides between a real PVE and the embedded simulator.

Faces call :func:`open_pve` (or :func:`open_connection` when they also need to describe the target)
with the settings built at their edge, and hand the client to services::

    async with open_pve(settings) as pve:
        status = await cluster_service.cluster_status(pve=pve)

Without ``pve_url`` the client talks to an in-process simulator through ``httpx.ASGITransport``:
the same client code, no sockets, state kept in ``settings.sim_state_path`` so successive runs
share one simulated cluster. The simulator is imported only on that path.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from autovibe.errors import AutovibeUnavailable
from autovibe.pve import PasswordAuth, PveAuth, PveClient, PveTimeouts, TlsTrust, TokenAuth
from autovibe.pve.breaker import CircuitBreaker
from autovibe.settings import Settings

if TYPE_CHECKING:
    from autovibe.machines.deploy import MachineDeps
    from autovibe.machines.profiles import Profile
    from autovibe.network.service import NetworkContext
    from autovibe.security.gate import Gate, Permit
    from autovibe.security.identity import Identity
    from autovibe.sim.app import SimApp
    from autovibe.store.db import Database

LOCAL_ACTOR = "local-admin"
"""Who local CLI use acts as (DESIGN §4: the local admin identity; the API will require tokens)."""

SIM_BASE_URL = "https://pve1:8006"
"""The URL the in-process client uses; ASGITransport never resolves it, but UPIDs and logs show it."""

SANDBOX_TARGET = "simulated cluster (embedded, in memory: nothing you run here touches your clusters)"


@dataclass(frozen=True)
class Connection:
    """A ready client plus what faces and the doctor need to say about it.

    ``clock`` is "now" in the client's world: wall-clock time for a real PVE, the simulator's
    (possibly accelerated) clock for the embedded one, so ticket ages and node clock skew compare
    like with like.
    """

    pve: PveClient
    target: str
    tls_mode: str
    authid: str | None
    clock: Callable[[], float]
    sandbox: SimApp | None = None
    """The demo's in-memory simulator (:func:`open_sandbox` only), so the tour can give a guest a load
    profile and move simulated time on; ``None`` for every other connection."""


class SimulatorUnavailable(AutovibeUnavailable):
    """The embedded simulator's state file cannot be read or written."""


def describe_target(settings: Settings) -> str:
    """One line naming the target: ``PVE https://host:8006``, ``simulated cluster (embedded, …)``, or
    ``hub https://…`` when commands go to a remote hub."""
    if settings.hub_url is not None:
        return f"hub {settings.hub_url}"
    if settings.pve_url is None:
        return f"simulated cluster (embedded, state {_tilde(settings.sim_state_path)})"
    return f"PVE {settings.pve_url}"


def describe_tls(settings: Settings) -> str:
    """How the PVE host's certificate is trusted, for the doctor and ``--verbose`` output."""
    if settings.pve_url is None:
        return "in-process (embedded simulator, no network)"
    if settings.pve_url.startswith("http://"):
        return "none: plain HTTP to a loopback address"
    if settings.fingerprint is not None:
        return f"pinned certificate, SHA-256 {settings.fingerprint[:11]}…"
    if settings.ca_bundle is not None:
        return f"CA bundle {_tilde(settings.ca_bundle)}"
    return "system CA store"


@asynccontextmanager
async def open_pve(settings: Settings) -> AsyncIterator[PveClient]:
    """A ``PveClient`` for the configured target, closed on exit. See :func:`open_connection`."""
    async with open_connection(settings) as connection:
        yield connection.pve


@asynccontextmanager
async def open_connection(
    settings: Settings, *, breaker: CircuitBreaker | None = None
) -> AsyncIterator[Connection]:
    """Build the client from ``settings``: real PVE when ``pve_url`` is set, else the embedded sim.

    ``breaker`` (the hub's) makes a dead PVE endpoint fail fast instead of timing out every call."""
    if settings.pve_url is None:
        sim = _open_simulator(settings.sim_state_path, speed=settings.sim_speed)
        async with _simulated(sim, settings, target=describe_target(settings), breaker=breaker) as connection:
            yield connection
        return
    auth = _auth(settings)
    client = PveClient(
        settings.pve_url,
        auth=auth,
        # Settings refuse verify_tls=false unless a pin or CA is given, and either one replaces
        # the system store here, so the unsafe TlsTrust(verify=False) is never built.
        tls=TlsTrust(ca_bundle=settings.ca_bundle, fingerprint=settings.fingerprint),
        timeouts=_timeouts(settings),
        node_concurrency=settings.node_concurrency,
        breaker=breaker,
    )
    authid = auth.token_id if isinstance(auth, TokenAuth) else settings.pve_user
    async with client:
        yield Connection(client, describe_target(settings), describe_tls(settings), authid, time.time)


@asynccontextmanager
async def open_sandbox(settings: Settings) -> AsyncIterator[Connection]:
    """A fresh in-memory simulated cluster (three nodes, templates 9000/9001) for the demo.

    Ignores ``pve_url`` and the persisted simulator on purpose: a tour must never touch a real
    cluster or the user's simulated one. Runs at ``settings.sim_speed``.
    """
    from autovibe.sim.app import SimApp

    sim = SimApp.open(None, speed=settings.sim_speed)
    async with _simulated(sim, settings, target=SANDBOX_TARGET) as connection:
        yield dataclasses.replace(connection, sandbox=sim)


@asynccontextmanager
async def _simulated(
    sim: SimApp, settings: Settings, *, target: str, breaker: CircuitBreaker | None = None
) -> AsyncIterator[Connection]:
    import httpx

    token = sim.ensure_token()
    auth = TokenAuth(token)
    client = PveClient(
        SIM_BASE_URL,
        auth=auth,
        transport=httpx.ASGITransport(app=sim),
        timeouts=_timeouts(settings),
        node_concurrency=settings.node_concurrency,
        clock=sim.clock.now,
        breaker=breaker,
    )
    async with client:
        yield Connection(client, target, describe_tls(settings), auth.token_id, sim.clock.now)


def _open_simulator(state_path: Path, *, speed: float) -> SimApp:
    from autovibe.sim.app import SimApp

    try:
        return SimApp.open(state_path, speed=speed)
    except (OSError, ValueError) as exc:  # unreadable file, bad JSON, unknown state format
        raise SimulatorUnavailable(
            f"cannot open the simulated cluster at {_tilde(state_path)}: {exc}",
            hint=f"remove {state_path} to start a fresh simulated cluster, or pass --sim-state",
        ) from exc


def _auth(settings: Settings) -> PveAuth:
    if settings.pve_token is not None:
        return TokenAuth(settings.pve_token)
    if settings.pve_user is not None and settings.pve_password is not None:
        return PasswordAuth(settings.pve_user, settings.pve_password)
    # Unreachable: Settings refuses a pve_url without credentials.
    raise AssertionError("settings validated without credentials")


def _timeouts(settings: Settings) -> PveTimeouts:
    return PveTimeouts(connect=settings.timeouts.connect, read=settings.timeouts.read)


def _tilde(path: Path) -> str:
    try:
        return f"~/{path.relative_to(Path.home())}"
    except ValueError:
        return str(path)


def open_store(settings: Settings) -> Database:
    """The store, migrated to the newest schema (first use creates it)."""
    from autovibe.store.db import Database

    return Database.open(settings.store_url)


@contextmanager
def store(settings: Settings) -> Iterator[Database]:
    """The migrated store for one command, disposed of when the block ends."""
    db = open_store(settings)
    try:
        yield db
    finally:
        db.dispose()


def profiles(settings: Settings) -> dict[str, Profile]:
    from autovibe.machines.profiles import load_profiles

    return load_profiles(settings.profiles)


async def target_time(settings: Settings) -> datetime:
    """ "Now" in the target's world (:attr:`Connection.clock`): the simulator's own time for the
    embedded one, the wall clock for a real PVE. Usage and quota periods are read in this time."""
    async with open_connection(settings) as connection:
        return _as_datetime(connection.clock)()


@asynccontextmanager
async def open_machines(settings: Settings, *, metered: bool = False) -> AsyncIterator[MachineDeps]:
    """Everything machine operations need: the PVE client, the store, the task gate.

    ``metered`` puts the deps' ``now`` on the target's clock (see :func:`on_target_clock`): for the
    usage pass and quota enforcement. Leases, schedules and checkpoint names stay on the wall clock.
    """
    db = open_store(settings)
    try:
        async with open_connection(settings) as connection:
            deps = machine_deps(settings, connection.pve, db, clock=connection.clock)
            yield on_target_clock(deps, connection.clock) if metered else deps
    finally:
        db.dispose()


def machine_deps(
    settings: Settings, pve: PveClient, db: Database, *, clock: Callable[[], float] = time.time
) -> MachineDeps:
    """Machine collaborators on an existing client and store (the demo's sandbox uses this too).

    ``clock`` is the target's time (``Connection.clock``); the quota guard reads usage in it.
    """
    from autovibe.machines.deploy import DeployHooks, MachineDeps
    from autovibe.machines.scheduler import TaskGate, TaskLimits

    limits = TaskLimits(per_node=settings.tasks_per_node, per_template=settings.tasks_per_template)
    deps = MachineDeps(
        pve=pve,
        db=db,
        gate=TaskGate(limits=limits),
        identity=identity(settings, db),
        security=gate(settings, db),
    )
    deps.hooks = DeployHooks(
        check_quota=_quota_guard(db, _as_datetime(clock)),
        apply_network=_network_hook(deps, network_context(settings)),
    )
    return deps


def gate(settings: Settings, db: Database) -> Gate:
    """The security gate with the configured thresholds."""
    from autovibe.security.gate import Gate

    sec = settings.security
    return Gate(
        db,
        approve_at=sec.approve_at,
        deny_at=sec.deny_at,
        two_person=sec.two_person,
        audit_key=audit_key(settings),
    )


def audit_key(settings: Settings) -> bytes | None:
    """The HMAC key of the audit chain, when ``security.audit_key_file`` is set (created on first use)."""
    from autovibe.security.identity import server_key_from

    path = settings.security.audit_key_file
    return None if path is None else server_key_from(path)


def admin_action(
    settings: Settings,
    db: Database,
    action: str,
    target: str,
    *,
    project: str | None = None,
    params: Mapping[str, Any] | None = None,
    details: Mapping[str, Any] | None = None,
) -> Permit:
    """The gate for an administrative action of this invocation's identity (``with admin_action(...):``)."""
    from autovibe.security.risk import Subject

    return gate(settings, db).guard_sync(
        identity(settings, db),
        action,
        target=target,
        project=project,
        subject=Subject(action, details=dict(details or {})),
        params=params,
    )


def token_key_path(settings: Settings | None = None) -> Path:
    """The server key API token hashes are keyed with (created 0600 on first use): ``token_key_file``
    when set (a mounted secret on a hub), else under the XDG config directory."""
    import platformdirs

    if settings is not None and settings.token_key_file is not None:
        return settings.token_key_file
    return platformdirs.user_config_path("autovibe") / "token.key"


def token_key(settings: Settings) -> bytes:
    """The key itself (see :func:`token_key_path`)."""
    from autovibe.security.identity import server_key_from

    return server_key_from(token_key_path(settings))


def identity(settings: Settings, db: Database) -> Identity:
    """Who this invocation acts as: the user of ``settings.token`` when one is given (checked against
    the store), else the local admin (DESIGN §4: local CLI use acts as the local admin)."""
    from datetime import UTC, datetime

    from autovibe.security.identity import LOCAL_ADMIN, authenticate, server_key_from

    if settings.token is None:
        return LOCAL_ADMIN
    key = server_key_from(token_key_path(settings))
    return authenticate(db, settings.token.get_secret_value(), key=key, now=datetime.now(UTC))


def network_context(settings: Settings) -> NetworkContext:
    """Network profiles, the resolver (fixed answers from ``network.static_hosts`` first, then the
    system's), and the symbolic hosts (``@hub``...) from the settings."""
    from autovibe.network.profiles import load_profiles as load_network_profiles
    from autovibe.network.resolve import StaticResolver, SystemResolver
    from autovibe.network.service import NetworkContext

    net = settings.network
    resolver = StaticResolver(net.static_hosts, fallback=SystemResolver(timeout_s=net.resolve_timeout_s))
    return NetworkContext(load_network_profiles(net.profiles), resolver, net.hosts)


def _network_hook(
    deps: MachineDeps, ctx: NetworkContext
) -> Callable[[Mapping[str, Any]], Awaitable[str | None]]:
    """The deploy saga's network step: apply the machine profile's network profile to the new VM."""
    from autovibe.network.profiles import get_profile
    from autovibe.network.service import apply_to_vm

    async def hook(params: Mapping[str, Any]) -> str | None:
        name = params.get("network_profile")
        if not name:
            return None
        profile = get_profile(ctx.profiles, str(name))
        await apply_to_vm(deps, ctx, node=str(params["node"]), vmid=int(params["vmid"]), profile=profile)
        return profile.name

    return hook


def on_target_clock(deps: MachineDeps, clock: Callable[[], float]) -> MachineDeps:
    """The same collaborators with ``now`` on the target's clock (``Connection.clock``).

    Usage is integrated over the time the guests' counters run in: the simulator's own (usually faster)
    time for the embedded one, the wall clock for a real PVE.
    """
    return dataclasses.replace(deps, now=_as_datetime(clock))


def _as_datetime(clock: Callable[[], float]) -> Callable[[], datetime]:
    return lambda: datetime.fromtimestamp(clock(), UTC)


def _quota_guard(db: Database, now: Callable[[], datetime]) -> Callable[[Mapping[str, Any]], Awaitable[None]]:
    """The deploy saga's quota step: a project 10% or more over a quota gets no new machines."""
    from autovibe.usage.quotas import check_create

    async def guard(params: Mapping[str, Any]) -> None:
        check_create(db, str(params["project"]), now=now())

    return guard
