"""What a profile means in PVE firewall terms, and how a live firewall differs from it (pure).

:func:`desired` turns a profile plus resolved addresses into the VM's firewall options, the cluster IP
sets it needs and its rules, in a fixed order: the host guard first (isolating profiles), then DNS to
the profile's resolvers, DHCP, and the allowlist in the profile's order. Every rule autovibe writes
carries a comment starting with ``autovibe:``; rules without it are the user's and are never touched.
:func:`drift` compares a live state read from PVE with the desired one.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from autovibe.network.profiles import PVE_HOSTS, AllowEntry, NetworkProfile

OWNED: Final = "autovibe:"
SET_PREFIX: Final = "autovibe-"
PVE_SET: Final = "autovibe-pve-nodes"
LINK_LOCAL: Final = "169.254.0.0/16"
_SET_MAX: Final = 64  # PVE's ipset name maxLength


def set_name(target: str) -> str:
    """The cluster IP set for a host name or symbol: ``autovibe-api-anthropic-com``, ``autovibe-hub``."""
    if target == PVE_HOSTS:
        return PVE_SET
    slug = re.sub(r"[^a-z0-9]+", "-", target.lower().lstrip("@")).strip("-")
    name = f"{SET_PREFIX}{slug}"
    if len(name) > _SET_MAX:  # keep it unique when cut: a short hash of the whole name
        digest = hashlib.sha256(target.encode()).hexdigest()[:8]
        name = f"{name[: _SET_MAX - 9]}-{digest}"
    return name


@dataclass(frozen=True)
class Rule:
    """One VM firewall rule as autovibe writes it (``type`` in/out, PVE's field names)."""

    type: str
    action: str
    comment: str
    proto: str | None = None
    dest: str | None = None
    dport: str | None = None
    sport: str | None = None

    def params(self) -> dict[str, Any]:
        """The fields for ``POST .../firewall/rules``."""
        fields = {"type": self.type, "action": self.action, "enable": 1, "comment": self.comment}
        for key in ("proto", "dest", "dport", "sport"):
            value = getattr(self, key)
            if value is not None:
                fields[key] = value
        return fields

    @classmethod
    def from_live(cls, live: Mapping[str, Any]) -> Rule:
        def text(key: str) -> str | None:
            value = live.get(key)
            return None if value in (None, "") else str(value)

        return cls(
            type=str(live.get("type", "")),
            action=str(live.get("action", "")),
            comment=str(live.get("comment", "") or ""),
            proto=text("proto"),
            dest=text("dest"),
            dport=text("dport"),
            sport=text("sport"),
        )

    def describe(self) -> str:
        parts = [self.type.upper(), self.action]
        if self.proto:
            parts.append(self.proto)
        if self.dest:
            parts.append(f"to {self.dest}")
        if self.dport:
            parts.append(f"port {self.dport}")
        return " ".join(parts) + f"  ({self.comment})"


def is_owned(live: Mapping[str, Any]) -> bool:
    return str(live.get("comment", "") or "").startswith(OWNED)


@dataclass(frozen=True)
class Desired:
    profile: str
    bridge: str
    vlan: int | None
    options: dict[str, Any]
    ipsets: dict[str, frozenset[str]]
    rules: tuple[Rule, ...]
    notes: tuple[str, ...] = ()  # e.g. a host name that resolved to nothing


def _cidr(address: str) -> str:
    """PVE's ipset entries: plain addresses for hosts (``1.2.3.4``), CIDRs otherwise."""
    return address.split("/")[0] if address.endswith(("/32", "/128")) else address


def desired(
    profile: NetworkProfile,
    *,
    resolved: Mapping[str, Sequence[str]],
    symbols: Mapping[str, Sequence[str]],
) -> Desired:
    """The firewall state ``profile`` asks for, given each host name's addresses (``resolved``) and each
    symbolic host's (``symbols``: ``@pve`` the nodes' management IPs, others from settings)."""
    tag = f"{OWNED}{profile.name}:"
    rules: list[Rule] = []
    ipsets: dict[str, frozenset[str]] = {}
    notes: list[str] = []
    if profile.isolating:
        ipsets[PVE_SET] = frozenset(_cidr(a) for a in symbols.get(PVE_HOSTS, ()))
        rules += [
            Rule("out", "DROP", f"{tag}guard pve-api", "tcp", f"+{PVE_SET}", "8006"),
            Rule("out", "DROP", f"{tag}guard pve-ssh", "tcp", f"+{PVE_SET}", "22"),
            Rule("out", "DROP", f"{tag}guard link-local", dest=LINK_LOCAL),
        ]
    for resolver in profile.dns:
        rules += [
            Rule("out", "ACCEPT", f"{tag}dns {resolver}", "udp", resolver, "53"),
            Rule("out", "ACCEPT", f"{tag}dns {resolver}", "tcp", resolver, "53"),
        ]
    if profile.isolating:
        rules += [
            Rule("out", "DROP", f"{tag}guard other-dns", "udp", dport="53"),
            Rule("out", "DROP", f"{tag}guard other-dns", "tcp", dport="53"),
        ]
    if profile.dhcp:
        rules.append(Rule("out", "ACCEPT", f"{tag}dhcp", "udp", dport="67", sport="68"))
    for entry in profile.entries:
        rules.append(_allow_rule(entry, tag, resolved, symbols, ipsets, notes))
    options = {
        "enable": 1,
        "policy_in": profile.policy_in,
        "policy_out": profile.policy_out,
        "dhcp": 1 if profile.dhcp else 0,
    }
    return Desired(profile.name, profile.bridge, profile.vlan, options, ipsets, tuple(rules), tuple(notes))


def _allow_rule(
    entry: AllowEntry,
    tag: str,
    resolved: Mapping[str, Sequence[str]],
    symbols: Mapping[str, Sequence[str]],
    ipsets: dict[str, frozenset[str]],
    notes: list[str],
) -> Rule:
    port = str(entry.port) if entry.port is not None else None
    if entry.network is not None:
        return Rule("out", "ACCEPT", f"{tag}allow {entry.text}", entry.proto, entry.network, port)
    target = entry.target
    name = set_name(target)
    addresses = (resolved if entry.host else symbols).get(target, ())
    if not addresses:
        notes.append(f"{target} has no addresses: the rule for {entry.text} matches nothing until it does")
    ipsets[name] = ipsets.get(name, frozenset()) | frozenset(_cidr(a) for a in addresses)
    return Rule("out", "ACCEPT", f"{tag}allow {entry.text}", entry.proto, f"+{name}", port)


# ---- drift ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Live:
    """What PVE says now about one VM's network and firewall."""

    net0: str
    options: Mapping[str, Any]
    rules: Sequence[Mapping[str, Any]]  # in position order
    ipsets: Mapping[str, frozenset[str]]  # only the sets the desired state names; absent = missing


@dataclass(frozen=True)
class Difference:
    kind: str  # wrong-bridge, firewall-off, vlan, option, missing-rule, extra-rule, rule-order,
    #            missing-ipset, ipset-members
    detail: str


def net_fields(net0: str) -> dict[str, str]:
    """``virtio=AA:..,bridge=vmbr1,firewall=1,tag=5`` as a dict (the model key maps to its MAC)."""
    fields: dict[str, str] = {}
    for part in net0.split(","):
        key, _, value = part.partition("=")
        fields[key] = value
    return fields


def drift(want: Desired, live: Live) -> list[Difference]:
    found: list[Difference] = []
    net = net_fields(live.net0)
    if net.get("bridge") != want.bridge:
        found.append(
            Difference("wrong-bridge", f"net0 is on {net.get('bridge')!r}, the profile wants {want.bridge!r}")
        )
    if net.get("firewall") != "1":
        found.append(Difference("firewall-off", "net0 has firewall=0: no rule applies to this interface"))
    if (net.get("tag") or None) != (str(want.vlan) if want.vlan else None):
        found.append(
            Difference(
                "vlan",
                f"net0 VLAN tag is {net.get('tag') or 'none'}, the profile wants {want.vlan or 'none'}",
            )
        )
    for key, value in want.options.items():
        now = live.options.get(key)
        if str(now) != str(value):
            kind = "firewall-off" if key == "enable" else "option"
            found.append(
                Difference(kind, f"VM firewall option {key} is {now!r}, the profile wants {value!r}")
            )
    owned = [Rule.from_live(r) for r in live.rules if is_owned(r)]
    wanted = list(want.rules)
    for rule in wanted:
        if rule not in owned:
            found.append(Difference("missing-rule", rule.describe()))
    for rule in owned:
        if rule not in wanted:
            found.append(Difference("extra-rule", rule.describe()))
    if not [d for d in found if d.kind in ("missing-rule", "extra-rule")]:
        first_user = next((i for i, r in enumerate(live.rules) if not is_owned(r)), len(live.rules))
        on_top = all(is_owned(r) for r in live.rules[: len(wanted)]) and first_user >= len(wanted)
        if owned != wanted or not on_top:
            found.append(
                Difference("rule-order", "autovibe's rules are not first and in the profile's order")
            )
    for name, members in want.ipsets.items():
        if name not in live.ipsets:
            found.append(Difference("missing-ipset", f"IP set {name} does not exist"))
            continue
        now = live.ipsets[name]
        if now != members:
            missing, extra = sorted(members - now), sorted(now - members)
            found.append(
                Difference(
                    "ipset-members",
                    f"IP set {name}: missing {missing or 'none'}, unexpected {extra or 'none'}",
                )
            )
    return found


@dataclass
class RulePlan:
    """How to bring the VM's rules to ``want`` without a moment where a guard is missing: insert the
    wanted rules at the top first, then delete autovibe's old ones (never the user's)."""

    insert: list[Rule] = field(default_factory=list)
    delete_positions: list[int] = field(default_factory=list)  # after the inserts, highest first


def plan_rules(want: Sequence[Rule], live: Sequence[Mapping[str, Any]]) -> RulePlan:
    owned = [Rule.from_live(r) for r in live if is_owned(r)]
    top = [Rule.from_live(r) for r in live[: len(want)]]
    if top == list(want) and len(owned) == len(want):
        return RulePlan()  # already right
    shift = len(want)
    old = [int(r.get("pos", i)) for i, r in enumerate(live) if is_owned(r)]
    return RulePlan(list(want), sorted((p + shift for p in old), reverse=True))
