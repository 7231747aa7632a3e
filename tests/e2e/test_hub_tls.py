"""The hub over HTTPS: `autovibe serve` with a certificate, and the remote CLI verifying it (TLS
verification is on by default: an unknown certificate is refused until its CA is trusted)."""

from __future__ import annotations

import ssl
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from autovibe.sim.certs import ensure_self_signed
from tests.e2e.hub_server import HubProcess, hub_env, provision, remote_env, run

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def https_hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str, Path, Path]]:
    tmp = tmp_path_factory.mktemp("hub-tls")
    cert, key = tmp / "hub.pem", tmp / "hub.key"
    ensure_self_signed(cert, key, hostnames=("127.0.0.1", "localhost"))
    env = {**hub_env(tmp), "AUTOVIBE_HUB__SSL_CERTFILE": str(cert), "AUTOVIBE_HUB__SSL_KEYFILE": str(key)}
    secret = provision(env)
    with HubProcess(env, tmp) as served:
        yield served.url(), secret, cert, tmp


def remote(tmp: Path, url: str, secret: str, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    home = tmp / "client"
    home.mkdir(exist_ok=True)
    return run({**remote_env(home, secret), **env}, "--hub", url, *args)


def test_the_hub_serves_https_and_clients_verify_it(https_hub: tuple[str, str, Path, Path]) -> None:
    url, secret, cert, tmp = https_hub
    # A client that trusts the certificate's CA talks to it...
    context = ssl.create_default_context(cafile=str(cert))
    assert httpx.get(f"{url}/healthz", verify=context, timeout=30).json() == {"status": "ok"}
    trusted = remote(tmp, url, secret, "project", "list", "--json", AUTOVIBE_HUB_CA_BUNDLE=str(cert))
    assert trusted.returncode == 0, trusted.stderr
    assert "alpha" in trusted.stdout
    # ... and one that does not is refused: verification is on by default, nothing to turn it off.
    refused = remote(tmp, url, secret, "project", "list")
    assert refused.returncode == 1, refused.stdout + refused.stderr
    assert "certificate" in refused.stderr.lower()
    assert secret not in refused.stdout + refused.stderr
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{url}/healthz", timeout=30)
