"""Network isolation profiles: which bridge a machine sits on and where it may send traffic.

A profile is data, validated before any PVE call. Allowlist entries take four forms:

- ``host:port`` (TCP), ``host:port/udp``: a DNS name, kept as an IP set autovibe refreshes;
- ``CIDR`` (any protocol, any port) and ``CIDR:port`` / ``CIDR:port/proto``;
- ``@name:port``: a symbolic host: ``@pve`` is the cluster nodes' management addresses, any other
  name comes from the ``network.hosts`` setting (``@hub``, ``@db``...).

The always-needed allowances are part of the profile, not hidden: ``dhcp`` and ``dns`` (the only
resolvers the machine may query). An ``isolating`` profile also gets the host guard: explicit DROP
rules, before its allow rules, for the PVE nodes' API (8006) and SSH (22), link-local metadata
(169.254.0.0/16), and DNS to anything but its resolvers.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from typing import Annotated, Any, Final, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, field_validator

from autovibe.errors import AutovibeInvalid, AutovibeNotFound

Policy = Literal["ACCEPT", "DROP", "REJECT"]
Proto = Literal["tcp", "udp"]
IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

# A DNS name as PVE-side tools take it: dot-separated labels of letters, digits and hyphens.
_LABEL: Final = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_HOST_RE: Final = re.compile(rf"(?=.{{1,253}}$)(?:{_LABEL}\.)*{_LABEL}\.?")
_SYMBOL_RE: Final = re.compile(r"@[a-z][a-z0-9_-]{0,31}")
_BRIDGE_RE: Final = re.compile(r"vmbr\d{1,4}|[A-Za-z][A-Za-z0-9_]{0,14}")
PVE_HOSTS: Final = "@pve"


class NetworkProfileInvalid(AutovibeInvalid, ValueError):
    """A bad profile or allowlist entry, refused before anything reaches PVE."""


class NetworkProfileNotFound(AutovibeNotFound, KeyError):
    def __str__(self) -> str:
        return self.message


class AllowEntry(BaseModel):
    """One parsed allowlist entry: exactly one of ``host``, ``symbol`` and ``network``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    text: str
    host: str | None = None
    symbol: str | None = None
    network: str | None = None  # a CIDR in canonical form
    port: int | None = None
    proto: Proto | None = None  # None with a CIDR and no port: any protocol

    @property
    def target(self) -> str:
        return self.host or self.symbol or self.network or ""


