"""Async client for the Proxmox VE API: auth, TLS trust, retries, typed errors, tasks, models.

Services import from here, never from httpx::

    from autovibe.pve import PveClient, TokenAuth, TlsTrust

    async with PveClient("https://pve1:8006", auth=TokenAuth(token), tls=TlsTrust(fingerprint=fp)) as pve:
        upid = await pve.post("/nodes/pve1/qemu/100/status/start")
        await pve.wait_task(upid)
"""

from autovibe.pve.auth import PasswordAuth, PveAuth, TokenAuth
from autovibe.pve.breaker import BreakerState, CircuitBreaker, PveCircuitOpen
from autovibe.pve.client import PveClient, RequestObservation
from autovibe.pve.config import (
    DEFAULT_POLL,
    DEFAULT_RETRY,
    DEFAULT_TIMEOUTS,
    DEFAULT_TLS,
    PollPolicy,
    PveTimeouts,
    Retry,
    TlsTrust,
    normalize_fingerprint,
)
from autovibe.pve.errors import (
    PveApiError,
    PveAuthError,
    PveConfigMissing,
    PveConnectError,
    PveError,
    PveInvalidParams,
    PveInvalidUpid,
    PveLocked,
    PveNotFound,
    PvePermissionDenied,
    PveProtocolError,
    PveTaskFailed,
    PveTaskTimeout,
    PveTimeout,
    PveTlsError,
    PveTransportError,
)
from autovibe.pve.models import ClusterResource, NodeInfo, PveVersion
from autovibe.pve.tasks import TaskLogLine, TaskStatus, Upid
from autovibe.pve.wire import Envelope

__all__ = [
    "DEFAULT_POLL",
    "DEFAULT_RETRY",
    "DEFAULT_TIMEOUTS",
    "DEFAULT_TLS",
    "BreakerState",
    "CircuitBreaker",
    "ClusterResource",
    "Envelope",
    "NodeInfo",
    "PasswordAuth",
    "PollPolicy",
    "PveApiError",
    "PveAuth",
    "PveAuthError",
    "PveCircuitOpen",
    "PveClient",
    "PveConfigMissing",
    "PveConnectError",
    "PveError",
    "PveInvalidParams",
    "PveInvalidUpid",
    "PveLocked",
    "PveNotFound",
    "PvePermissionDenied",
    "PveProtocolError",
    "PveTaskFailed",
    "PveTaskTimeout",
    "PveTimeout",
    "PveTimeouts",
    "PveTlsError",
    "PveTransportError",
    "PveVersion",
    "RequestObservation",
    "Retry",
    "TaskLogLine",
    "TaskStatus",
    "TlsTrust",
    "TokenAuth",
    "Upid",
    "normalize_fingerprint",
]
