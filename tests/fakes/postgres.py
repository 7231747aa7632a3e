"""A throwaway PostgreSQL cluster for the store tests: ``initdb`` once per session, one database per test.

``PostgresServer.start()`` runs ``initdb`` and ``pg_ctl start -w`` (which returns when the server
accepts connections, so nothing here sleeps) in a fresh temporary directory, on ``/dev/shm`` when
there is one. It listens on 127.0.0.1 only, on a free port, with trust authentication. Durability is
switched off (``fsync=off`` and friends): the cluster lives for one test session and is deleted after.
A test run killed hard (SIGKILL) leaves the server running; ``pg_ctl stop -D <root>/data`` ends it.

PostgreSQL refuses to run as root, so under root the binaries run as the ``postgres`` system user
(``runuser -u postgres --``) in a directory that user owns; as any other user they run directly.
When the binaries or that user are missing, ``PostgresUnavailable`` says why, and the fixture turns it
into a skip with that reason.

Example::

    server = PostgresServer.start()
    try:
        name = server.create_database()
        url = server.url(name)  # postgresql+psycopg://postgres@127.0.0.1:PORT/test_...
        ...
        server.drop_database(name)
    finally:
        server.stop()
"""

from __future__ import annotations

import os
import pwd
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
from psycopg import sql

SUPERUSER = "postgres"
SYSTEM_USER = "postgres"  # the account the binaries run as when the tests run as root
START_ATTEMPTS = 3  # a free port can be taken by someone else between probing and binding
START_TIMEOUT_S = 60

# Settings for a disposable cluster: nothing survives the session, so durability buys nothing. The
# server's zone is deliberately not UTC, so code that trusts the server to speak UTC fails here.
_SERVER_OPTIONS = {
    "listen_addresses": "127.0.0.1",
    "timezone": "Asia/Kolkata",
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "max_connections": "100",
    "shared_buffers": "32MB",
    "autovacuum": "off",  # each test's database lives for a second; vacuuming it only competes for CPU
}
RAM_DISK = Path("/dev/shm")


class PostgresUnavailable(RuntimeError):
    """This machine cannot run a PostgreSQL server (no binaries, or no unprivileged user under root)."""


class PostgresCommandFailed(RuntimeError):
    """``initdb`` or ``pg_ctl`` exited non-zero; the message carries its output."""


@dataclass
class PostgresServer:
    """A running throwaway cluster. ``url(name)`` gives a SQLAlchemy URL for one of its databases."""

    root: Path
    port: int
    setup_seconds: float
    _run_as: tuple[str, ...] = field(repr=False)

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    @property
    def log_file(self) -> Path:
        return self.root / "server.log"

    @classmethod
    def start(cls) -> PostgresServer:
        """``initdb`` a new cluster in a temporary directory and start it; raises ``PostgresUnavailable``."""
        began = time.perf_counter()
        initdb, pg_ctl = _binary("initdb"), _binary("pg_ctl")
        run_as = _run_as_prefix()
        root = Path(tempfile.mkdtemp(prefix="autovibe-pg-", dir=_scratch_dir()))
        try:
            if run_as:
                account = pwd.getpwnam(SYSTEM_USER)
                os.chown(root, account.pw_uid, account.pw_gid)
            _run([*run_as, initdb, "-D", str(root / "data"), "-U", SUPERUSER, "--auth=trust",
                  "--encoding=UTF8", "--locale=C", "--no-sync", "--no-instructions"], cwd=root)  # fmt: skip
            port = _start_on_free_port(run_as, pg_ctl, root)
        except BaseException:
            shutil.rmtree(root, ignore_errors=True)
            raise
        return cls(root=root, port=port, setup_seconds=time.perf_counter() - began, _run_as=run_as)

    def stop(self) -> None:
        """Stop the server at once (its data is thrown away) and delete its directory."""
        stop = [_binary("pg_ctl"), "stop", "-D", str(self.data_dir), "-m", "immediate", "-w"]
        try:
            _run([*self._run_as, *stop], cwd=self.root)
        finally:
            shutil.rmtree(self.root, ignore_errors=True)

    def url(self, database: str) -> str:
        return f"postgresql+psycopg://{SUPERUSER}@127.0.0.1:{self.port}/{database}"

    def create_database(self) -> str:
        """Create an empty database with a random ``test_`` name and return the name."""
        name = f"test_{secrets.token_hex(6)}"
        self._admin(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return name

    def drop_database(self, name: str) -> None:
        """Drop a database, disconnecting any session a test left open (``WITH (FORCE)``, PostgreSQL 13+)."""
        self._admin(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))

    def _admin(self, statement: sql.Composed) -> None:
        # CREATE/DROP DATABASE cannot run inside a transaction block, hence autocommit.
        with self._connect() as conn:
            conn.execute(statement)

    def _connect(self) -> psycopg.Connection[tuple[object, ...]]:
        return psycopg.connect(
            host="127.0.0.1", port=self.port, user=SUPERUSER, dbname="postgres", autocommit=True,
            sslmode="disable", connect_timeout=10,
        )  # fmt: skip


