"""``autovibe secret ...`` as a real subprocess, with a throwaway HOME and XDG dirs and no AUTOVIBE_* env.

The value goes in on stdin and must never come back out: not in tables, JSON, errors, or debug logs.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

from autovibe.security.secrets import KeyRing, SecretStore
from autovibe.store.db import Database, sqlite_url

pytestmark = pytest.mark.e2e

VALUE = "hunter2-0c9f4e1a-very-secret"
HOOK_SECRET = "whsec-4b1d9e7f2a"


@dataclass
class Cli:
    home: Path

    @property
    def key_file(self) -> Path:
        return self.home / "config" / "autovibe" / "secret.key"

    @property
    def database(self) -> Path:
        return self.home / "data" / "autovibe" / "autovibe.db"

    def run(self, *args: str, stdin: str = "", **extra_env: str) -> subprocess.CompletedProcess[str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("AUTOVIBE_")}
        env.update(
            HOME=str(self.home),
            XDG_DATA_HOME=str(self.home / "data"),
            XDG_CONFIG_HOME=str(self.home / "config"),
            NO_COLOR="1",
            **extra_env,
        )
        return subprocess.run(
            [sys.executable, "-m", "autovibe", *args],
            input=stdin,
            capture_output=True,
            text=True,
            env=env,
            timeout=90,
            check=False,
        )


@pytest.fixture
def cli(tmp_path: Path) -> Cli:
    return Cli(tmp_path)


def assert_hidden(result: subprocess.CompletedProcess[str], *secrets: str) -> None:
    for secret in (VALUE, *secrets):
        assert secret not in result.stdout
        assert secret not in result.stderr


def test_set_reads_stdin_and_creates_a_0600_key_file(cli: Cli) -> None:
    result = cli.run("secret", "set", "pve-token", stdin=VALUE + "\n")
    assert result.returncode == 0, result.stderr
    assert "stored secret 'pve-token'" in result.stdout
    assert_hidden(result)
    if os.name == "posix":
        assert stat.S_IMODE(cli.key_file.stat().st_mode) == 0o600
    # The trailing newline of `echo` is not part of the value.
    db = Database.open(sqlite_url(cli.database))
    try:
        assert SecretStore(db, KeyRing.load(path=cli.key_file)).get("pve-token") == VALUE
    finally:
        db.dispose()


def test_list_shows_names_never_values(cli: Cli) -> None:
    assert cli.run("secret", "set", "pve-token", stdin=VALUE).returncode == 0
    table = cli.run("secret", "list")
    assert table.returncode == 0, table.stderr
    assert "pve-token" in table.stdout
    assert_hidden(table)
    as_json = cli.run("secret", "list", "--json")
    assert as_json.returncode == 0, as_json.stderr
    data = json.loads(as_json.stdout)
    assert [entry["name"] for entry in data["secrets"]] == ["pve-token"]
    assert set(data["secrets"][0]) == {"name", "created_at", "updated_at"}
    assert_hidden(as_json)


def test_debug_logging_never_shows_the_value(cli: Cli) -> None:
    cli.key_file.parent.mkdir(parents=True)
    config = cli.key_file.parent / "config.toml"
    config.write_text(
        'log_level = "debug"\n'
        f'[usage]\nwebhook_url = "https://hooks.example/x"\nwebhook_secret = "{HOOK_SECRET}"\n'
    )
    config.chmod(0o644)
    runs = [
        cli.run("-vv", "secret", "set", "pve-token", stdin=VALUE),
        cli.run("-vv", "secret", "list"),
        cli.run("-vv", "secret", "list", "--json"),
        cli.run("-vv", "secret", "rotate-key"),
        cli.run("-vv", "secret", "set", "pve-token", stdin=VALUE),
    ]
    for result in runs:
        assert result.returncode == 0, result.stderr
        assert_hidden(result, HOOK_SECRET, *cli.key_file.read_text().split())
    assert "secret stored" in runs[0].stderr  # debug logging did run
    # The config file holds a secret and is world-readable: one warning per command, with the fix.
    warnings = [line for line in runs[1].stderr.splitlines() if line.startswith("warning: config file")]
    assert len(warnings) == 1
    assert f"chmod 600 {config}" in warnings[0]


def test_the_env_key_never_shows_either(cli: Cli) -> None:
    key = Fernet.generate_key().decode()
    result = cli.run("-vv", "secret", "set", "ai-key", stdin=VALUE, AUTOVIBE_SECRET_KEY=key)
    assert result.returncode == 0, result.stderr
    assert_hidden(result, key)
    assert not cli.key_file.exists()
    refused = cli.run("secret", "rotate-key", AUTOVIBE_SECRET_KEY=key)
    assert refused.returncode == 2
    assert "AUTOVIBE_SECRET_KEY" in refused.stderr
    assert_hidden(refused, key)


def test_rotate_key_reports_a_count_and_keeps_every_secret_readable(cli: Cli) -> None:
    for name in ("a", "b"):
        assert cli.run("secret", "set", name, stdin=f"{VALUE}-{name}").returncode == 0
    old_key = cli.key_file.read_text()
    result = cli.run("secret", "rotate-key")
    assert result.returncode == 0, result.stderr
    assert "re-encrypted 2 secret(s)" in result.stdout
    assert_hidden(result)
    assert cli.key_file.read_text() != old_key
    db = Database.open(sqlite_url(cli.database))
    try:
        store = SecretStore(db, KeyRing.load(path=cli.key_file))
        assert [store.get(name) for name in ("a", "b")] == [f"{VALUE}-a", f"{VALUE}-b"]
    finally:
        db.dispose()


def test_delete_then_not_found(cli: Cli) -> None:
    assert cli.run("secret", "set", "gone", stdin=VALUE).returncode == 0
    deleted = cli.run("secret", "delete", "gone")
    assert deleted.returncode == 0, deleted.stderr
    again = cli.run("secret", "delete", "gone")
    assert again.returncode == 4
    assert again.stderr.startswith("error: no secret named 'gone'")
    assert "hint: " in again.stderr


def test_empty_stdin_and_bad_names_are_usage_errors(cli: Cli) -> None:
    empty = cli.run("secret", "set", "x", stdin="")
    assert empty.returncode == 2
    assert "no value" in empty.stderr
    bad = cli.run("secret", "set", "no spaces", stdin=VALUE)
    assert bad.returncode == 2
    assert_hidden(bad)


def test_a_world_readable_key_file_is_refused(cli: Cli) -> None:
    if os.name != "posix":
        pytest.skip("POSIX file modes")
    assert cli.run("secret", "set", "x", stdin=VALUE).returncode == 0
    cli.key_file.chmod(0o644)
    result = cli.run("secret", "set", "y", stdin=VALUE)
    assert result.returncode == 2
    assert f"hint: run: chmod 600 {cli.key_file}" in result.stderr
    assert_hidden(result, *cli.key_file.read_text().split())