def _port(text: str, entry: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= 65535:
        raise NetworkProfileInvalid(f"allow entry '{entry}': port {text!r} is not a port (1-65535)")
    return int(text)


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def parse_allow(entry: str) -> AllowEntry:
    """Parse ``host:port[/proto]``, ``CIDR[:port[/proto]]`` or ``@name:port[/proto]``."""
    text = entry.strip()
    proto: Proto | None = None
    if "/" in text and text.rsplit("/", 1)[1].lower() in ("tcp", "udp"):
        text, proto_text = text.rsplit("/", 1)
        proto = "tcp" if proto_text.lower() == "tcp" else "udp"
    head, port_text = text, None
    if text.count(":") == 1 or (text.startswith("[") and "]:" in text):  # host:port, v4:port, [v6]:port
        head, port_text = text.rsplit(":", 1)
        head = head.strip("[]")
    port = _port(port_text, entry) if port_text is not None else None
    if proto is not None and port is None:
        raise NetworkProfileInvalid(f"allow entry '{entry}': a protocol needs a port (e.g. host:53/udp)")
    if _SYMBOL_RE.fullmatch(head):
        if port is None:
            raise NetworkProfileInvalid(f"allow entry '{entry}': a symbolic host needs a port (@hub:8000)")
        return AllowEntry(text=entry, symbol=head, port=port, proto=proto or "tcp")
    if "/" in head or ":" in head or _is_ip(head):
        try:
            network = ipaddress.ip_network(head, strict=False)
        except ValueError:
            raise NetworkProfileInvalid(
                f"allow entry '{entry}': {head!r} is not an IP address or CIDR (e.g. 10.0.0.0/8)"
            ) from None
        if "/" in head and str(network) != head and network.with_prefixlen != head:
            raise NetworkProfileInvalid(
                f"allow entry '{entry}': {head!r} has host bits set; did you mean {network.with_prefixlen}?"
            )
        return AllowEntry(
            text=entry, network=network.with_prefixlen, port=port, proto=proto or ("tcp" if port else None)
        )
    if not _HOST_RE.fullmatch(head):
        raise NetworkProfileInvalid(f"allow entry '{entry}': {head!r} is not a host name, IP or CIDR")
    if port is None:
        raise NetworkProfileInvalid(f"allow entry '{entry}': a host name needs a port (e.g. {head}:443)")
    return AllowEntry(text=entry, host=head.lower().rstrip("."), port=port, proto=proto or "tcp")


def _check_allow(values: tuple[str, ...]) -> tuple[str, ...]:
    for value in values:
        parse_allow(value)
    return values


def _check_ips(values: tuple[str, ...]) -> tuple[str, ...]:
    for value in values:
        try:
            ipaddress.ip_address(value)
        except ValueError:
            raise NetworkProfileInvalid(f"dns: {value!r} is not an IP address") from None
    return values


class NetworkProfile(BaseModel):
    """A network isolation profile (see the module docstring)."""

    model_config = ConfigDict(frozen=True, extra="forbid", str_strip_whitespace=True)

    name: Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]{0,31}$")]
    bridge: str
    vlan: Annotated[int | None, Field(ge=1, le=4094)] = None
    policy_in: Policy = "DROP"
    policy_out: Policy = "DROP"
    allow: Annotated[tuple[str, ...], AfterValidator(_check_allow)] = ()
    dhcp: bool = True
    dns: Annotated[tuple[str, ...], AfterValidator(_check_ips)] = ()
    isolating: bool = True  # add the host guard (see the module docstring)
    description: str = ""

    @field_validator("bridge")
    @classmethod
    def _check_bridge(cls, value: str) -> str:
        if not _BRIDGE_RE.fullmatch(value):
            raise ValueError(f"{value!r} is not a bridge name (e.g. vmbr1)")
        return value

    @property
    def entries(self) -> tuple[AllowEntry, ...]:
        return tuple(parse_allow(a) for a in self.allow)


SEED_PROFILES: Final[Mapping[str, NetworkProfile]] = {
    "api_access": NetworkProfile(
        name="api_access",
        bridge="vmbr1",
        allow=("api.anthropic.com:443", "api.openai.com:443", "api.github.com:443", "@hub:8000"),
        dns=("10.0.0.53",),
        description="Agents: the AI APIs, GitHub and the hub; nothing else.",
    ),
    "management_access": NetworkProfile(
        name="management_access",
        bridge="vmbr0",
        allow=("@pve:8006", "@db:5432", "api.anthropic.com:443", "10.0.0.0/8"),
        dns=("10.0.0.53",),
        isolating=False,  # it must reach the PVE API: the host guard would cut it off
        description="The hub: the PVE API, PostgreSQL, Anthropic and the internal network.",
    ),
}


def load_profiles(overrides: Mapping[str, Mapping[str, Any]]) -> dict[str, NetworkProfile]:
    """The seeds plus the ``network.profiles`` setting: a seed's name changes only the fields given."""
    found = dict(SEED_PROFILES)
    for name, fields in overrides.items():
        base = found[name].model_dump() if name in found else {}
        try:
            found[name] = NetworkProfile.model_validate({**base, **fields, "name": name})
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            message = str(first["msg"]).removeprefix("Value error, ")
            if not message.startswith(("allow entry", "dns:")):  # those already say where
                message = f"{where}: {message}"
            raise NetworkProfileInvalid(f"network profile '{name}': {message}") from None
        except NetworkProfileInvalid as exc:
            raise NetworkProfileInvalid(f"network profile '{name}': {exc.message}") from None
    return found


def get_profile(profiles: Mapping[str, NetworkProfile], name: str) -> NetworkProfile:
    if name not in profiles:
        raise NetworkProfileNotFound(
            f"no network profile '{name}'", hint=f"known profiles: {', '.join(sorted(profiles))}"
        )
    return profiles[name]
