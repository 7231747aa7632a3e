"""Which process owns an operation, and whether that process is still alive.

The owner is ``host:pid:start`` where ``start`` is the process start time (clock ticks since boot, from
/proc), so a recycled pid is not mistaken for the original process. An owner on another host is taken
as alive: only that host (or an operator) can tell otherwise.
"""

from __future__ import annotations

import os
import socket
from functools import cache


def _start_ticks(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as handle:
            stat = handle.read()
    except OSError:
        return "?"
    # The command name (field 2) may contain spaces; fields after its closing parenthesis are fixed.
    return stat.rsplit(")", 1)[1].split()[19]


@cache
def this_process() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{_start_ticks(os.getpid())}"


def is_alive(owner: str) -> bool:
    host, _, rest = owner.partition(":")
    pid_text, _, start = rest.partition(":")
    if host != socket.gethostname():
        return True
    try:
        pid = int(pid_text)
        os.kill(pid, 0)
    except (ValueError, ProcessLookupError):
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    return start in ("", "?") or _start_ticks(pid) == start
