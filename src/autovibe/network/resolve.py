"""Turning host names into addresses (A and AAAA), behind an injectable resolver.

The PVE firewall matches addresses, so every host name in a profile becomes an IP set that autovibe
keeps filled with the name's current answers. :class:`SystemResolver` asks the system's resolver;
:class:`StaticResolver` answers from a table (the ``network.static_hosts`` setting, tests, the demo)
and can fall back to another resolver for names it does not know.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Iterable, Mapping, Sequence
from typing import Protocol


class ResolveFailed(Exception):
    """A host name could not be resolved (no answer, timeout)."""


class Resolver(Protocol):
    async def resolve(self, host: str) -> list[str]:
        """The host's IPv4 and IPv6 addresses, sorted; raises ``ResolveFailed``."""
        ...


def _sorted(addresses: Iterable[str]) -> list[str]:
    unique = {ipaddress.ip_address(a) for a in addresses}
    return [str(a) for a in sorted(unique, key=lambda a: (a.version, a))]


class SystemResolver:
    """The system's resolver (getaddrinfo: /etc/hosts, then DNS), with a timeout per name."""

    def __init__(self, *, timeout_s: float = 5.0) -> None:
        self.timeout_s = timeout_s

    async def resolve(self, host: str) -> list[str]:
        loop = asyncio.get_running_loop()
        try:
            answers = await asyncio.wait_for(
                loop.getaddrinfo(host, None, type=socket.SOCK_STREAM), timeout=self.timeout_s
            )
        except (OSError, TimeoutError) as exc:
            raise ResolveFailed(f"{host}: {exc or 'timed out'}") from None
        found = _sorted(str(info[4][0]).split("%")[0] for info in answers)
        if not found:
            raise ResolveFailed(f"{host}: no A or AAAA records")
        return found


class StaticResolver:
    """Answers from ``table`` (host -> addresses); other names go to ``fallback`` (or fail)."""

    def __init__(self, table: Mapping[str, Sequence[str]], fallback: Resolver | None = None) -> None:
        self.table = {host.lower().rstrip("."): _sorted(addresses) for host, addresses in table.items()}
        self.fallback = fallback

    async def resolve(self, host: str) -> list[str]:
        key = host.lower().rstrip(".")
        if key in self.table:
            if not self.table[key]:
                raise ResolveFailed(f"{host}: no A or AAAA records")
            return list(self.table[key])
        if self.fallback is None:
            raise ResolveFailed(f"{host}: not in the static table")
        return await self.fallback.resolve(host)


async def resolve_all(
    resolver: Resolver, hosts: Iterable[str]
) -> tuple[dict[str, list[str]], dict[str, str]]:
    """Resolve every host concurrently: (addresses by host, failure reason by host)."""
    names = sorted(set(hosts))
    results = await asyncio.gather(*(resolver.resolve(h) for h in names), return_exceptions=True)
    found: dict[str, list[str]] = {}
    failed: dict[str, str] = {}
    for host, result in zip(names, results, strict=True):
        if isinstance(result, BaseException):
            if not isinstance(result, ResolveFailed | ValueError):
                raise result
            failed[host] = str(result)
        else:
            found[host] = result
    return found, failed