def _scratch_dir() -> Path | None:
    """Where the cluster lives: RAM when there is a tmpfs, else the usual temporary directory.

    ``CREATE DATABASE`` copies the 7 MB ``template1``; on a RAM disk that takes ~10 ms instead of
    ~300 ms on a VM disk, and ``initdb`` drops from ~1.5 s to ~0.5 s.
    """
    if RAM_DISK.is_dir() and os.access(RAM_DISK, os.W_OK | os.X_OK):
        return RAM_DISK
    return None


def _binary(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise PostgresUnavailable(
            f"PostgreSQL's {name!r} is not on PATH (install postgresql to run these tests)"
        )
    return path


def _run_as_prefix() -> tuple[str, ...]:
    """Under root, run the server binaries as the ``postgres`` account; otherwise as ourselves."""
    if os.geteuid() != 0:
        return ()
    try:
        pwd.getpwnam(SYSTEM_USER)
    except KeyError:
        raise PostgresUnavailable(
            f"running as root and there is no {SYSTEM_USER!r} user; PostgreSQL refuses to run as root"
        ) from None
    runuser = shutil.which("runuser")
    if runuser is None:
        raise PostgresUnavailable(
            "running as root and 'runuser' is not on PATH; PostgreSQL refuses to run as root"
        )
    return (runuser, "-u", SYSTEM_USER, "--")


def _start_on_free_port(run_as: tuple[str, ...], pg_ctl: str, root: Path) -> int:
    last: PostgresCommandFailed | None = None
    for _ in range(START_ATTEMPTS):
        port = _free_port()
        options = {**_SERVER_OPTIONS, "port": str(port), "unix_socket_directories": str(root)}
        flags = " ".join(f"-c {key}={value}" for key, value in options.items())
        try:
            _run([*run_as, pg_ctl, "start", "-D", str(root / "data"), "-l", str(root / "server.log"),
                  "-w", "-t", str(START_TIMEOUT_S), "-o", flags], cwd=root)  # fmt: skip
        except PostgresCommandFailed as exc:
            last = exc
            continue
        return port
    log = root / "server.log"
    tail = log.read_text(errors="replace")[-2000:] if log.exists() else "(no server log)"
    raise PostgresCommandFailed(f"PostgreSQL did not start after {START_ATTEMPTS} attempts: {last}\n{tail}")


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _run(cmd: list[str], *, cwd: Path) -> None:
    """Run a server binary; on failure the exception carries its output."""
    # PG* variables from the developer's shell (PGPORT, PGDATA, ...) would steer the binaries elsewhere.
    env = {key: value for key, value in os.environ.items() if not key.startswith("PG")}
    result = subprocess.run(
        cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=START_TIMEOUT_S + 30
    )
    if result.returncode != 0:
        raise PostgresCommandFailed(
            f"{' '.join(cmd)} exited {result.returncode}:\n{result.stdout}{result.stderr}".rstrip()
        )
