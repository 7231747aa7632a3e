"""``autovibe user``, ``token`` and ``role`` as a user runs them: a real subprocess per command."""

from __future__ import annotations

import re
import stat
from datetime import UTC, datetime
from pathlib import Path

import pytest

from autovibe.errors import AutovibeDenied
from autovibe.security.identity import Identity, authenticate, server_key_from
from autovibe.store.db import Database, sqlite_url
from tests.e2e.test_cli_machines import Cli, assert_one_error_line

pytestmark = pytest.mark.e2e

TOKEN_RE = re.compile(r"avt_[0-9a-f]{12}_[A-Za-z0-9_-]{43}")


@pytest.fixture
def cli(tmp_path: Path) -> Cli:
    return Cli(tmp_path)


def test_users_tokens_and_roles(cli: Cli) -> None:
    assert "added user 'bob'" in cli.ok("user", "add", "bob", "--display-name", "Bob Smith").stdout
    cli.ok("project", "create", "alpha")
    users = cli.json("user", "list")["users"]
    assert [(u["name"], u["display_name"], u["disabled"]) for u in users] == [("bob", "Bob Smith", False)]

    # The token is printed once, with a warning that it cannot be shown again.
    created = cli.ok("token", "create", "bob", "--description", "ci", "--ttl", "30d")
    tokens = TOKEN_RE.findall(created.stdout)
    assert len(tokens) == 1
    token = tokens[0]
    token_id = token.split("_")[1]
    assert f"created token {token_id} for user 'bob'" in created.stdout
    assert "cannot be shown again" in created.stderr
    key_file = cli.home / "config" / "autovibe" / "token.key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600

    # Listings show the id, never the secret.
    listed = cli.run("token", "list")
    listed_json = cli.json("token", "list", "--user", "bob")
    secret = token.split("_", 2)[2]
    for text in (listed.stdout, str(listed_json)):
        assert token_id in text and secret not in text
    assert [(t["token_id"], t["user"], t["state"], t["description"]) for t in listed_json["tokens"]] == [
        (token_id, "bob", "active", "ci")
    ]

    # The token authenticates as bob with the roles bound through the CLI.
    cli.ok("role", "bind", "bob", "operator", "--project", "alpha")
    cli.ok("role", "bind", "bob", "viewer")
    assert cli.json("role", "list", "--user", "bob")["bindings"] == [
        {"user": "bob", "role": "viewer", "project": None},
        {"user": "bob", "role": "operator", "project": "alpha"},
    ]
    assert "operator" in cli.ok("role", "list").stdout
    who = _authenticate(cli, token)
    assert who is not None and who.name == "bob" and len(who.bindings) == 2

    cli.ok("role", "unbind", "bob", "viewer")
    assert [b["role"] for b in cli.json("role", "list")["bindings"]] == ["operator"]

    # Revoked: the token no longer authenticates, and the listing says so.
    assert f"revoked token {token_id}" in cli.ok("token", "revoke", token_id).stdout
    assert [t["state"] for t in cli.json("token", "list")["tokens"]] == ["revoked"]
    assert _authenticate(cli, token) is None

    # --json gives the token once too, for scripts.
    scripted = cli.json("token", "create", "bob")
    assert TOKEN_RE.fullmatch(scripted["secret"]) and scripted["token"]["user"] == "bob"


def test_bad_requests_exit_with_one_line(cli: Cli) -> None:
    cli.ok("user", "add", "bob")
    cases = [
        (("user", "add", "Bob"), 2, "not a lowercase slug"),
        (("user", "add", "bob"), 1, "already exists"),
        (("user", "disable", "carol"), 4, "no user 'carol'"),
        (("role", "bind", "bob", "root"), 2, "unknown role 'root'"),
        (("role", "bind", "bob", "viewer", "--project", "nope"), 4, "no project 'nope'"),
        (("token", "create", "bob", "--ttl", "5"), 2, "--ttl"),
        (("token", "revoke", "0123456789ab"), 4, "no token"),
    ]
    # Refusals change nothing, so they run side by side.
    *results, again = cli.run_together(*(args for args, _code, _text in cases), ("user", "add", "Bob"))
    for (args, code, text), result in zip(cases, results, strict=True):
        assert result.returncode == code, (args, result.stderr)
        assert text in result.stderr, (args, result.stderr)
    assert_one_error_line(again)

    cli.ok("user", "disable", "bob")
    refused = cli.run("token", "create", "bob")
    assert refused.returncode == 3 and "disabled" in refused.stderr
    cli.ok("user", "enable", "bob")
    assert TOKEN_RE.search(cli.ok("token", "create", "bob").stdout)


def _authenticate(cli: Cli, token: str) -> Identity | None:
    db = Database(sqlite_url(cli.data / "autovibe.db"))
    try:
        key = server_key_from(cli.home / "config" / "autovibe" / "token.key")
        return authenticate(db, token, key=key, now=datetime.now(UTC))
    except AutovibeDenied:
        return None
    finally:
        db.dispose()
