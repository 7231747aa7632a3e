"""Prometheus metrics: PVE API calls as they happen, and the domain figures the service layer hands in.

Two sources feed one ``CollectorRegistry``:

- ``PveRequestMetrics.observe`` is a ``PveClient`` observer: every HTTP attempt lands in a latency
  histogram, and every failed one in an error counter, labelled by a low-cardinality endpoint
  template (``endpoint_of``: ``/nodes/pve1/qemu/100/status/start`` becomes
  ``/nodes/{node}/qemu/{vmid}/status/start``).
- ``DomainCollector`` serves the latest ``update(projects=..., machines=..., operations=...)``
  figures at scrape time. It knows nothing of the store; ``domain_families`` is the pure builder::

    registry = new_registry()
    requests = PveRequestMetrics(registry)
    pve = PveClient(url, auth=auth, observer=requests.observe)
    domain = DomainCollector(registry)
    domain.update(projects=[ProjectFigures("alpha", {"net_gb": 3.5}, {"net_gb": 10}, "ok")],
                  machines={"running": 4}, operations={("deploy", "succeeded"): 12})
    body = exposition(registry)  # text format 0.0.4, served with CONTENT_TYPE
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Final

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.gc_collector import GCCollector
from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    Metric,
    StateSetMetricFamily,
)
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector
from prometheus_client.registry import Collector

from autovibe.pve import RequestObservation

__all__ = [
    "CONTENT_TYPE",
    "LEVELS",
    "REQUEST_BUCKETS",
    "DomainCollector",
    "MachineCounts",
    "OperationCounts",
    "ProjectFigures",
    "PveRequestMetrics",
    "domain_families",
    "endpoint_of",
    "exposition",
    "new_registry",
]

CONTENT_TYPE: Final = "text/plain; version=0.0.4; charset=utf-8"
"""The ``Content-Type`` of ``exposition``'s output. Spelled out: recent prometheus-client releases call
the same text format ``1.0.0`` in ``CONTENT_TYPE_LATEST``, which older scrapers do not know."""

LEVELS: Final[tuple[str, ...]] = ("ok", "warn", "throttle", "emergency")
"""Enforcement levels, mildest first; ``autovibe_project_enforcement_level`` is the index."""

REQUEST_BUCKETS: Final[tuple[float, ...]] = (
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
)  # fmt: skip
"""Seconds: a cached GET answers in milliseconds, a slow cluster-wide read in seconds; 30 s is the
client's default read timeout."""

MachineCounts = Mapping[str, int]
"""Machines per state (``running``, ``stopped``, ``missing``, ...)."""

OperationCounts = Mapping[tuple[str, str], int]
"""Operations ever journaled per ``(kind, outcome)``, e.g. ``("deploy", "succeeded")``."""


# -- PVE requests --------------------------------------------------------------------------------

