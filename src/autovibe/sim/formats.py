"""PVE's named string formats (``format: "pve-vmid"`` and friends) with PVE's own error texts.

``check_format(name, value)`` returns None when the value is acceptable and otherwise the text PVE
dies with, including its trailing newline (the validator prefixes ``"invalid format - "``). Formats
ending in ``-list`` check every element of a comma/semicolon/space separated list (PVE's
``split_list``); ``-opt`` formats accept the empty string. Formats the simulator does not know are
accepted, as the real server would accept any value it can parse: ``CHECKED_FORMATS`` lists the ones
that are checked. Texts and regexes follow pve-common ``JSONSchema.pm``/``Tools.pm`` and
pve-access-control ``AccessControl.pm`` (see shared/pve-api/SEMANTICS.md §1).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable

from autovibe.sim import fwspec

Checker = Callable[[str], str | None]

_IPV4 = r"(?:(?:25[0-5]|(?:2[0-4]|1[0-9]|[1-9])?[0-9])\.){3}(?:25[0-5]|(?:2[0-4]|1[0-9]|[1-9])?[0-9])"
_DNS_LABEL = r"[a-zA-Z0-9](?:[a-zA-Z0-9-]*[a-zA-Z0-9])?"
_REALM = r"[A-Za-z][A-Za-z0-9.\-_]+"
_USER = r"[^\s:/]+"
_EMAIL_USER = r"[\w+\-~]+(?:\.[\w+\-~]+)*"
_EMAIL = _EMAIL_USER + r"@[a-zA-Z0-9-]+(?:\.[a-zA-Z0-9-]+)*"

# PVE 8.4's privilege names (pve-access-control AccessControl.pm ``$privgroups`` plus the
# special-cased ones); ``pve-priv-list`` values outside this set are rejected.
PRIVILEGES = frozenset(
    {
        "Datastore.Allocate", "Datastore.AllocateSpace", "Datastore.AllocateTemplate", "Datastore.Audit",
        "Group.Allocate", "Mapping.Audit", "Mapping.Modify", "Mapping.Use", "Permissions.Modify",
        "Pool.Allocate", "Pool.Audit", "Realm.Allocate", "Realm.AllocateUser", "SDN.Allocate",
        "SDN.Audit", "SDN.Use", "Sys.AccessNetwork", "Sys.Audit", "Sys.Console", "Sys.Incoming",
        "Sys.Modify", "Sys.PowerMgmt", "Sys.Syslog", "User.Modify", "VM.Allocate", "VM.Audit",
        "VM.Backup", "VM.Clone", "VM.Config.CDROM", "VM.Config.CPU", "VM.Config.Cloudinit",
        "VM.Config.Disk", "VM.Config.HWType", "VM.Config.Memory", "VM.Config.Network",
        "VM.Config.Options", "VM.Console", "VM.Migrate", "VM.Monitor", "VM.PowerMgmt", "VM.Snapshot",
        "VM.Snapshot.Rollback",
    }
)  # fmt: skip


def _full(pattern: str, flags: int = 0) -> Callable[[str], bool]:
    """A predicate that is true when ``pattern`` matches the whole value (Perl ``m/^...$/``)."""
    compiled = re.compile(rf"^(?:{pattern})$", flags | re.ASCII)
    return lambda value: compiled.search(value) is not None


def _regex_check(pattern: str, message: str, flags: int = 0) -> Checker:
    """A checker failing with ``message`` (``{v}`` is replaced by the value) unless the value matches."""
    matches = _full(pattern, flags)
    return lambda value: None if matches(value) else message.format(v=value) + "\n"


_is_ipv4 = _full(_IPV4)
_is_dns_name = _full(rf"(?:{_DNS_LABEL}\.)*{_DNS_LABEL}")
_is_email = _full(_EMAIL)
_is_email_user = _full(_EMAIL_USER)
_is_volume_id = _full(r"[a-z][a-z0-9\-_.]*[a-z0-9]:.+", re.IGNORECASE | re.DOTALL)


def _is_ipv6(value: str) -> bool:
    # ipaddress accepts "%zone" suffixes; PVE's IPV6RE does not.
    if "%" in value:
        return False
    try:
        ipaddress.IPv6Address(value)
    except ValueError:
        return False
    return True


def _is_ip(value: str) -> bool:
    return _is_ipv4(value) or _is_ipv6(value)


def _cidr(value: str, is_address: Callable[[str], bool], max_prefix: int) -> bool:
    address, slash, prefix = value.partition("/")
    # PVE requires a prefix and refuses anything shorter than /8 (JSONSchema.pm pve_verify_cidrv4/6).
    return bool(slash) and prefix.isdigit() and is_address(address) and 7 < int(prefix) <= max_prefix


def _is_cidrv4(value: str) -> bool:
    return _cidr(value, _is_ipv4, 32)


def _is_cidrv6(value: str) -> bool:
    return _cidr(value, _is_ipv6, 128)


def _predicate_check(predicate: Callable[[str], bool], message: str) -> Checker:
    return lambda value: None if predicate(value) else message.format(v=value) + "\n"


def _spec_check(check: Callable[[str], object]) -> Checker:
    """A checker from a ``fwspec`` function that raises ``SpecError`` with PVE's text."""

    def run(value: str) -> str | None:
        try:
            check(value)
        except fwspec.SpecError as error:
            return f"{error}\n"
        return None

    return run


