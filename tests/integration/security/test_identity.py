"""Users, API tokens, role bindings and the token key file, against a real SQLite store."""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import threading
from collections.abc import Iterator
from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from autovibe.errors import AutovibeConflict, AutovibeDenied, AutovibeInvalid, AutovibeNotFound
from autovibe.security import identity as ident
from autovibe.security import rbac
from autovibe.security.identity import AUTHENTICATION_FAILED, AuthenticationFailed, Binding
from autovibe.store.db import Database, sqlite_url
from autovibe.store.tables import ApiToken, Project, RoleBinding

KEY = bytes(range(32))
T0 = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    database = Database.open(sqlite_url(tmp_path / "autovibe.db"))
    with database.session() as session:
        session.add_all([Project(name="alpha"), Project(name="beta")])
    yield database
    database.dispose()


# ---- users -----------------------------------------------------------------------------------------


def test_users_are_added_listed_disabled_and_enabled(db: Database) -> None:
    added = ident.add_user(db, "bob", "Bob Smith")
    ident.add_user(db, "alice")
    assert (added.name, added.display_name, added.disabled) == ("bob", "Bob Smith", False)
    assert [u.name for u in ident.list_users(db)] == ["alice", "bob"]

    assert ident.disable_user(db, "bob").disabled
    assert [u.disabled for u in ident.list_users(db)] == [False, True]
    assert not ident.enable_user(db, "bob").disabled

    with pytest.raises(ident.UserExists) as taken:
        ident.add_user(db, "bob")
    assert isinstance(taken.value, AutovibeConflict) and taken.value.hint
    with pytest.raises(ident.UserNotFound) as missing:
        ident.disable_user(db, "carol")
    assert (
        isinstance(missing.value, AutovibeNotFound)
        and missing.value.hint == "add it: autovibe user add carol"
    )


@pytest.mark.parametrize("name", ["Bob", "bob smith", "", "-bob", "b" * 65, "bob@pam", "local-admin", "hub"])
def test_user_names_are_lowercase_slugs_and_not_reserved(db: Database, name: str) -> None:
    with pytest.raises(ident.InvalidIdentityRequest) as bad:
        ident.add_user(db, name)
    assert isinstance(bad.value, AutovibeInvalid)
    assert ident.list_users(db) == []


# ---- tokens ----------------------------------------------------------------------------------------


def test_a_token_is_shown_once_and_stored_only_as_a_keyed_hash(db: Database) -> None:
    ident.add_user(db, "bob")
    read, token = ident.create_token(db, "bob", description="ci", ttl=timedelta(days=30), key=KEY, now=T0)

    match = re.fullmatch(r"avt_([0-9a-f]{12})_([A-Za-z0-9_-]{43})", token)
    assert match is not None
    token_id, secret = match.groups()
    assert (read.token_id, read.user, read.description) == (token_id, "bob", "ci")
    assert (read.created_at, read.expires_at, read.last_used_at) == (T0, T0 + timedelta(days=30), None)

    with db.session() as session:
        row = session.scalars(select(ApiToken)).one()
    assert secret not in row.secret_hash and token not in row.secret_hash
    assert row.secret_hash == hmac.new(KEY, f"{token_id}:{secret}".encode(), hashlib.sha256).hexdigest()

    # Listings carry neither the secret nor its hash.
    for listed in (ident.list_tokens(db), ident.list_tokens(db, "bob")):
        assert [t.token_id for t in listed] == [token_id]
        text = repr(asdict(listed[0]))
        assert secret not in text and row.secret_hash not in text

    # Two tokens never share an id or a secret.
    _, other = ident.create_token(db, "bob", key=KEY, now=T0)
    assert other.split("_", 2)[1] != token_id and other.split("_", 2)[2] != secret