# Each PVE API collection whose children are ids, with its placeholder; taken from the PVE 8.4 API
# schema (tests/unit/usage/test_pve_endpoints.py keeps it in step with the simulator's copy). No
# PVE collection mixes id children with fixed ones, so the position alone decides.
_COLLECTIONS: Final[Mapping[str, str]] = MappingProxyType(
    {
        "/access/domains": "realm",
        "/access/groups": "groupid",
        "/access/roles": "roleid",
        "/access/tfa": "userid",
        "/access/tfa/{userid}": "id",
        "/access/users": "userid",
        "/access/users/{userid}/token": "tokenid",
        "/cluster/acme/account": "name",
        "/cluster/acme/plugins": "id",
        "/cluster/backup": "id",
        "/cluster/ceph/flags": "flag",
        "/cluster/config/nodes": "node",
        "/cluster/firewall/aliases": "name",
        "/cluster/firewall/groups": "group",
        "/cluster/firewall/groups/{group}": "pos",
        "/cluster/firewall/ipset": "name",
        "/cluster/firewall/ipset/{name}": "cidr",
        "/cluster/firewall/rules": "pos",
        "/cluster/ha/groups": "group",
        "/cluster/ha/resources": "sid",
        "/cluster/jobs/realm-sync": "id",
        "/cluster/mapping/dir": "id",
        "/cluster/mapping/pci": "id",
        "/cluster/mapping/usb": "id",
        "/cluster/metrics/server": "id",
        "/cluster/notifications/endpoints/gotify": "name",
        "/cluster/notifications/endpoints/sendmail": "name",
        "/cluster/notifications/endpoints/smtp": "name",
        "/cluster/notifications/endpoints/webhook": "name",
        "/cluster/notifications/matchers": "name",
        "/cluster/notifications/targets": "name",
        "/cluster/replication": "id",
        "/cluster/sdn/controllers": "controller",
        "/cluster/sdn/dns": "dns",
        "/cluster/sdn/ipams": "ipam",
        "/cluster/sdn/vnets": "vnet",
        "/cluster/sdn/vnets/{vnet}/firewall/rules": "pos",
        "/cluster/sdn/vnets/{vnet}/subnets": "subnet",
        "/cluster/sdn/zones": "zone",
        "/nodes": "node",
        "/nodes/{node}/ceph/fs": "name",
        "/nodes/{node}/ceph/mds": "name",
        "/nodes/{node}/ceph/mgr": "id",
        "/nodes/{node}/ceph/mon": "monid",
        "/nodes/{node}/ceph/osd": "osdid",
        "/nodes/{node}/ceph/pool": "name",
        "/nodes/{node}/disks/directory": "name",
        "/nodes/{node}/disks/lvm": "name",
        "/nodes/{node}/disks/lvmthin": "name",
        "/nodes/{node}/disks/zfs": "name",
        "/nodes/{node}/firewall/rules": "pos",
        "/nodes/{node}/hardware/pci": "pci-id-or-mapping",
        "/nodes/{node}/lxc": "vmid",
        "/nodes/{node}/lxc/{vmid}/firewall/aliases": "name",
        "/nodes/{node}/lxc/{vmid}/firewall/ipset": "name",
        "/nodes/{node}/lxc/{vmid}/firewall/ipset/{name}": "cidr",
        "/nodes/{node}/lxc/{vmid}/firewall/rules": "pos",
        "/nodes/{node}/lxc/{vmid}/snapshot": "snapname",
        "/nodes/{node}/network": "iface",
        "/nodes/{node}/qemu": "vmid",
        "/nodes/{node}/qemu/{vmid}/firewall/aliases": "name",
        "/nodes/{node}/qemu/{vmid}/firewall/ipset": "name",
        "/nodes/{node}/qemu/{vmid}/firewall/ipset/{name}": "cidr",
        "/nodes/{node}/qemu/{vmid}/firewall/rules": "pos",
        "/nodes/{node}/qemu/{vmid}/snapshot": "snapname",
        "/nodes/{node}/replication": "id",
        "/nodes/{node}/sdn/zones": "zone",
        "/nodes/{node}/services": "service",
        "/nodes/{node}/storage": "storage",
        "/nodes/{node}/storage/{storage}/content": "volume",
        "/nodes/{node}/tasks": "upid",
        "/pools": "poolid",
        "/storage": "storage",
    }
)
# Below these the whole rest of the path is one id: volume IDs may contain slashes (SEMANTICS §1).
_WHOLE_REST: Final = frozenset({"/nodes/{node}/storage/{storage}/content"})
# Every fixed segment of the PVE API looks like this; anything else in an unknown position is data.
_API_WORD: Final = re.compile(r"[a-z][a-z_-]*")


def endpoint_of(path: str) -> str:
    """The low-cardinality template of an API path (after ``/api2/json``), for metric labels.

    ``/nodes/pve1/qemu/100/snapshot/before/rollback`` gives
    ``/nodes/{node}/qemu/{vmid}/snapshot/{snapname}/rollback``. Ids are recognised by position in
    the PVE API tree; outside it, a segment that is not a plain lower-case word becomes ``{id}``. The
    query string is dropped and empty segments ignored, as pveproxy does.
    """
    segments = [segment for segment in re.split(r"[?#]", path, maxsplit=1)[0].split("/") if segment]
    template = ""
    for segment in segments:
        placeholder = _COLLECTIONS.get(template)
        if placeholder is not None:
            whole_rest = template in _WHOLE_REST
            template += f"/{{{placeholder}}}"
            if whole_rest:
                break
        elif _API_WORD.fullmatch(segment):
            template += f"/{segment}"
        else:
            template += "/{id}"
    return template or "/"


