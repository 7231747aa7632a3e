"""The encrypted secret store and its key ring, on a real SQLite store and real key files."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.fernet import Fernet
from sqlalchemy import select

from autovibe.security.secrets import (
    KeyRing,
    SecretKeyInvalid,
    SecretNameInvalid,
    SecretNotFound,
    SecretStore,
    default_key_path,
    forget_registered_secrets,
    redact_text,
    rotate,
)
from autovibe.store.db import Database, sqlite_url
from autovibe.store.tables import StoredSecret

VALUE = "pve-token-secret-5f3b0c1e"
posix_only = pytest.mark.skipif(os.name != "posix", reason="POSIX file modes")


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    database = Database.open(sqlite_url(tmp_path / "autovibe.db"))
    yield database
    database.dispose()


@pytest.fixture
def key_path(tmp_path: Path) -> Path:
    return tmp_path / "config" / "autovibe" / "secret.key"


@pytest.fixture
def keyring(key_path: Path) -> KeyRing:
    return KeyRing.load(path=key_path, create=True)


@pytest.fixture(autouse=True)
def empty_registry() -> Iterator[None]:
    forget_registered_secrets()
    yield
    forget_registered_secrets()


def ciphertexts(db: Database) -> dict[str, str]:
    with db.session() as session:
        return {
            name: text for name, text in session.execute(select(StoredSecret.name, StoredSecret.ciphertext))
        }


def test_round_trip_and_the_database_holds_only_ciphertext(db: Database, keyring: KeyRing) -> None:
    store = SecretStore(db, keyring)
    info = store.put("pve-token", VALUE)
    assert store.get("pve-token") == VALUE
    stored = ciphertexts(db)["pve-token"]
    assert VALUE not in stored
    assert stored.startswith("gAAAAA")  # a Fernet token
    assert info.name == "pve-token"
    assert info.created_at.tzinfo is not None


def test_put_replaces_the_value_and_keeps_created_at(db: Database, keyring: KeyRing) -> None:
    store = SecretStore(db, keyring)
    first = store.put("hook", "value-one")
    second = store.put("hook", "value-two")
    assert store.get("hook") == "value-two"
    assert second.created_at == first.created_at
    assert second.updated_at >= first.updated_at


def test_list_shows_names_and_times_never_values(db: Database, keyring: KeyRing) -> None:
    store = SecretStore(db, keyring)
    store.put("b-key", VALUE)
    store.put("a-key", "another-value")
    listed = store.list()
    assert [info.name for info in listed] == ["a-key", "b-key"]
    assert VALUE not in repr(listed)
    assert set(listed[0].as_dict()) == {"name", "created_at", "updated_at"}


def test_delete_and_not_found(db: Database, keyring: KeyRing) -> None:
    store = SecretStore(db, keyring)
    store.put("gone", VALUE)
    store.delete("gone")
    with pytest.raises(SecretNotFound) as caught:
        store.get("gone")
    assert "autovibe secret list" in (caught.value.hint or "")
    with pytest.raises(SecretNotFound):
        store.delete("gone")


def test_values_stay_out_of_reprs_and_logs(db: Database, keyring: KeyRing) -> None:
    store = SecretStore(db, keyring)
    store.put("ai-key", VALUE)
    assert VALUE not in repr(store) and VALUE not in repr(keyring)
    # Every value the process handled is registered, so logs mask it even where no pattern would.
    assert redact_text(f"echo {VALUE}") == "echo **********"


@pytest.mark.parametrize("name", ["", "-dash", "has space", "x" * 65, "slash/name"])
def test_bad_names_are_refused(db: Database, keyring: KeyRing, name: str) -> None:
    with pytest.raises(SecretNameInvalid):
        SecretStore(db, keyring).put(name, VALUE)


def test_a_wrong_key_fails_clearly_without_the_value(db: Database, keyring: KeyRing) -> None:
    SecretStore(db, keyring).put("pve-token", VALUE)
    other = KeyRing.load(env_value=Fernet.generate_key().decode())
    with pytest.raises(SecretKeyInvalid) as caught:
        SecretStore(db, other).get("pve-token")
    message = str(caught.value)
    assert "'pve-token' cannot be decrypted with the AUTOVIBE_SECRET_KEY" in message
    assert VALUE not in message and VALUE not in (caught.value.hint or "")


def test_the_env_key_wins_and_may_hold_several_keys(db: Database, keyring: KeyRing, key_path: Path) -> None:
    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    SecretStore(db, KeyRing.load(env_value=old)).put("x", VALUE)
    ring = KeyRing.load(env_value=f"{new}, {old}", path=key_path)
    assert ring.path is None and ring.key_count == 2
    assert SecretStore(db, ring).get("x") == VALUE


@posix_only
def test_the_key_file_is_created_0600(key_path: Path) -> None:
    KeyRing.load(path=key_path, create=True)
    assert stat.S_IMODE(key_path.stat().st_mode) == 0o600
    assert len(key_path.read_text().split()) == 1
    assert not list(key_path.parent.glob(".*.tmp"))


@posix_only
def test_the_key_file_is_created_0600_even_with_a_permissive_umask(key_path: Path) -> None:
    previous = os.umask(0)
    try:
        KeyRing.load(path=key_path, create=True)
    finally:
        os.umask(previous)
    assert stat.S_IMODE(key_path.stat().st_mode) == 0o600


def test_loading_twice_uses_the_same_key(db: Database, key_path: Path) -> None:
    SecretStore(db, KeyRing.load(path=key_path, create=True)).put("x", VALUE)
    assert SecretStore(db, KeyRing.load(path=key_path, create=True)).get("x") == VALUE


@posix_only
@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o620])
def test_a_key_file_other_users_can_use_is_refused(keyring: KeyRing, key_path: Path, mode: int) -> None:
    key_path.chmod(mode)
    with pytest.raises(SecretKeyInvalid) as caught:
        KeyRing.load(path=key_path)
    assert f"mode {mode:04o}" in str(caught.value)
    assert caught.value.hint == f"run: chmod 600 {key_path}"


def test_a_missing_key_file_is_an_error_unless_created(key_path: Path) -> None:
    with pytest.raises(SecretKeyInvalid, match="no key file"):
        KeyRing.load(path=key_path)


def test_a_malformed_key_file_is_refused_without_its_content(key_path: Path) -> None:
    key_path.parent.mkdir(parents=True)
    fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write("not-a-fernet-key-but-secret\n")
    with pytest.raises(SecretKeyInvalid) as caught:
        KeyRing.load(path=key_path)
    assert "not a Fernet key" in str(caught.value)
    assert "not-a-fernet-key-but-secret" not in str(caught.value)


def test_the_default_key_file_is_in_the_xdg_config_dir(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    if os.name == "posix":
        assert default_key_path() == tmp_path / "xdg" / "autovibe" / "secret.key"


def test_rotation_reencrypts_everything_and_retires_the_old_key(
    db: Database, keyring: KeyRing, key_path: Path
) -> None:
    store = SecretStore(db, keyring)
    values = {"pve-token": VALUE, "hook": "hook-secret-value", "ai": "sk-ant-000000000000000000"}
    infos = {name: store.put(name, value) for name, value in values.items()}
    before = ciphertexts(db)
    old_key = key_path.read_text().split()

    done = rotate(db, keyring)

    assert done.reencrypted == 3 and done.retired_keys == 1
    new_key = key_path.read_text().split()
    assert len(new_key) == 1 and new_key != old_key
    after = ciphertexts(db)
    assert all(after[name] != before[name] for name in values)
    fresh = KeyRing.load(path=key_path)
    assert {name: SecretStore(db, fresh).get(name) for name in values} == values
    # The old key alone no longer opens anything.
    with pytest.raises(SecretKeyInvalid):
        SecretStore(db, KeyRing.load(env_value=old_key[0])).get("hook")
    # Re-encrypting is not a new value: the timestamps stay.
    assert {info.name: info.updated_at for info in SecretStore(db, fresh).list()} == {
        name: info.updated_at for name, info in infos.items()
    }
    if os.name == "posix":
        assert stat.S_IMODE(key_path.stat().st_mode) == 0o600


def test_a_failed_rotation_commits_nothing_and_keeps_every_key(
    db: Database, keyring: KeyRing, key_path: Path
) -> None:
    store = SecretStore(db, keyring)
    store.put("good", VALUE)
    SecretStore(db, KeyRing.load(env_value=Fernet.generate_key().decode())).put("foreign", "other-value")
    before = ciphertexts(db)
    old_key = key_path.read_text().split()[0]

    with pytest.raises(SecretKeyInvalid, match="'foreign'"):
        rotate(db, keyring)

    assert ciphertexts(db) == before
    keys = key_path.read_text().split()
    assert old_key in keys  # a newer key may have been added; the old one must stay
    assert SecretStore(db, KeyRing.load(path=key_path)).get("good") == VALUE


def test_rotation_of_an_env_key_is_refused(db: Database) -> None:
    ring = KeyRing.load(env_value=Fernet.generate_key().decode())
    with pytest.raises(SecretKeyInvalid, match="AUTOVIBE_SECRET_KEY"):
        rotate(db, ring)


def test_rotation_with_no_secrets_still_replaces_the_key(
    db: Database, keyring: KeyRing, key_path: Path
) -> None:
    old = key_path.read_text()
    assert rotate(db, keyring).reencrypted == 0
    assert key_path.read_text() != old
