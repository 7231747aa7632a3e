"""TLS material for serving the simulator over HTTPS, shaped like a PVE node's self-signed certificate.

Real PVE nodes present a certificate signed by the cluster's own CA, so clients trust them either with a
CA file or by pinning the SHA-256 fingerprint shown in the web UI (``AB:CD:...``). The simulator does the
same with one self-signed certificate: pass the certificate file as the client's CA bundle, or pin the
fingerprint that :func:`ensure_self_signed` returns.

Example::

    fingerprint = ensure_self_signed(state_dir / "sim.crt", state_dir / "sim.key")
    ctx = server_ssl_context(state_dir / "sim.crt", state_dir / "sim.key")
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import ssl
import tempfile
from collections.abc import Sequence
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

DEFAULT_HOSTNAMES: tuple[str, ...] = ("localhost", "127.0.0.1", "::1", "pve1", "pve2", "pve3")
"""Names the default certificate is valid for: loopback plus the simulator's three seed nodes."""

VALIDITY = dt.timedelta(days=3650)
# A day of backdating so a client whose clock runs a little behind still accepts a fresh certificate.
BACKDATE = dt.timedelta(days=1)


def ensure_self_signed(cert_path: Path, key_path: Path, hostnames: Sequence[str] = DEFAULT_HOSTNAMES) -> str:
    """Create a self-signed EC P-256 certificate and key unless both files already exist; return its
    SHA-256 fingerprint as PVE shows it (``"AB:CD:..."``, upper-case, colon-separated).

    Existing files are reused as they are (``hostnames`` is then ignored), so clients that pinned the
    fingerprint keep working across restarts. If either file is missing, both are (re)written; the key
    file gets mode 0600. Both files present but unreadable or not belonging together raise ``ValueError``
    rather than being overwritten, since they may be the user's own. ``hostnames`` entries that parse as
    IP addresses become IP SANs, the rest DNS SANs; the first one is the subject CN.
    """
    if not hostnames:
        raise ValueError("hostnames: at least one name is needed for the certificate")
    if cert_path.exists() and key_path.exists():
        return _check_existing(cert_path, key_path)
    key = ec.generate_private_key(ec.SECP256R1())
    cert = _build_certificate(key, hostnames)
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    # Key first, certificate last: a crash in between leaves the certificate missing, which the next
    # call repairs by generating both again.
    _write_atomically(key_path, key_pem, mode=0o600)
    _write_atomically(cert_path, cert.public_bytes(serialization.Encoding.PEM), mode=0o644)
    return _format_fingerprint(cert)


def fingerprint_of_pem(pem_bytes: bytes) -> str:
    """SHA-256 fingerprint (``"AB:CD:..."``) of the first certificate in ``pem_bytes``.

    Raises ``ValueError`` when the bytes hold no PEM certificate.
    """
    return _format_fingerprint(x509.load_pem_x509_certificate(pem_bytes))


def server_ssl_context(cert_path: Path, key_path: Path) -> ssl.SSLContext:
    """A server-side context serving ``cert_path``/``key_path`` over TLS 1.2 or newer, HTTP/1.1 only."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(certfile=cert_path, keyfile=key_path)
    # Advertise only HTTP/1.1: the server speaks nothing else, so an h2-capable client must not pick h2.
    ctx.set_alpn_protocols(["http/1.1"])
    return ctx


def _format_fingerprint(cert: x509.Certificate) -> str:
    return cert.fingerprint(hashes.SHA256()).hex(":").upper()


def _check_existing(cert_path: Path, key_path: Path) -> str:
    try:
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
        key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    except ValueError as exc:
        raise ValueError(f"cannot read TLS files {cert_path} / {key_path}: {exc}") from exc
    spki = serialization.PublicFormat.SubjectPublicKeyInfo
    cert_pub = cert.public_key().public_bytes(serialization.Encoding.DER, spki)
    key_pub = key.public_key().public_bytes(serialization.Encoding.DER, spki)
    if cert_pub != key_pub:
        raise ValueError(
            f"TLS key {key_path} does not belong to certificate {cert_path}; delete both to regenerate"
        )
    return _format_fingerprint(cert)


def _san_entries(hostnames: Sequence[str]) -> list[x509.GeneralName]:
    entries: list[x509.GeneralName] = []
    for name in hostnames:
        try:
            entries.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            entries.append(x509.DNSName(name))
    return entries


# Signing TLS handshakes (ECDHE) and, as its own trust anchor, itself.
_KEY_USAGE = x509.KeyUsage(
    digital_signature=True,
    content_commitment=False,
    key_encipherment=False,
    data_encipherment=False,
    key_agreement=False,
    key_cert_sign=True,
    crl_sign=False,
    encipher_only=False,
    decipher_only=False,
)


def _build_certificate(key: ec.EllipticCurvePrivateKey, hostnames: Sequence[str]) -> x509.Certificate:
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, hostnames[0]),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "autovibe PVE simulator"),
        ]
    )
    now = dt.datetime.now(dt.UTC)
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    # The certificate is its own trust anchor (clients load it as their CA file), so it is marked as a
    # CA that may sign nothing else; with key identifiers and key usage it passes OpenSSL's
    # X509_STRICT checks, which Python 3.13+ enables by default.
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(now + VALIDITY)
        .add_extension(x509.SubjectAlternativeName(_san_entries(hostnames)), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_KEY_USAGE, critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(ski, critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), critical=False)
        .sign(key, hashes.SHA256())
    )


def _write_atomically(path: Path, data: bytes, *, mode: int) -> None:
    """Write via a temporary file in the same folder, so a reader never sees half a PEM file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as handle:
            # mkstemp creates the file 0600; widen only when asked (the certificate is public).
            os.fchmod(handle.fileno(), mode)
            handle.write(data)
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