def _error_kind(status: int | None) -> str | None:
    if status is None:
        return "transport"
    return f"{status // 100}xx" if status >= 400 else None


class PveRequestMetrics:
    """Latency and errors of PVE API calls; pass ``observe`` as ``PveClient(observer=...)``.

    ``autovibe_pve_request_duration_seconds{method, endpoint, status}`` counts every attempt
    (retries and logins too); ``status`` is ``none`` when no answer came back.
    ``autovibe_pve_request_errors_total{method, endpoint, kind}`` counts failed attempts; ``kind`` is
    the status class (``4xx``, ``5xx``) or ``transport`` (timeout, refused or dropped connection,
    TLS, unreadable answer).
    """

    def __init__(self, registry: CollectorRegistry) -> None:
        self.duration = Histogram(
            "autovibe_pve_request_duration_seconds",
            "Time from sending one PVE API request to its whole answer or its failure, in seconds. "
            "Counts every attempt, retries and logins included; status is 'none' when no answer came.",
            ["method", "endpoint", "status"],
            registry=registry,
            buckets=REQUEST_BUCKETS,
        )
        self.errors = Counter(
            "autovibe_pve_request_errors_total",
            "PVE API request attempts that failed, by kind: the HTTP status class (4xx, 5xx) of an "
            "error answer, or 'transport' when no usable answer came back.",
            ["method", "endpoint", "kind"],
            registry=registry,
        )

    def observe(self, observation: RequestObservation) -> None:
        """Record one attempt (a ``PveClient`` observer)."""
        endpoint = endpoint_of(observation.path)
        status = "none" if observation.status is None else str(observation.status)
        self.duration.labels(observation.method, endpoint, status).observe(observation.elapsed_s)
        kind = _error_kind(observation.status)
        if kind is not None:
            self.errors.labels(observation.method, endpoint, kind).inc()


# -- domain figures ------------------------------------------------------------------------------


@dataclass(frozen=True)
class ProjectFigures:
    """One project's standing: ``usage`` and ``quota`` per figure (``cpu_core_hours``,
    ``mem_gib_hours``, ``net_gb``, ``storage_gib``), ``quota`` only where one is set, and its
    enforcement ``level`` (one of ``LEVELS``). The mappings are copied and read-only."""

    project: str
    usage: Mapping[str, float] = field(default_factory=dict)
    quota: Mapping[str, float] = field(default_factory=dict)
    level: str = "ok"

    def __post_init__(self) -> None:
        # Copied, so later changes to the caller's dicts never reach a scrape.
        object.__setattr__(self, "usage", MappingProxyType(dict(self.usage)))
        object.__setattr__(self, "quota", MappingProxyType(dict(self.quota)))
        if self.level not in LEVELS:
            raise ValueError(f"level must be one of {', '.join(LEVELS)}, got {self.level!r}")


_USAGE_HELP = (
    "Resource use of a project in its accounting period, in the unit the metric label names: "
    "cpu_core_hours (CPU core-hours), mem_gib_hours (memory GiB-hours), net_gb (decimal gigabytes "
    "in + out), storage_gib (GiB occupied now)."
)
_QUOTA_HELP = (
    "A project's quota per period, in the unit the metric label names; absent where no quota is set."
)
_RATIO_HELP = "Usage divided by quota, per project and metric: 1 is exactly at quota, 1.5 is 50% over."
_LEVEL_HELP = "A project's enforcement level as a number: 0 ok, 1 warn, 2 throttle, 3 emergency."
_STATE_HELP = "A project's enforcement level as a state set: 1 for the current level, 0 for the others."
_MACHINES_HELP = "Machines known to autovibe, by state."
_OPERATIONS_HELP = "Operations recorded in the journal since it began, by kind and outcome."


