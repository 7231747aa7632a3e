"""TLS trust for the PVE client: CA bundles and certificate fingerprint pinning.

Pinning works without turning verification off. The client opens one TLS connection with an
unverified context only to read the server's certificate (it sends no request bytes on it),
compares the certificate's SHA-256 with the pin, and fails closed on a mismatch. When it matches,
all real connections use a context that trusts exactly that certificate, so a certificate swapped
later fails the handshake itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import ssl

from autovibe.pve.config import TlsTrust, format_fingerprint
from autovibe.pve.errors import PveTlsError

__all__ = [
    "certificate_fingerprint",
    "fetch_peer_certificate",
    "pinned_context",
    "resolve_verify",
]


def certificate_fingerprint(der: bytes) -> str:
    """SHA-256 of a DER certificate as 64 lower-case hex digits (compare with a normalised pin)."""
    return hashlib.sha256(der).hexdigest()


def pinned_context(der: bytes) -> ssl.SSLContext:
    """An ``SSLContext`` that accepts exactly this certificate and nothing else.

    PVE's node certificate is signed by the cluster's own CA, which the client does not have;
    ``VERIFY_X509_PARTIAL_CHAIN`` lets the pinned leaf itself be the trust anchor. The hostname is
    not checked because the pin already names the one certificate we accept.
    """
    context = ssl.create_default_context(cadata=ssl.DER_cert_to_PEM_cert(der))
    context.check_hostname = False
    context.verify_flags |= ssl.VERIFY_X509_PARTIAL_CHAIN
    # Python 3.13 turns on strict X.509 checks by default; PVE's generated certificates are not
    # always strict-clean, and an exact pin makes those checks moot.
    context.verify_flags &= ~ssl.VERIFY_X509_STRICT
    return context


async def fetch_peer_certificate(host: str, port: int, *, connect_timeout: float) -> bytes:
    """Complete one TLS handshake without verification and return the server certificate (DER).

    Sends no application data and closes the connection straight away. Raises ``OSError``,
    ``ssl.SSLError`` or ``TimeoutError``; the client translates them.
    """
    probe = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    probe.check_hostname = False
    # Unverified on purpose: this connection only reads the certificate to compare with the pin;
    # no request is sent on it and nothing it says is trusted.
    probe.verify_mode = ssl.CERT_NONE
    async with asyncio.timeout(connect_timeout):
        _, writer = await asyncio.open_connection(host, port, ssl=probe, server_hostname=host)
    try:
        ssl_object = writer.get_extra_info("ssl_object")
        der = ssl_object.getpeercert(binary_form=True) if ssl_object is not None else None
    finally:
        writer.close()
        with contextlib.suppress(OSError, ssl.SSLError):
            await writer.wait_closed()
    if not der:
        raise PveTlsError(f"{host}:{port} presented no certificate")
    return bytes(der)


async def resolve_verify(
    trust: TlsTrust, host: str, port: int, *, connect_timeout: float
) -> ssl.SSLContext | bool:
    """The ``verify`` value for httpx that implements ``trust`` for ``host:port``.

    With a fingerprint this performs the certificate probe, and raises ``PveTlsError`` naming the
    expected and the presented fingerprint when they differ.
    """
    if trust.fingerprint is not None:
        der = await fetch_peer_certificate(host, port, connect_timeout=connect_timeout)
        got = certificate_fingerprint(der)
        if got != trust.fingerprint:
            raise PveTlsError(
                f"certificate of {host}:{port} does not match the pinned fingerprint: "
                f"expected {format_fingerprint(trust.fingerprint)}, got {format_fingerprint(got)}",
                hint="if the host's certificate was renewed on purpose, pin the new fingerprint "
                "(pvenode cert info)",
            )
        return pinned_context(der)
    if trust.ca_bundle is not None:
        return ssl.create_default_context(cafile=str(trust.ca_bundle))
    return trust.verify