def _check_userid(value: str) -> str | None:
    if len(value) < 3:
        return f"user name '{value}' is too short\n"
    if len(value) > 64:
        return f"user name '{value}' is too long ({len(value)} > 64)\n"
    if re.search(rf"^{_USER}@{_REALM}$", value, re.ASCII) is None:
        return f"value '{value}' does not look like a valid user name\n"
    return None


def _check_poolid(value: str) -> str | None:
    if len(value.split("/")) > 3:
        return f"pool name '{value}' nested too deeply (max levels = 3)\n"
    if re.search(r"^[A-Za-z0-9_\-]+(?:/[A-Za-z0-9_\-]+){0,2}$", value, re.ASCII) is None:
        return f"pool name '{value}' contains invalid characters\n"
    return None


def _check_disk_size(value: str) -> str | None:
    # PVE parse_size: a plain number of bytes or with a K/M/G/T suffix; no sign ("+10G" is only valid
    # where an endpoint declares its own pattern, like the resize call's ``size``).
    if re.search(r"^\d+(?:\.\d+)?[KMGT]?$", value, re.ASCII) is None:
        return f"value does not look like a valid disk size: {value}\n"
    return None


def _check_volume_id(value: str) -> str | None:
    return None if _is_volume_id(value) else f"unable to parse volume ID '{value}'\n"


def _check_volume_or_path(value: str) -> str | None:
    return None if value.startswith("/") else _check_volume_id(value)


def _check_volume_or_qm_path(value: str) -> str | None:
    return None if value in ("none", "cdrom") else _check_volume_or_path(value)


def _check_startup_order(value: str) -> str | None:
    parts = [part for part in value.split(",") if part.strip()]
    grammar = re.compile(r"^(?:(?:order=)?\d+|up=\d+|down=\d+)$", re.ASCII)
    if not parts or not all(grammar.search(part) for part in parts):
        return "unable to parse startup options\n"
    return None