def domain_families(
    *,
    projects: Iterable[ProjectFigures] = (),
    machines: MachineCounts | None = None,
    operations: OperationCounts | None = None,
) -> list[Metric]:
    """The domain metric families for the given figures (pure: same figures, same families).

    Yields ``autovibe_project_usage``, ``autovibe_project_quota``, ``autovibe_project_quota_ratio``
    (where the quota is positive), ``autovibe_project_enforcement_level`` and the state set
    ``autovibe_project_enforcement`` per project, ``autovibe_machines{state}`` and the counter
    ``autovibe_operations_total{kind, outcome}``.
    """
    usage = GaugeMetricFamily("autovibe_project_usage", _USAGE_HELP, labels=["project", "metric"])
    quota = GaugeMetricFamily("autovibe_project_quota", _QUOTA_HELP, labels=["project", "metric"])
    ratio = GaugeMetricFamily("autovibe_project_quota_ratio", _RATIO_HELP, labels=["project", "metric"])
    level = GaugeMetricFamily("autovibe_project_enforcement_level", _LEVEL_HELP, labels=["project"])
    state = StateSetMetricFamily("autovibe_project_enforcement", _STATE_HELP, labels=["project"])
    for figures in projects:
        for metric, value in sorted(figures.usage.items()):
            usage.add_metric([figures.project, metric], float(value))
        for metric, limit in sorted(figures.quota.items()):
            quota.add_metric([figures.project, metric], float(limit))
            if limit > 0:
                ratio.add_metric([figures.project, metric], figures.usage.get(metric, 0.0) / limit)
        level.add_metric([figures.project], float(LEVELS.index(figures.level)))
        state.add_metric([figures.project], {name: name == figures.level for name in LEVELS})
    machine_family = GaugeMetricFamily("autovibe_machines", _MACHINES_HELP, labels=["state"])
    for machine_state, count in sorted((machines or {}).items()):
        machine_family.add_metric([machine_state], float(count))
    operation_family = CounterMetricFamily(
        "autovibe_operations", _OPERATIONS_HELP, labels=["kind", "outcome"]
    )
    for (kind, outcome), count in sorted((operations or {}).items()):
        operation_family.add_metric([kind, outcome], float(count))
    return [usage, quota, ratio, level, state, machine_family, operation_family]


@dataclass(frozen=True)
class _Figures:
    projects: tuple[ProjectFigures, ...] = ()
    machines: MachineCounts = field(default_factory=dict)
    operations: OperationCounts = field(default_factory=dict)


class DomainCollector(Collector):
    """Serves the figures of the latest ``update`` at every scrape (none before the first: empty
    families). ``update`` swaps one reference, so a scrape in another thread sees old or new figures,
    never a mix."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self._figures = _Figures()
        if registry is not None:
            registry.register(self)

    def update(
        self,
        *,
        projects: Iterable[ProjectFigures] = (),
        machines: MachineCounts | None = None,
        operations: OperationCounts | None = None,
    ) -> None:
        """Replace all figures; the caller's mappings are copied."""
        self._figures = _Figures(tuple(projects), dict(machines or {}), dict(operations or {}))

    def collect(self) -> Iterator[Metric]:
        figures = self._figures
        yield from domain_families(
            projects=figures.projects, machines=figures.machines, operations=figures.operations
        )

    def describe(self) -> Iterator[Metric]:
        """The families without samples, so registering needs no figures."""
        yield from domain_families()


# -- exposition ----------------------------------------------------------------------------------


def new_registry(*, include_process: bool = False) -> CollectorRegistry:
    """A registry of its own (never the global one). ``include_process`` adds the process, platform
    and garbage-collector collectors (``process_*``, ``python_info``, ``python_gc_*``)."""
    registry = CollectorRegistry(auto_describe=True)
    if include_process:
        ProcessCollector(registry=registry)
        PlatformCollector(registry=registry)
        GCCollector(registry=registry)
    return registry


def exposition(registry: CollectorRegistry) -> bytes:
    """Everything in ``registry`` in the Prometheus text format 0.0.4 (``CONTENT_TYPE``)."""
    return generate_latest(registry)
