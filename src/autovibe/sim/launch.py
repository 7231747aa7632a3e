"""Prepare a simulator for serving: credentials from flags or a file, faults, TLS material.

Kept in the simulator package (not the CLI) so anyone embedding the simulator gets the same behaviour
as ``autovibe sim serve``.
"""

from __future__ import annotations

import json
import secrets
import ssl
import tomllib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from autovibe.sim.app import SimApp
from autovibe.sim.certs import ensure_self_signed, server_ssl_context
from autovibe.sim.faults import load_fault_file


@dataclass
class Credentials:
    """Credentials made up for the user (to show once); flag-given ones are never echoed."""

    passwords: dict[str, str] = field(default_factory=dict)
    tokens: list[str] = field(default_factory=list)


def parse_user_flag(value: str) -> tuple[str, str]:
    """``USER@REALM:PASSWORD`` -> (userid, password). Raises ValueError with the expected shape."""
    userid, sep, password = value.partition(":")
    if not sep or "@" not in userid or not password:
        raise ValueError(f"--user expects USER@REALM:PASSWORD, got '{value.split(':')[0]}:…'")
    return userid, password


def parse_token_flag(value: str) -> tuple[str, str, str]:
    """``USER@REALM!NAME=SECRET`` -> (userid, name, secret), split at the last '=' as PVE does."""
    full, sep, secret = value.rpartition("=")
    userid, bang, name = full.partition("!")
    if not sep or not bang or "@" not in userid or not name or not secret:
        raise ValueError("--token expects USER@REALM!NAME=SECRET")
    return userid, name, secret


def load_config_file(path: Path) -> dict[str, Any]:
    """A TOML or JSON file with ``users``, ``tokens`` and ``acl`` lists (see docs/simulator.md)."""
    text = path.read_text()
    data: dict[str, Any] = tomllib.loads(text) if path.suffix == ".toml" else json.loads(text)
    return data


def configure(
    sim: SimApp,
    *,
    users: Sequence[str] = (),
    tokens: Sequence[str] = (),
    config_file: Path | None = None,
    faults_file: Path | None = None,
    fresh: bool,
) -> Credentials:
    """Apply flags and files to the cluster; on a fresh cluster with no credentials given, make some.

    Flag users get the Administrator role on ``/``; flag tokens have ``privsep=0`` (their user's
    rights). Raises ValueError for malformed flags or files.
    """
    access, made = sim.cluster.access, Credentials()
    if config_file is not None:
        access.apply_config(load_config_file(config_file))
    for flag in users:
        userid, password = parse_user_flag(flag)
        if userid in access.users:
            access.set_password(userid, password)
        else:
            access.add_user(userid, password)
    for flag in tokens:
        userid, name, secret = parse_token_flag(flag)
        if userid not in access.users:
            access.add_user(userid, None)
        access.add_token(userid, name, secret)
    if faults_file is not None:
        sim.cluster.faults = load_fault_file(faults_file)
    if fresh and not users and not tokens and config_file is None:
        password = secrets.token_urlsafe(12)
        access.set_password("root@pam", password)
        made.passwords["root@pam"] = password
        made.tokens.append(f"root@pam!sim={access.add_token('root@pam', 'sim')}")
    sim.save()
    return made


def tls_context(cert_dir: Path) -> tuple[ssl.SSLContext, str]:
    """A server context with the self-signed certificate in ``cert_dir`` (made on first use)."""
    cert, key = cert_dir / "pve-ssl.pem", cert_dir / "pve-ssl.key"
    fingerprint = ensure_self_signed(cert, key)
    return server_ssl_context(cert, key), fingerprint
