"""Persist the simulated cluster to one JSON file so successive processes share one cluster.

Every request runs inside ``StateFile.transaction``: an exclusive ``flock`` on ``<file>.lock``, a reload
when another process changed the file since we last read it, and an atomic rewrite (temp file +
``os.replace``) when the request changed anything. The file holds password hashes, token hashes and
the embedded client's token, so it is created 0600.
"""

from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

FORMAT_VERSION = 1


class StateFile:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._seen: tuple[int, int] | None = None

    def exists(self) -> bool:
        return self.path.exists()

    @contextmanager
    def locked(self) -> Iterator[None]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(f"{self.path}.lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)

    def changed_since_seen(self) -> bool:
        return self._stamp() != self._seen

    def read(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(self.path.read_text())
        if data.get("format") != FORMAT_VERSION:
            raise ValueError(
                f"{self.path}: simulator state format {data.get('format')!r} is not {FORMAT_VERSION}; "
                "remove the file to start a fresh simulated cluster"
            )
        self._seen = self._stamp()
        return data

    def write(self, data: dict[str, Any]) -> None:
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as handle:
            json.dump({**data, "format": FORMAT_VERSION}, handle, separators=(",", ":"))
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, self.path)
        self._seen = self._stamp()

    def _stamp(self) -> tuple[int, int] | None:
        try:
            st = self.path.stat()
        except FileNotFoundError:
            return None
        return (st.st_mtime_ns, st.st_size)
