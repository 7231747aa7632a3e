"""The doctor against the in-process simulator: all good, and each way it can go wrong."""

from __future__ import annotations

import ssl

import httpx
import pytest

from autovibe.cluster.models import DoctorReport
from autovibe.cluster.service import REQUIRED_PRIVILEGES, run_doctor
from autovibe.pve import PveClient, Retry, TokenAuth
from autovibe.sim.app import SimApp
from tests.unit.cluster.simclient import SIM_URL, client_for

NAMES = ["reachability", "tls", "auth", "clock", "privileges"]


def statuses(report: DoctorReport) -> dict[str, str]:
    return {check.name: check.status for check in report.checks}


def check(report: DoctorReport, name: str):
    return next(c for c in report.checks if c.name == name)


async def test_embedded_simulator_passes_every_check(sim: SimApp, pve: PveClient) -> None:
    report = await run_doctor(pve=pve, tls_mode="in-process", clock=sim.clock.now, authid="root@pam!autovibe")
    assert [c.name for c in report.checks] == NAMES
    assert statuses(report) == dict.fromkeys(NAMES, "ok")
    assert report.ok
    assert check(report, "tls").detail == "in-process"
    assert "pve1" in check(report, "clock").detail and "pve3" in check(report, "clock").detail


async def test_privsep_token_without_acls_lacks_every_privilege(sim: SimApp) -> None:
    secret = sim.cluster.access.add_token("root@pam", "limited", privsep=True)
    async with client_for(sim, f"root@pam!limited={secret}") as pve:
        report = await run_doctor(pve=pve, tls_mode="x", clock=sim.clock.now, authid="root@pam!limited")
    privileges = check(report, "privileges")
    assert privileges.status == "fail" and not report.ok
    for path in dict.fromkeys(need.path for need in REQUIRED_PRIVILEGES):
        names = ", ".join(need.name for need in REQUIRED_PRIVILEGES if need.path == path)
        assert f"missing on {path}: {names}" in privileges.detail
    assert "--tokens 'root@pam!limited'" in (privileges.hint or "")
    assert "autovibe pve role --apply" in (privileges.hint or "")


async def test_partial_grant_reports_only_what_is_missing(sim: SimApp) -> None:
    secret = sim.cluster.access.add_token("root@pam", "vmonly", privsep=True)
    sim.cluster.access.set_acl("/vms", "root@pam!vmonly", "PVEVMAdmin")
    sim.cluster.access.set_acl("/nodes", "root@pam!vmonly", "PVEAuditor")
    async with client_for(sim, f"root@pam!vmonly={secret}") as pve:
        report = await run_doctor(pve=pve, tls_mode="x", clock=sim.clock.now)
    detail = check(report, "privileges").detail
    assert detail == (
        "missing on /storage: Datastore.AllocateSpace, Datastore.Audit; missing on /sdn/zones: SDN.Use; "
        "missing on /: Sys.Audit, Sys.Modify"
    )


async def test_wrong_secret_fails_auth_and_skips_what_needs_it(sim: SimApp) -> None:
    sim.ensure_token()
    async with client_for(sim, "root@pam!autovibe=00000000-0000-0000-0000-000000000000") as pve:
        report = await run_doctor(pve=pve, tls_mode="x", clock=sim.clock.now)
    assert statuses(report) == {
        "reachability": "ok",
        "tls": "ok",
        "auth": "fail",
        "clock": "skip",
        "privileges": "skip",
    }
    assert "401" in check(report, "reachability").detail
    assert check(report, "auth").hint


@pytest.mark.parametrize(("offset", "expected"), [(2.0, "ok"), (-2.0, "ok"), (60.0, "fail"), (-60.0, "fail")])
async def test_clock_skew_beyond_five_seconds_fails(
    sim: SimApp, pve: PveClient, offset: float, expected: str
) -> None:
    report = await run_doctor(pve=pve, tls_mode="x", clock=lambda: sim.clock.now() + offset)
    clock = check(report, "clock")
    assert clock.status == expected
    if expected == "fail":
        assert "NTP" in (clock.hint or "")


def _unreachable(cause: BaseException | None):
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection failed", request=request) from cause

    return handler


async def test_unreachable_host_fails_reachability_and_skips_the_rest() -> None:
    transport = httpx.MockTransport(_unreachable(None))
    async with PveClient(
        SIM_URL, auth=TokenAuth("root@pam!ci=abc-def"), transport=transport, retry=Retry(attempts=1)
    ) as pve:
        report = await run_doctor(pve=pve, tls_mode="system CA store", clock=lambda: 0.0)
    assert statuses(report) == {
        "reachability": "fail",
        "tls": "skip",
        "auth": "skip",
        "clock": "skip",
        "privileges": "skip",
    }
    assert check(report, "reachability").hint


async def test_tls_failure_fails_the_tls_check_with_a_hint() -> None:
    transport = httpx.MockTransport(_unreachable(ssl.SSLCertVerificationError("self-signed certificate")))
    async with PveClient(
        SIM_URL, auth=TokenAuth("root@pam!ci=abc-def"), transport=transport, retry=Retry(attempts=1)
    ) as pve:
        report = await run_doctor(pve=pve, tls_mode="system CA store", clock=lambda: 0.0)
    tls = check(report, "tls")
    assert statuses(report)["reachability"] == "fail"
    assert tls.status == "fail" and "fingerprint" in (tls.hint or "")