_CHECKERS: dict[str, Checker] = {
    "string": lambda value: None,  # registered by PVE so that "string-list" exists
    "pve-vmid": _regex_check(r"[1-9][0-9]{2,8}", "value does not look like a valid VM ID"),
    "pve-node": _regex_check(_DNS_LABEL, "value does not look like a valid node name"),
    "pve-configid": _regex_check(r"[a-z][a-z0-9_-]+", "invalid configuration ID '{v}'", re.IGNORECASE),
    "pve-storage-id": _regex_check(
        r"[a-z][a-z0-9\-_.]*[a-z0-9]", "storage ID '{v}' contains illegal characters", re.IGNORECASE
    ),
    "pve-iface": _regex_check(
        r"[a-z][a-z0-9_]{1,20}(?:[:.]\d+)?", "invalid network interface name '{v}'", re.IGNORECASE
    ),
    "pve-bridge-id": _regex_check(r"[-_.\w\d]+", "invalid bridge ID '{v}'"),
    "pve-poolid": _check_poolid,
    "pve-userid": _check_userid,
    "pve-tokenid": _regex_check(
        rf"{_USER}@{_REALM}!{_REALM}", "value '{v}' does not look like a valid token ID"
    ),
    "pve-realm": _regex_check(_REALM, "value does not look like a valid realm"),
    "pve-groupid": _regex_check(r"[A-Za-z0-9.\-_]+", "group name '{v}' contains invalid characters"),
    "pve-roleid": _regex_check(r"[A-Za-z0-9.\-_]+", "role name '{v}' contains invalid characters"),
    "pve-priv": _predicate_check(PRIVILEGES.__contains__, "invalid privilege '{v}'"),
    "pve-tag": _regex_check(r"[a-z0-9_][a-z0-9_\-+.]*", "invalid characters in tag", re.IGNORECASE),
    "mac-addr": _regex_check(
        r"[a-f0-9][02468ace](?::[a-f0-9]{2}){5}",
        "value does not look like a valid unicast MAC address",
        re.IGNORECASE,
    ),
    "dns-name": _predicate_check(_is_dns_name, "value does not look like a valid DNS name"),
    "email": _predicate_check(_is_email, "value does not look like a valid email address"),
    "email-or-username": _predicate_check(
        lambda v: _is_email(v) or _is_email_user(v),
        "value does not look like a valid email address or user name",
    ),
    "ipv4": _predicate_check(_is_ipv4, "value does not look like a valid IPv4 address"),
    "ipv6": _predicate_check(_is_ipv6, "value does not look like a valid IPv6 address"),
    "ip": _predicate_check(_is_ip, "value does not look like a valid IP address"),
    "CIDRv4": _predicate_check(_is_cidrv4, "value does not look like a valid IPv4 CIDR network"),
    "CIDRv6": _predicate_check(_is_cidrv6, "value does not look like a valid IPv6 CIDR network"),
    "CIDR": _predicate_check(
        lambda v: _is_cidrv4(v) or _is_cidrv6(v), "value does not look like a valid CIDR network"
    ),
    # pve-firewall's formats (Firewall.pm); their texts come from fwspec.
    "IPorCIDR": _spec_check(fwspec.check_ip_or_cidr),
    "IPorCIDRorAlias": _spec_check(fwspec.check_ip_or_cidr_or_alias),
    "pve-fw-addr-spec": _spec_check(fwspec.address_list),
    "pve-fw-dport-spec": _spec_check(lambda v: fwspec.port_list(v, icmp=True)),
    "pve-fw-sport-spec": _spec_check(lambda v: fwspec.port_list(v, icmp=False)),
    "pve-fw-protocol-spec": _spec_check(fwspec.check_protocol),
    "pve-fw-icmp-type-spec": _spec_check(fwspec.check_icmp_type),
    "pve-fw-conntrack-helper": _spec_check(fwspec.check_conntrack_helpers),
    "address": _predicate_check(
        lambda v: _is_ip(v) or _is_dns_name(v), "value does not look like a valid address: {v}"
    ),
    "pve-ipv4-config": _predicate_check(
        lambda v: v in ("dhcp", "manual") or _is_cidrv4(v),
        "value does not look like a valid ipv4 network configuration",
    ),
    "pve-ipv6-config": _predicate_check(
        lambda v: v in ("auto", "dhcp", "manual") or _is_cidrv6(v),
        "value does not look like a valid ipv6 network configuration",
    ),
    "urlencoded": _regex_check(r"[-%a-zA-Z0-9_.!~*'()]*", "invalid urlencoded string: {v}"),
    "disk-size": _check_disk_size,
    "pve-volume-id": _check_volume_id,
    "pve-volume-id-or-absolute-path": _check_volume_or_path,
    "pve-volume-id-or-qm-path": _check_volume_or_qm_path,
    "pve-startup-order": _check_startup_order,
}

CHECKED_FORMATS: frozenset[str] = frozenset(_CHECKERS)
"""Base format names checked; ``<name>-list`` and ``<name>-opt`` variants are checked too."""

_VARIANT = re.compile(r"^(?P<base>.*?)(?:-(?P<kind>a?list|opt))?$", re.DOTALL)


def split_list(text: str) -> list[str]:
    """PVE's ``split_list``: NUL-separated if a NUL is present, else split on commas, semicolons, spaces."""
    if "\0" in text:
        return text.split("\0")
    return re.sub(r"[,;]", " ", text).split()


def check_format(name: str, value: str) -> str | None:
    """PVE's error text for ``value`` under the named format ``name``, or None when it is acceptable.

    >>> check_format("pve-configid", "bad name!")
    "invalid configuration ID 'bad name!'\\n"
    >>> check_format("pve-vmid-list", "100,101 102") is None
    True
    """
    match = _VARIANT.match(name)
    base, kind = (match.group("base"), match.group("kind")) if match else (name, None)
    checker = _CHECKERS.get(base)
    if checker is None:
        checker = _CHECKERS.get(name)
        if checker is None:
            return None
        kind = None
    if kind in ("list", "alist"):
        for element in split_list(value):
            failure = checker(element)
            if failure is not None:
                return failure
        return None
    if kind == "opt" and not value:
        return None
    return checker(value)
