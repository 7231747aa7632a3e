"""TLS trust over real handshakes: a pinned SHA-256 fingerprint, a CA bundle, or the system CAs.

Trust fails closed: a wrong pin or an unknown certificate is a ``PveTlsError`` before any request
(and so before any credential) leaves the client; there is no silent ``verify=False`` fallback.
The first half runs against the served simulator, the second against a tiny HTTPS server whose
certificate chain a test can choose and swap.
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from autovibe.pve import PveClient, PveTlsError, TlsTrust, TokenAuth
from autovibe.pve.config import format_fingerprint
from autovibe.sim.app import SimApp
from autovibe.sim.certs import ensure_self_signed
from tests.fakes.pve_handlers import Certificate, TinyTlsServer, make_certificate
from tests.integration.pve.test_client_sim import CLONE, Target, TlsFiles, make_tls_files, serving

TOKEN = "root@pam!ci=0b4f0d3c-7d6e-4a9b-9a43-5f1c2d3e4f50"


# -- against the served simulator ----------------------------------------------------------------


@pytest.fixture(scope="session")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    return make_tls_files(tmp_path_factory)


@pytest.fixture
async def https(sim: SimApp, tls_files: TlsFiles) -> AsyncIterator[Target]:
    with serving(sim, "https", tls_files) as target:
        try:
            yield target
        finally:
            await target.aclose()


def connect(target: Target, tls: TlsTrust, *, password: bool = False) -> PveClient:
    return target.connect(target.root_password_auth() if password else None, tls=tls)


@pytest.mark.parametrize("spelling", ["as PVE shows it", "lower case without colons"])
async def test_right_fingerprint_is_trusted(https: Target, tls_files: TlsFiles, spelling: str) -> None:
    pin = tls_files.fingerprint
    if spelling != "as PVE shows it":
        pin = pin.replace(":", "").lower()
    pve = connect(https, TlsTrust(fingerprint=pin), password=True)

    assert (await pve.version()).release == "8.4"
    assert (await pve.wait_task(await pve.post(CLONE, newid=100))).ok
    assert [s.status for s in https.recorder.seen[:2]] == [200, 200]  # login, then /version


async def test_wrong_fingerprint_fails_closed_before_any_request(
    https: Target, tls_files: TlsFiles, tmp_path_factory: pytest.TempPathFactory
) -> None:
    other = tmp_path_factory.mktemp("other-tls")
    wrong = ensure_self_signed(other / "other.crt", other / "other.key")
    pve = connect(https, TlsTrust(fingerprint=wrong), password=True)

    with pytest.raises(PveTlsError) as first:
        await pve.post(CLONE, newid=100)
    with pytest.raises(PveTlsError):
        await pve.version()  # still refused: a failed pin does not fall back to anything

    assert f"expected {wrong}, got {tls_files.fingerprint}" in str(first.value)
    assert first.value.hint is not None and "fingerprint" in first.value.hint
    # Nothing reached the simulator: no password login, no clone, no task.
    assert https.recorder.seen == []
    assert https.sim.cluster.tasks.tasks == {} and 100 not in https.sim.cluster.guests


async def test_system_cas_reject_the_self_signed_certificate(https: Target) -> None:
    pve = connect(https, TlsTrust(), password=True)

    with pytest.raises(PveTlsError) as caught:
        await pve.version()

    assert "certificate verify failed" in str(caught.value)
    assert caught.value.hint is not None and "fingerprint" in caught.value.hint
    assert https.recorder.seen == []  # the password never left the client


async def test_certificate_as_ca_bundle_is_trusted(https: Target, tls_files: TlsFiles) -> None:
    pve = connect(https, TlsTrust(ca_bundle=tls_files.cert))

    assert (await pve.version()).release == "8.4"


# -- against a tiny HTTPS server with chosen certificates ----------------------------------------


@pytest.fixture
def pve_ca() -> Certificate:
    return make_certificate("Proxmox Virtual Environment", ca=True)


@pytest.fixture
def node_cert(pve_ca: Certificate) -> Certificate:
    return make_certificate("pve1.example", issuer=pve_ca)


def pin(cert: Certificate) -> str:
    return format_fingerprint(hashlib.sha256(cert.der).hexdigest())


async def test_pinned_certificate_is_trusted_and_probe_sends_nothing(
    tmp_path: Path, node_cert: Certificate
) -> None:
    async with (
        TinyTlsServer(tmp_path, node_cert) as server,
        PveClient(server.url, auth=TokenAuth(TOKEN), tls=TlsTrust(fingerprint=pin(node_cert))) as pve,
    ):
        version = await pve.version()

    assert version.repoid == "tls"
    assert (server.connections, server.requests) == (2, 1)


async def test_pin_mismatch_fails_closed_naming_both_fingerprints(
    tmp_path: Path, node_cert: Certificate
) -> None:
    other = make_certificate("impostor")
    async with (
        TinyTlsServer(tmp_path, other) as server,
        PveClient(server.url, auth=TokenAuth(TOKEN), tls=TlsTrust(fingerprint=pin(node_cert))) as pve,
    ):
        with pytest.raises(PveTlsError) as caught:
            await pve.version()

    assert f"expected {pin(node_cert)}, got {pin(other)}" in str(caught.value)
    assert server.requests == 0


async def test_certificate_swapped_after_pinning_fails_the_handshake(
    tmp_path: Path, node_cert: Certificate
) -> None:
    async with (
        TinyTlsServer(tmp_path, node_cert) as server,
        PveClient(server.url, auth=TokenAuth(TOKEN), tls=TlsTrust(fingerprint=pin(node_cert))) as pve,
    ):
        await pve.version()
        server.use(make_certificate("pve1.example"))
        with pytest.raises(PveTlsError):
            await pve.version()

    assert server.requests == 1


async def test_default_trust_rejects_a_private_ca_and_ca_bundle_accepts_it(
    tmp_path: Path, pve_ca: Certificate, node_cert: Certificate
) -> None:
    ca_file = tmp_path / "pve-root-ca.pem"
    ca_file.write_bytes(pve_ca.pem)
    async with TinyTlsServer(tmp_path, node_cert, chain=pve_ca) as server:
        async with PveClient(server.url, auth=TokenAuth(TOKEN)) as pve:
            with pytest.raises(PveTlsError):
                await pve.version()
        async with PveClient(server.url, auth=TokenAuth(TOKEN), tls=TlsTrust(ca_bundle=ca_file)) as pve:
            assert (await pve.version()).version == "8.4.1"
        async with PveClient(server.url, auth=TokenAuth(TOKEN), tls=TlsTrust(verify=False)) as pve:
            assert (await pve.version()).version == "8.4.1"

    assert server.requests == 2
