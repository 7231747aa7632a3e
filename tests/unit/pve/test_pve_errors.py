"""Reading PVE error answers into typed errors (SEMANTICS §1, §4)."""

from __future__ import annotations

import json

import pytest

from autovibe.errors import (
    AutovibeConflict,
    AutovibeDenied,
    AutovibeInvalid,
    AutovibeNotFound,
    AutovibeUnavailable,
)
from autovibe.pve import (
    PveApiError,
    PveAuthError,
    PveConfigMissing,
    PveConnectError,
    PveError,
    PveInvalidParams,
    PveLocked,
    PveNotFound,
    PvePermissionDenied,
    PveTaskFailed,
    PveTimeout,
    PveTlsError,
)
from autovibe.pve.errors import error_from_response


def body(message: str | None = None, errors: dict[str, str] | None = None) -> bytes:
    payload: dict[str, object] = {"data": None}
    if message is not None:
        payload["message"] = message
    if errors is not None:
        payload["errors"] = errors
    return json.dumps(payload).encode()


def test_400_carries_message_and_per_parameter_errors():
    error = error_from_response(
        "POST",
        "/nodes/pve1/qemu",
        400,
        "Parameter verification failed.",
        body("Parameter verification failed.\n", {"vmid": "value must have a minimum value of 100\n"}),
    )

    assert type(error) is PveInvalidParams
    assert isinstance(error, AutovibeInvalid)
    assert error.status == 400
    assert error.message == "Parameter verification failed."
    assert error.errors == {"vmid": "value must have a minimum value of 100"}
    assert str(error) == (
        "Parameter verification failed. (POST /nodes/pve1/qemu)"
        " [vmid: value must have a minimum value of 100]"
    )


def test_401_with_empty_body_takes_the_reason_phrase():
    error = error_from_response("GET", "/version", 401, "Permission denied - invalid csrf token", b"")

    assert type(error) is PveAuthError
    assert isinstance(error, AutovibeDenied)
    assert error.message == "Permission denied - invalid csrf token"
    assert error.hint


def test_403_is_permission_denied():
    error = error_from_response(
        "POST",
        "/nodes/pve1/qemu",
        403,
        "Permission check failed",
        body("Permission check failed (/vms/100, VM.Allocate)\n"),
    )

    assert type(error) is PvePermissionDenied
    assert isinstance(error, AutovibeDenied)
    assert error.message == "Permission check failed (/vms/100, VM.Allocate)"


def test_pre_84_hosts_send_the_message_only_as_reason_phrase():
    error = error_from_response(
        "DELETE", "/nodes/pve1/qemu/100", 500, "VM 100 is running - destroy failed", b'{"data":null}'
    )

    assert type(error) is PveApiError
    assert error.message == "VM 100 is running - destroy failed"
    assert error.errors == {}


@pytest.mark.parametrize(
    ("message", "lock"),
    [
        ("VM is locked (snapshot)\n", "snapshot"),
        ("CT is locked (backup)\n", "backup"),
        ("VM is locked (snapshot-delete)\n", "snapshot-delete"),
        ("can't lock file '/var/lock/qemu-server/lock-100.conf' - got timeout\n", None),
    ],
)
def test_lock_errors_are_conflicts_exposing_the_lock(message, lock):
    error = error_from_response(
        "POST", "/nodes/pve1/qemu/100/snapshot", 500, message.splitlines()[0], body(message)
    )

    assert type(error) is PveLocked
    assert isinstance(error, AutovibeConflict)
    assert error.lock == lock


def test_missing_config_is_not_found_although_pve_says_500():
    message = "Configuration file 'nodes/pve1/qemu-server/100.conf' does not exist"
    error = error_from_response("GET", "/nodes/pve1/qemu/100/config", 500, message, body(message + "\n"))

    assert type(error) is PveConfigMissing
    assert isinstance(error, PveNotFound)
    assert isinstance(error, AutovibeNotFound)


def test_404_is_not_found():
    assert type(error_from_response("GET", "/nope", 404, "Not Found", b"")) is PveNotFound


@pytest.mark.parametrize(
    "raw", [b"<html>bad gateway</html>", b"[1, 2]", b'{"message": 7}', b'{"message": "  "}']
)
def test_unreadable_bodies_fall_back_to_reason_then_status(raw):
    assert error_from_response("GET", "/version", 502, "Bad Gateway", raw).message == "Bad Gateway"
    assert error_from_response("GET", "/version", 502, "", raw).message == "HTTP 502"


def test_transport_errors_are_unavailable_and_errors_are_autovibe_errors():
    for kind in (PveTimeout, PveConnectError, PveTlsError):
        error = kind("x", method="GET", path="/version")
        assert isinstance(error, AutovibeUnavailable)
        assert isinstance(error, PveError)


def test_task_failure_keeps_exit_status_tail_and_lock():
    error = PveTaskFailed(
        "UPID:pve1:0002F1C4:01A2B3C4:66F0A1B2:qmsnapshot:100:root@pam:",
        "VM is locked (backup)",
        ("starting", "TASK ERROR: VM is locked (backup)"),
    )

    assert error.exitstatus == "VM is locked (backup)"
    assert error.log_tail[-1] == "TASK ERROR: VM is locked (backup)"
    assert error.lock == "backup"
    assert "VM is locked (backup)" in str(error)