def test_authenticate_gives_the_users_identity_and_records_the_use(db: Database) -> None:
    ident.add_user(db, "bob")
    ident.bind(db, "bob", "operator", "alpha")
    ident.bind(db, "bob", "viewer")
    _, token = ident.create_token(db, "bob", ttl=timedelta(hours=1), key=KEY, now=T0)

    who = ident.authenticate(db, token, key=KEY, now=T0 + timedelta(minutes=5))
    assert who == ident.Identity("bob", (Binding("viewer", None), Binding("operator", "alpha")), "user")
    assert rbac.can(who, "machine.delete", "alpha") and not rbac.can(who, "machine.delete", "beta")
    assert ident.list_tokens(db)[0].last_used_at == T0 + timedelta(minutes=5)

    ident.authenticate(db, token, key=KEY, now=T0 + timedelta(minutes=7))
    assert ident.list_tokens(db)[0].last_used_at == T0 + timedelta(minutes=7)
    assert ident.list_tokens(db)[0].state(T0) == "active"


def test_every_refusal_looks_the_same(db: Database) -> None:
    ident.add_user(db, "bob")
    ident.add_user(db, "eve")
    _, good = ident.create_token(db, "bob", key=KEY, now=T0)
    _, short = ident.create_token(db, "bob", ttl=timedelta(hours=1), key=KEY, now=T0)
    revoked_read, revoked = ident.create_token(db, "bob", key=KEY, now=T0)
    ident.revoke_token(db, revoked_read.token_id, now=T0)
    _, eves = ident.create_token(db, "eve", key=KEY, now=T0)
    ident.disable_user(db, "eve")

    prefix, token_id, secret = good.split("_", 2)
    wrong_secret = f"{prefix}_{token_id}_{secret[::-1]}"
    unknown_id = f"{prefix}_{'0' * 12}_{secret}"
    later = T0 + timedelta(hours=2)
    cases = {
        "wrong secret": (wrong_secret, KEY, T0),
        "unknown id": (unknown_id, KEY, T0),
        "malformed": ("not-a-token", KEY, T0),
        "empty": ("", KEY, T0),
        "other server key": (good, bytes(32), T0),
        "expired": (short, KEY, later),
        "revoked": (revoked, KEY, T0),
        "disabled user": (eves, KEY, T0),
    }
    for case, (token, key, now) in cases.items():
        with pytest.raises(AuthenticationFailed) as refused:
            ident.authenticate(db, token, key=key, now=now)
        assert isinstance(refused.value, AutovibeDenied), case
        assert (str(refused.value), refused.value.hint) == (AUTHENTICATION_FAILED, None), case

    assert ident.authenticate(db, good, key=KEY, now=later).name == "bob"
    states = {t.token_id: t.state(later) for t in ident.list_tokens(db)}
    assert sorted(states.values()) == ["active", "active", "expired", "revoked"]
    # Refused attempts are not recorded as uses.
    assert [t.last_used_at is not None for t in ident.list_tokens(db)] == [True, False, False, False]

    ident.enable_user(db, "eve")
    assert ident.authenticate(db, eves, key=KEY, now=T0).name == "eve"


def test_token_requests_are_checked(db: Database) -> None:
    ident.add_user(db, "bob")
    with pytest.raises(ident.UserNotFound):
        ident.create_token(db, "carol", key=KEY)
    with pytest.raises(ident.InvalidIdentityRequest):
        ident.create_token(db, "bob", ttl=timedelta(0), key=KEY)
    with pytest.raises(ValueError, match="at least 32 bytes"):
        ident.create_token(db, "bob", key=b"short")
    ident.disable_user(db, "bob")
    with pytest.raises(ident.UserDisabled):
        ident.create_token(db, "bob", key=KEY)
    assert ident.list_tokens(db) == []


def test_revoking(db: Database) -> None:
    ident.add_user(db, "bob")
    read, _ = ident.create_token(db, "bob", key=KEY, now=T0)
    first = ident.revoke_token(db, read.token_id, now=T0 + timedelta(hours=1))
    again = ident.revoke_token(db, read.token_id, now=T0 + timedelta(hours=2))
    assert first.revoked_at == again.revoked_at == T0 + timedelta(hours=1)
    with pytest.raises(ident.TokenNotFound):
        ident.revoke_token(db, "0123456789ab")


# ---- roles -----------------------------------------------------------------------------------------


