"""Value objects: fingerprints, TLS trust, retry, timeouts, poll policy."""

from __future__ import annotations

import hashlib
import ssl
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from autovibe.pve import PollPolicy, PveTimeouts, Retry, TlsTrust, normalize_fingerprint
from autovibe.pve.config import format_fingerprint
from autovibe.pve.tls import certificate_fingerprint, pinned_context
from tests.fakes.pve_handlers import make_certificate

DIGEST = hashlib.sha256(b"certificate").hexdigest()


@pytest.mark.parametrize(
    "written",
    [
        DIGEST,
        DIGEST.upper(),
        ":".join(DIGEST[i : i + 2] for i in range(0, 64, 2)).upper(),
        ":".join(DIGEST[i : i + 2] for i in range(0, 64, 2)),
        f"  {DIGEST.upper()}\n",
    ],
)
def test_fingerprint_spellings_normalise_to_lower_hex(written):
    assert normalize_fingerprint(written) == DIGEST


@pytest.mark.parametrize("bad", ["", DIGEST[:-2], DIGEST + "00", DIGEST[:-1] + "g", "sha256:" + DIGEST])
def test_fingerprint_that_is_not_32_hex_bytes_is_refused(bad):
    with pytest.raises(ValueError, match="SHA-256"):
        normalize_fingerprint(bad)


@given(st.binary(min_size=32, max_size=32))
def test_formatted_fingerprint_normalises_back(raw):
    digits = raw.hex()

    shown = format_fingerprint(digits)

    assert shown == shown.upper() and shown.count(":") == 31
    assert normalize_fingerprint(shown) == digits


def test_tls_trust_stores_the_normalised_pin():
    shown = format_fingerprint(DIGEST)

    assert TlsTrust(fingerprint=shown).fingerprint == DIGEST


@pytest.mark.parametrize(
    "kwargs",
    [
        {"fingerprint": DIGEST, "ca_bundle": Path("/etc/pve/pve-root-ca.pem")},
        {"verify": False, "fingerprint": DIGEST},
        {"verify": False, "ca_bundle": Path("/etc/pve/pve-root-ca.pem")},
    ],
)
def test_tls_trust_refuses_ambiguous_combinations(kwargs):
    with pytest.raises(ValueError):
        TlsTrust(**kwargs)


def test_certificate_fingerprint_is_sha256_of_der():
    assert certificate_fingerprint(b"certificate") == DIGEST


def test_pinned_context_verifies_but_trusts_the_leaf_as_anchor():
    context = pinned_context(make_certificate("pve1").der)

    assert context.verify_mode == ssl.CERT_REQUIRED
    assert context.check_hostname is False
    assert context.verify_flags & ssl.VERIFY_X509_PARTIAL_CHAIN
    assert context.cert_store_stats()["x509"] == 1  # exactly the pinned certificate


@pytest.mark.parametrize(
    ("factory", "kwargs"),
    [
        (Retry, {"attempts": 0}),
        (Retry, {"backoff": 5.0, "max_backoff": 1.0}),
        (PveTimeouts, {"read": 0}),
        (PollPolicy, {"initial": 0}),
        (PollPolicy, {"factor": 0.5}),
    ],
)
def test_value_objects_refuse_nonsense(factory, kwargs):
    with pytest.raises(ValueError):
        factory(**kwargs)


def test_poll_delays_double_up_to_the_maximum():
    delays = PollPolicy(initial=0.2, factor=2.0, maximum=2.0).delays()

    assert [round(next(delays), 3) for _ in range(6)] == [0.2, 0.4, 0.8, 1.6, 2.0, 2.0]