def test_roles_are_bound_listed_and_unbound(db: Database) -> None:
    ident.add_user(db, "bob")
    ident.add_user(db, "alice")
    ident.bind(db, "bob", "operator", "alpha")
    ident.bind(db, "bob", "operator", "alpha")  # again: no second row
    ident.bind(db, "bob", "viewer")
    ident.bind(db, "bob", "viewer")  # a global binding too (NULL project ids are not unique in SQL)
    ident.bind(db, "alice", "admin")
    with db.session() as session:
        assert len(session.scalars(select(RoleBinding)).all()) == 3

    assert ident.bindings_of(db, "bob") == [
        ident.BindingRead("bob", "viewer", None),
        ident.BindingRead("bob", "operator", "alpha"),
    ]
    assert [(b.user, b.role) for b in ident.bindings_of(db)] == [
        ("alice", "admin"),
        ("bob", "viewer"),
        ("bob", "operator"),
    ]
    assert ident.identity_of(db, "bob").bindings == (Binding("viewer", None), Binding("operator", "alpha"))

    ident.unbind(db, "bob", "operator", "alpha")
    assert ident.identity_of(db, "bob").bindings == (Binding("viewer", None),)
    with pytest.raises(ident.BindingNotFound):
        ident.unbind(db, "bob", "operator", "alpha")
    with pytest.raises(ident.BindingNotFound):
        ident.unbind(db, "bob", "viewer", "gamma")


def test_binding_requests_are_checked(db: Database) -> None:
    ident.add_user(db, "bob")
    with pytest.raises(ident.InvalidIdentityRequest, match="unknown role 'root'"):
        ident.bind(db, "bob", "root")
    with pytest.raises(AutovibeNotFound, match="no project 'gamma'"):
        ident.bind(db, "bob", "viewer", "gamma")
    with pytest.raises(ident.UserNotFound):
        ident.bind(db, "carol", "viewer")
    assert ident.bindings_of(db) == []


def test_a_disabled_user_has_no_identity(db: Database) -> None:
    ident.add_user(db, "bob")
    ident.bind(db, "bob", "admin")
    ident.disable_user(db, "bob")
    with pytest.raises(ident.UserDisabled) as denied:
        ident.identity_of(db, "bob")
    assert isinstance(denied.value, AutovibeDenied)
    ident.enable_user(db, "bob")
    assert ident.identity_of(db, "bob").bindings == (Binding("admin", None),)


def test_deleting_a_project_drops_its_bindings(db: Database) -> None:
    ident.add_user(db, "bob")
    ident.bind(db, "bob", "operator", "beta")
    with db.session() as session:
        session.delete(session.scalars(select(Project).where(Project.name == "beta")).one())
    assert ident.bindings_of(db, "bob") == []


# ---- the token key file ------------------------------------------------------------------------------


def test_the_key_file_is_made_once_with_mode_0600(tmp_path: Path) -> None:
    path = tmp_path / "config" / "autovibe" / "token.key"
    key = ident.server_key_from(path)
    assert len(key) == 32
    assert os.stat(path).st_mode & 0o777 == 0o600
    assert os.stat(path.parent).st_mode & 0o777 == 0o700
    assert ident.server_key_from(path) == key
    assert [p.name for p in path.parent.iterdir()] == ["token.key"]  # no temporary file left behind


def test_racing_processes_agree_on_one_key(tmp_path: Path) -> None:
    path = tmp_path / "token.key"
    keys: list[bytes] = []
    threads = [threading.Thread(target=lambda: keys.append(ident.server_key_from(path))) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(keys) == 8 and len(set(keys)) == 1


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o660])
def test_a_key_file_others_can_read_or_write_is_refused(tmp_path: Path, mode: int) -> None:
    path = tmp_path / "token.key"
    path.write_bytes(os.urandom(32))
    path.chmod(mode)
    with pytest.raises(ident.KeyFileUnsafe, match="open to others") as refused:
        ident.server_key_from(path)
    assert isinstance(refused.value, AutovibeDenied)
    assert refused.value.hint == f"chmod 600 {path}"


def test_a_key_file_of_the_wrong_size_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "token.key"
    path.write_bytes(b"too short")
    path.chmod(0o600)
    with pytest.raises(ident.KeyFileUnsafe, match="32-byte key"):
        ident.server_key_from(path)
