"""The firewall configuration of the simulated cluster, kept the way pve-firewall keeps it.

PVE stores one file per scope: ``cluster.fw`` (options, rules, IP sets, aliases, security groups),
``host.fw`` per node (options, rules) and ``<vmid>.fw`` per guest (options, rules, IP sets, aliases).
Every API call loads the file, changes it and writes it back, so what a client reads is always the
*re-parsed* file: ``FwConf`` holds what the file would hold, and ``loaded_rules`` adds what parsing
adds (``enable`` as 0/1, the derived ``ipversion``, ``errors`` of rules whose references vanished).

Texts, digests and orders follow pve-firewall ``PVE/Firewall.pm`` and ``PVE/API2/Firewall/*.pm``:
``digest`` is SHA1 over ``key:value\\n`` of the sorted keys of each entry; a new rule goes to the top
(``pos`` is ignored on create) and is disabled unless ``enable`` is given; IP set and security group
names are lower-cased when the file is written.
"""

from __future__ import annotations

import copy
import hashlib
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from autovibe.sim.errors import SimApiError, param_error, runtime_error
from autovibe.sim.fwspec import (
    ALIAS_RE,
    ICMP_PROTOCOLS,
    ICMP_TYPES,
    ICMPV6_TYPES,
    IPSET_REF_RE,
    MACRO_IPVERSION,
    MACROS,
    MACROS_V6,
    NAME_PATTERN,
    PREFERRED_MACRO_NAMES,
    PROTOCOLS_WITH_PORTS,
    SpecError,
    address_list,
    check_iface,
    check_protocol,
    ip_or_cidr,
    perl_true,
    port_list,
)

# $rule_properties of Firewall.pm: what copy_rule_data copies and "delete" may name.
RULE_PROPERTIES: Final = (
    "pos", "digest", "type", "action", "macro", "iface", "source", "dest", "proto", "enable", "log",
    "sport", "dport", "comment", "icmp-type",
)  # fmt: skip
# Rule types each scope accepts ($rule_env_direction_lookup) and whether it may name an interface.
RULE_TYPES: Final = {
    "vm": ("in", "out", "group"),
    "group": ("in", "out", "forward"),
    "cluster": ("in", "out", "forward", "group"),
    "host": ("in", "out", "forward", "group"),
}
ALLOW_IFACE: Final = {"vm": True, "group": False, "cluster": True, "host": True}

# Option names per scope, and which are stored (and read back) as integers.
CLUSTER_OPTIONS: Final = ("enable", "ebtables", "policy_in", "policy_out", "policy_forward", "log_ratelimit")
HOST_OPTIONS: Final = (
    "enable", "log_level_in", "log_level_out", "log_level_forward", "tcp_flags_log_level",
    "smurf_log_level", "nosmurfs", "tcpflags", "nf_conntrack_max", "nf_conntrack_tcp_timeout_established",
    "nf_conntrack_tcp_timeout_syn_recv", "ndp", "nf_conntrack_allow_invalid", "nf_conntrack_helpers",
    "protection_synflood", "protection_synflood_rate", "protection_synflood_burst", "log_nf_conntrack",
    "nftables",
)  # fmt: skip
VM_OPTIONS: Final = (
    "enable", "macfilter", "dhcp", "ndp", "radv", "ipfilter", "policy_in", "policy_out", "log_level_in",
    "log_level_out",
)  # fmt: skip
_TEXT_OPTIONS: Final = frozenset(
    {
        "policy_in", "policy_out", "policy_forward", "log_ratelimit", "log_level_in", "log_level_out",
        "log_level_forward", "tcp_flags_log_level", "smurf_log_level", "nf_conntrack_helpers",
    }
)  # fmt: skip


def _digest_text(value: Any) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    return str(value)


def object_digest(obj: Mapping[str, Any]) -> str:
    """``copy_opject_with_digest``: SHA1 over ``key:value\\n`` of the defined keys, sorted."""
    sha = hashlib.sha1(usedforsecurity=False)
    for key in sorted(obj):
        if obj[key] is not None:
            sha.update(f"{key}:{_digest_text(obj[key])}\n".encode())
    return sha.hexdigest()


def list_digest(entries: Iterable[Mapping[str, Any]]) -> str:
    """``copy_list_with_digest``: one SHA1 over every entry's scalar ``key:value\\n``, keys sorted."""
    sha = hashlib.sha1(usedforsecurity=False)
    for entry in entries:
        for key in sorted(entry):
            value = entry[key]
            if value is not None and not isinstance(value, dict | list):
                sha.update(f"{key}:{_digest_text(value)}\n".encode())
    return sha.hexdigest()


def with_digest(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    digest = list_digest(entries)
    return [{**entry, "digest": digest} for entry in entries]


def assert_unmodified(current: str, given: Any) -> None:
    """``PVE::Tools::assert_if_modified``."""
    if given and current != given:
        raise runtime_error("detected modified configuration - file changed by other user? Try again.")


@dataclass
class FwConf:
    """One ``.fw`` file. ``aliases`` is keyed by the lower-cased name (entries keep the given one)."""

    options: dict[str, Any] = field(default_factory=dict)
    rules: list[dict[str, Any]] = field(default_factory=list)
    ipsets: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    ipset_comments: dict[str, str] = field(default_factory=dict)
    aliases: dict[str, dict[str, Any]] = field(default_factory=dict)
    groups: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    group_comments: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "options": self.options,
            "rules": self.rules,
            "ipsets": self.ipsets,
            "ipset_comments": self.ipset_comments,
            "aliases": self.aliases,
            "groups": self.groups,
            "group_comments": self.group_comments,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FwConf:
        return cls(**{key: data[key] for key in cls().to_dict() if key in data})

    def copy(self) -> FwConf:
        return copy.deepcopy(self)


@dataclass
class FirewallState:
    """``cluster.fw``, ``host.fw`` per node, ``<vmid>.fw`` per guest (created on first write)."""

    cluster: FwConf = field(default_factory=FwConf)
    hosts: dict[str, FwConf] = field(default_factory=dict)
    guests: dict[int, FwConf] = field(default_factory=dict)

    def host(self, node: str) -> FwConf:
        return self.hosts.setdefault(node, FwConf())

    def guest(self, vmid: int) -> FwConf:
        return self.guests.setdefault(int(vmid), FwConf())

    def drop_guest(self, vmid: int) -> None:
        """``PVE::Firewall::remove_vmfw_conf``: destroying a guest removes its ``.fw``."""
        self.guests.pop(int(vmid), None)

    def clone_guest(self, source: int, target: int) -> None:
        """``clone_vmfw_conf``: a clone starts with a copy of its source's firewall file."""
        if source in self.guests:
            self.guests[int(target)] = self.guests[source].copy()

    def tidy(self) -> None:
        """Forget files that hold nothing (so state stays small)."""
        empty = FwConf()
        self.hosts = {k: v for k, v in self.hosts.items() if v != empty}
        self.guests = {k: v for k, v in self.guests.items() if v != empty}

    def to_dict(self) -> dict[str, Any]:
        self.tidy()
        return {
            "cluster": self.cluster.to_dict(),
            "hosts": {node: conf.to_dict() for node, conf in self.hosts.items()},
            "guests": {str(vmid): conf.to_dict() for vmid, conf in self.guests.items()},
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> FirewallState:
        if not data:
            return cls()
        return cls(
            FwConf.from_dict(data.get("cluster", {})),
            {node: FwConf.from_dict(conf) for node, conf in data.get("hosts", {}).items()},
            {int(vmid): FwConf.from_dict(conf) for vmid, conf in data.get("guests", {}).items()},
        )


@dataclass(frozen=True)
class Scope:
    """What a rule is verified against, as ``verify_rule($rule, $cluster_conf, $fw_conf, $env)``."""

    env: str  # vm | host | cluster | group
    cluster: FwConf | None  # cluster.fw when the rule lives elsewhere
    local: FwConf  # the file the rule lives in

    def has_ipset(self, name: str) -> bool:
        return any(conf is not None and name in conf.ipsets for conf in (self.cluster, self.local))

    def alias(self, name: str, prefix: str = "") -> dict[str, Any] | None:
        """``resolve_alias``: the guest's own alias first (not for ``dc/``), then the cluster's (not
        for ``guest/``). In cluster scope the file itself is the cluster's."""
        key = name.lower()
        found = None
        if prefix != "dc/" and self.cluster is not None:
            found = self.local.aliases.get(key)
        if found is None and prefix != "guest/":
            found = (self.cluster if self.cluster is not None else self.local).aliases.get(key)
        return found

    def alias_exists(self, name: str) -> bool:
        return any(conf is not None and name.lower() in conf.aliases for conf in (self.cluster, self.local))


# ---- options -------------------------------------------------------------------------------------------
def get_options(conf: FwConf) -> dict[str, Any]:
    return {**conf.options, "digest": object_digest(conf.options)}


def set_options(conf: FwConf, names: Iterable[str], params: Mapping[str, Any], *, now: float) -> None:
    """``set_options`` of Cluster.pm/Host.pm/VM.pm: digest, ``delete``, then the given options."""
    allowed = tuple(names)
    assert_unmodified(object_digest(conf.options), params.get("digest"))
    for name in _split_list(params.get("delete")):
        if name not in allowed:
            raise param_error({"delete": f"no such option '{name}'"})
        conf.options.pop(name, None)
    for name in allowed:
        value = params.get(name)
        if value is None:
            continue
        if name in _TEXT_OPTIONS:
            conf.options[name] = str(value)
        elif name == "enable" and "ebtables" in allowed and int(value) > 1:
            conf.options[name] = int(now)  # Cluster.pm: enable > 1 stores the current time
        else:
            conf.options[name] = int(value)


def _split_list(text: Any) -> list[str]:
    if not text:
        return []
    return [item for item in str(text).replace(";", ",").replace(" ", ",").split(",") if item]


# ---- rules ---------------------------------------------------------------------------------------------
def copy_rule_data(rule: dict[str, Any], params: Mapping[str, Any]) -> None:
    """Copy the given rule properties; ``""`` or ``"-"`` removes one."""
    for key in RULE_PROPERTIES:
        value = params.get(key)
        if value is None:
            continue
        text = _digest_text(value) if not isinstance(value, str) else value
        if text in ("", "-"):
            rule.pop(key, None)
        else:
            rule[key] = value if isinstance(value, int) and not isinstance(value, bool) else text


def delete_rule_properties(rule: dict[str, Any], names: Any) -> None:
    for name in _split_list(names):
        if name not in RULE_PROPERTIES:
            raise param_error({"delete": f"no such property ('{name}')"})
        if name in ("type", "action"):
            raise param_error({"delete": f"unable to delete required property '{name}'"})
        rule.pop(name, None)


class _Collector:
    """``$add_error`` of verify_rule: raise the first error (API calls) or collect them (loading)."""

    def __init__(self, strict: bool) -> None:
        self.strict = strict
        self.errors: dict[str, str] = {}

    def add(self, param: str, message: str) -> None:
        message = message.rstrip("\n")
        if self.strict:
            raise param_error({param: message})
        self.errors.setdefault(param, message)


def verify_rule(rule: dict[str, Any], scope: Scope, *, strict: bool) -> dict[str, str]:
    """Firewall.pm ``verify_rule``: check ``rule`` in ``scope`` and set its ``ipversion``.

    ``strict`` (API calls): the first problem raises PVE's 400 with one ``errors`` entry. Otherwise
    (re-reading the file) the problems are returned, as PVE attaches them to the rule.
    """
    out = _Collector(strict)
    version: list[int] = []

    def set_version(new: int | None) -> None:
        if new:
            if version and version[0] != new:
                raise SpecError("detected mixed ipv4/ipv6 addresses in rule")
            version[:] = [new]

    kind, action = rule.get("type"), rule.get("action")
    if not kind:
        out.add("type", "missing property")
    if not action:
        out.add("action", "missing property")
    if kind:
        if kind not in RULE_TYPES[scope.env]:
            out.add("type", f"invalid rule type '{kind}' for rule_env '{scope.env}'")
        if kind in ("in", "out", "forward"):
            if kind == "forward" and action == "REJECT":
                out.add("action", "cannot define REJECT rules on forward chain")
            if action and action not in ("ACCEPT", "DROP", "REJECT"):
                out.add("action", f"unknown action '{action}'")
        elif kind == "group":
            if scope.env == "group":
                out.add("type", "security groups not allowed")
            if action and not _full_match(NAME_PATTERN, str(action)):
                out.add("action", "invalid characters in security group name")
        else:
            out.add("type", f"unknown rule type '{kind}'")
    if perl_true(rule.get("iface")):
        iface = str(rule["iface"])
        if not ALLOW_IFACE[scope.env]:
            out.add("type", "parameter -i not allowed for this rule type")
        try:
            check_iface(iface)
        except SpecError as error:
            out.add("iface", str(error))
        if scope.env == "vm" and not _full_match(r"net\d+", iface):
            out.add("iface", "value does not match the regex pattern 'net\\d+'")
    if perl_true(rule.get("macro")):
        preferred = PREFERRED_MACRO_NAMES.get(str(rule["macro"]).lower())
        if preferred is not None:
            rule["macro"] = preferred
        else:
            out.add("macro", f"unknown macro '{rule['macro']}'")
    proto = str(rule["proto"]) if perl_true(rule.get("proto")) else ""
    is_icmp = proto in ICMP_PROTOCOLS
    if proto:
        try:
            check_protocol(proto)
        except SpecError as error:
            out.add("proto", str(error))
        set_version({"icmp": 4, "icmpv6": 6, "ipv6-icmp": 6}.get(proto))
    if perl_true(rule.get("dport")):
        try:
            port_list(str(rule["dport"]), icmp=is_icmp)
        except SpecError as error:
            out.add("dport", str(error))
        if not proto:
            out.add("proto", "missing property - 'dport' requires this property")
        if proto not in PROTOCOLS_WITH_PORTS and not is_icmp:
            out.add("dport", f"protocol '{proto}' does not support ports")
    icmp_type = rule.get("icmp-type")
    if perl_true(icmp_type):
        if not is_icmp:
            out.add("proto", "missing property - 'icmp-type' requires this property")
        if perl_true(rule.get("dport")):
            out.add("icmp-type", "'icmp-type' cannot be specified together with 'dport'")
        if proto == "icmp" and icmp_type not in ICMP_TYPES:
            out.add("icmp-type", f"invalid icmp-type '{icmp_type}' for proto 'icmp'")
        elif proto in ("icmpv6", "ipv6-icmp") and icmp_type not in ICMPV6_TYPES:
            out.add("icmp-type", f"invalid icmp-type '{icmp_type}' for proto '{proto}'")
    if perl_true(rule.get("sport")):
        try:
            port_list(str(rule["sport"]), icmp=False)
        except SpecError as error:
            out.add("sport", str(error))
        if not proto:
            out.add("proto", "missing property - 'sport' requires this property")
        if proto not in PROTOCOLS_WITH_PORTS:
            out.add("sport", f"protocol '{proto}' does not support ports")
    for name in ("source", "dest"):
        if not perl_true(rule.get(name)):
            continue
        try:
            set_version(address_list(str(rule[name])))
        except SpecError as error:
            out.add(name, str(error))
        _check_reference(rule, name, scope, out, set_version)
    if version:
        rule["ipversion"] = version[0]
    else:
        rule.pop("ipversion", None)
    if perl_true(rule.get("macro")) and not out.errors and rule["macro"] in MACROS:
        _apply_macro(rule, version[0] if version else None, out)
    return out.errors


def _full_match(pattern: str, text: str) -> bool:
    return re.fullmatch(pattern, text) is not None


def _check_reference(
    rule: dict[str, Any], name: str, scope: Scope, out: _Collector, set_version: Callable[[int | None], None]
) -> None:
    """``$check_ipset_or_alias_property``: named IP sets and aliases must exist (in either file)."""
    value = str(rule[name])
    if value.startswith("+"):
        match = IPSET_REF_RE.match(value)
        if match is None:
            out.add(name, f"invalid ipset name '{value}'")
        elif not scope.has_ipset(match.group(2)):
            out.add(name, f"no such ipset '{match.group(2)}'")
        return
    match = ALIAS_RE.match(value)
    if match is None:
        return
    if not scope.alias_exists(match.group(2)):
        out.add(name, f"no such alias '{value}'")
    alias = scope.alias(match.group(2), match.group(1) or "")
    if alias is not None:
        try:
            set_version(alias.get("ipversion") or ip_or_cidr(str(alias["cidr"]))[1])
        except SpecError as error:
            raise runtime_error(str(error)) from error


def _apply_macro(rule: dict[str, Any], version: int | None, out: _Collector) -> None:
    """``$apply_macro`` with verify: a rule field may not contradict what the macro fixes."""
    macro = str(rule["macro"])
    required = MACRO_IPVERSION.get(macro)
    if version is not None and required is not None and version != required:
        return
    templates = MACROS_V6[macro] if version == 6 and macro in MACROS_V6 else MACROS[macro][1]
    for proto, dport, sport in templates:
        fixed = {"proto": proto, "dport": dport, "sport": sport}
        for key in sorted(rule):
            value = rule[key]
            if key in ("macro", "action") or value is None or fixed.get(key) is None:
                continue
            if _digest_text(value) != fixed[key]:
                out.add(key, f"parameter '{key}' already define in macro (value = '{fixed[key]}')")


def stored_rule(rule: Mapping[str, Any], env: str) -> dict[str, Any]:
    """What ``format_rules`` writes of a rule, as the parser reads it back."""
    kind = str(rule["type"])
    out: dict[str, Any] = {"type": kind, "action": rule["action"]}
    out["enable"] = 0 if rule.get("enable") is not None and not perl_true(rule["enable"]) else 1
    if perl_true(rule.get("macro")) and kind != "group":
        out["macro"] = rule["macro"]
    if ALLOW_IFACE[env] and perl_true(rule.get("iface")):
        out["iface"] = rule["iface"]
    if kind != "group":
        for key in ("source", "dest", "proto", "dport", "sport", "log"):
            if perl_true(rule.get(key)):
                out[key] = str(rule[key])
        if rule.get("icmp-type") not in (None, ""):
            out["icmp-type"] = str(rule["icmp-type"])
    comment = rule.get("comment")
    if perl_true(comment) and str(comment).strip():
        out["comment"] = str(comment).strip()
    return out


def loaded_rules(rules: list[dict[str, Any]], scope: Scope) -> list[dict[str, Any]]:
    """The rules as a fresh parse presents them: ``ipversion`` derived, ``errors`` attached."""
    loaded = []
    for rule in rules:
        entry = dict(rule)
        try:
            errors = verify_rule(entry, scope, strict=False)
        except SimApiError as error:
            errors = {"source": error.message}
        if errors:
            entry["errors"] = errors
        loaded.append(entry)
    return loaded


def rules_with_positions(rules: list[dict[str, Any]], scope: Scope) -> list[dict[str, Any]]:
    listed = with_digest(loaded_rules(rules, scope))
    return [{**rule, "pos": index} for index, rule in enumerate(listed)]


def rules_digest(rules: list[dict[str, Any]], scope: Scope) -> str:
    return list_digest(loaded_rules(rules, scope))


def create_rule(rules: list[dict[str, Any]], scope: Scope, params: Mapping[str, Any]) -> None:
    """``create_rule``: verified, disabled unless ``enable`` is given, inserted at the top."""
    rule: dict[str, Any] = {}
    copy_rule_data(rule, params)
    verify_rule(rule, scope, strict=True)
    if params.get("enable") is None:
        rule["enable"] = 0
    rules.insert(0, stored_rule(rule, scope.env))


def rule_at(rules: list[dict[str, Any]], pos: int) -> dict[str, Any]:
    if pos >= len(rules):
        raise runtime_error(f"no rule at position {pos}")
    return rules[pos]


def update_rule(rules: list[dict[str, Any]], scope: Scope, params: Mapping[str, Any]) -> None:
    """``update_rule``: ``moveto`` moves (other fields ignored), else edit, ``delete``, verify."""
    assert_unmodified(rules_digest(rules, scope), params.get("digest"))
    pos = int(params["pos"])
    rule = rule_at(rules, pos)
    moveto = params.get("moveto")
    if moveto is not None and int(moveto) != pos:
        # PVE walks the old list and puts the rule before the old index ``moveto`` (so moving it down
        # lands one place above ``moveto``); a ``moveto`` past the end appends it.
        moved: list[dict[str, Any]] = []
        for index, other in enumerate(rules):
            if index == pos:
                continue
            if index == int(moveto):
                moved.append(rule)
            moved.append(other)
        if int(moveto) >= len(rules):
            moved.append(rule)
        rules[:] = moved
        return
    edited = dict(rule)
    copy_rule_data(edited, params)
    if params.get("delete"):
        delete_rule_properties(edited, params["delete"])
    verify_rule(edited, scope, strict=True)
    rules[pos] = stored_rule(edited, scope.env)


def delete_rule(rules: list[dict[str, Any]], scope: Scope, params: Mapping[str, Any]) -> None:
    assert_unmodified(rules_digest(rules, scope), params.get("digest"))
    rule_at(rules, int(params["pos"]))
    del rules[int(params["pos"])]


# ---- IP sets -------------------------------------------------------------------------------------------
def ipset_list(conf: FwConf) -> list[dict[str, Any]]:
    rows = []
    for name in sorted(conf.ipsets):
        row: dict[str, Any] = {"name": name}
        if conf.ipset_comments.get(name):
            row["comment"] = conf.ipset_comments[name]
        rows.append(row)
    return rows


def create_ipset(conf: FwConf, params: Mapping[str, Any]) -> None:
    """``create_ipset``: a new empty set, or with ``rename`` a renamed one (and its comment)."""
    name, rename, comment = str(params["name"]), params.get("rename"), params.get("comment")
    if rename:
        assert_unmodified(list_digest(ipset_list(conf)), params.get("digest"))
        if rename not in conf.ipsets:
            raise param_error({"name": f"IPSet '{rename}' does not exists"})
        if name in conf.ipsets and name != rename:
            raise param_error({"name": f"IPSet '{name}' does already exist"})
        entries = conf.ipsets.pop(rename)
        old_comment = conf.ipset_comments.pop(rename, None)
        _store_ipset(conf, name, entries, comment if comment is not None else old_comment)
        return
    if name in conf.ipsets:
        raise param_error({"name": f"IPSet '{name}' already exists"})
    if name.lower() in conf.ipsets:
        # PVE compares with the stored (lower-case) names, writes a second section and reads the two
        # back as one: the existing set with its entries survives.
        return
    _store_ipset(conf, name, [], comment)


def _store_ipset(conf: FwConf, name: str, entries: list[dict[str, Any]], comment: Any) -> None:
    """Written as ``[IPSET name] # comment`` and read back lower-cased."""
    key = name.lower()
    conf.ipsets[key] = entries
    conf.ipset_comments.pop(key, None)
    if perl_true(comment) and str(comment).strip():
        conf.ipset_comments[key] = str(comment).strip()


def ipset_entries(conf: FwConf, name: str) -> list[dict[str, Any]]:
    if name not in conf.ipsets:
        raise runtime_error(f"no such IPSet '{name}'")
    return conf.ipsets[name]


def delete_ipset(conf: FwConf, name: str, *, force: bool) -> None:
    entries = ipset_entries(conf, name)
    if entries and not force:
        raise runtime_error(f"IPSet '{name}' is not empty")
    del conf.ipsets[name]
    conf.ipset_comments.pop(name, None)


def add_ipset_entry(conf: FwConf, scope: Scope, name: str, params: Mapping[str, Any]) -> None:
    """``create_ip``: aliases must exist; addresses in PVE's normal form, no duplicates, no ``/0``."""
    entries = ipset_entries(conf, name)
    cidr = str(params["cidr"])
    alias = ALIAS_RE.match(cidr)
    if alias is not None:
        if scope.alias(alias.group(2), alias.group(1) or "") is None:
            raise runtime_error(f"no such alias '{alias.group(2)}'")
    else:
        try:
            cidr = ip_or_cidr(cidr)[0]
        except SpecError as error:
            raise runtime_error(str(error)) from error
    if any(entry["cidr"] == cidr for entry in entries):
        raise param_error({"cidr": f"address '{cidr}' already exists"})
    if re.search(r"/0+$", cidr):
        raise param_error({"cidr": "a zero prefix is not allowed in ipset entries"})
    entry: dict[str, Any] = {"cidr": cidr}
    if params.get("nomatch"):
        entry["nomatch"] = 1
    if perl_true(params.get("comment")) and str(params["comment"]).strip():
        entry["comment"] = str(params["comment"]).strip()
    entries.insert(0, entry)
    _sort_entries(entries)


def _sort_entries(entries: list[dict[str, Any]]) -> None:
    """The file lists an IP set's entries sorted by ``cidr``, and that is the order read back."""
    entries.sort(key=lambda entry: str(entry["cidr"]))


def ipset_entry(conf: FwConf, name: str, cidr: str) -> dict[str, Any]:
    entries = ipset_entries(conf, name)
    for entry in with_digest(entries):
        if entry["cidr"] == cidr:
            return entry
    raise param_error({"cidr": "no such IP/Network"})


def update_ipset_entry(conf: FwConf, name: str, params: Mapping[str, Any]) -> None:
    entries = ipset_entries(conf, name)
    assert_unmodified(list_digest(entries), params.get("digest"))
    for entry in entries:
        if entry["cidr"] == params["cidr"]:
            entry.pop("nomatch", None)
            entry.pop("comment", None)
            if params.get("nomatch"):
                entry["nomatch"] = 1
            if perl_true(params.get("comment")) and str(params["comment"]).strip():
                entry["comment"] = str(params["comment"]).strip()
            return
    raise param_error({"cidr": "no such IP/Network"})


def remove_ipset_entry(conf: FwConf, name: str, params: Mapping[str, Any]) -> None:
    entries = ipset_entries(conf, name)
    assert_unmodified(list_digest(entries), params.get("digest"))
    entries[:] = [entry for entry in entries if entry["cidr"] != params["cidr"]]


# ---- aliases -------------------------------------------------------------------------------------------
def alias_list(conf: FwConf) -> list[dict[str, Any]]:
    return [_alias_view(conf.aliases[key]) for key in sorted(conf.aliases)]


def _alias_view(alias: Mapping[str, Any]) -> dict[str, Any]:
    cidr, version = ip_or_cidr(str(alias["cidr"]))
    view: dict[str, Any] = {"name": alias["name"], "cidr": cidr, "ipversion": version}
    if alias.get("comment"):
        view["comment"] = alias["comment"]
    return view


def _alias_data(name: str, params: Mapping[str, Any]) -> dict[str, Any]:
    data: dict[str, Any] = {"name": name, "cidr": ip_or_cidr(str(params["cidr"]))[0]}
    if perl_true(params.get("comment")) and str(params["comment"]).strip():
        data["comment"] = str(params["comment"]).strip()
    return data


def create_alias(conf: FwConf, params: Mapping[str, Any]) -> None:
    name = str(params["name"])
    if name.lower() in conf.aliases:
        raise param_error({"name": f"alias '{name}' already exists"})
    conf.aliases[name.lower()] = _alias_data(name, params)


def read_alias(conf: FwConf, name: str) -> dict[str, Any]:
    if name.lower() not in conf.aliases:
        raise param_error({"name": "no such alias"})
    return _alias_view(conf.aliases[name.lower()])


def update_alias(conf: FwConf, params: Mapping[str, Any]) -> None:
    assert_unmodified(list_digest(alias_list(conf)), params.get("digest"))
    name = str(params["name"])
    if name.lower() not in conf.aliases:
        raise param_error({"name": "no such alias"})
    rename = str(params.get("rename") or "")
    if rename and rename.lower() != name.lower() and rename.lower() in conf.aliases:
        raise param_error({"name": f"alias '{rename}' already exists"})
    data = _alias_data(name, params)
    del conf.aliases[name.lower()]
    if rename and rename.lower() != name.lower():
        data["name"] = rename
        conf.aliases[rename.lower()] = data
    else:
        conf.aliases[name.lower()] = data


def delete_alias(conf: FwConf, params: Mapping[str, Any]) -> None:
    assert_unmodified(list_digest(alias_list(conf)), params.get("digest"))
    conf.aliases.pop(str(params["name"]).lower(), None)


# ---- references ----------------------------------------------------------------------------------------
def references(conf: FwConf, kind: str | None, scope: str) -> list[dict[str, Any]]:
    """``collect_refs``: the IP sets (``+dc/name``) and aliases (``dc/name``) of one file."""
    refs: list[dict[str, Any]] = []
    if kind in (None, "ipset"):
        for name in sorted(conf.ipsets):
            ref: dict[str, Any] = {"type": "ipset", "name": name, "ref": f"+{scope}/{name}", "scope": scope}
            if conf.ipset_comments.get(name):
                ref["comment"] = conf.ipset_comments[name]
            refs.append(ref)
    if kind in (None, "alias"):
        for key in sorted(conf.aliases):
            ref = {"type": "alias", "name": key, "ref": f"{scope}/{key}", "scope": scope}
            if conf.aliases[key].get("comment"):
                ref["comment"] = conf.aliases[key]["comment"]
            refs.append(ref)
    return refs


# ---- security groups -----------------------------------------------------------------------------------
def group_list(conf: FwConf) -> list[dict[str, Any]]:
    rows = []
    for name in sorted(conf.groups):
        row: dict[str, Any] = {"group": name}
        if conf.group_comments.get(name):
            row["comment"] = conf.group_comments[name]
        rows.append(row)
    return rows


def group_rules(conf: FwConf, name: str) -> list[dict[str, Any]]:
    if name not in conf.groups:
        raise runtime_error(f"no such security group '{name}'")
    return conf.groups[name]


def create_group(state: FirewallState, params: Mapping[str, Any]) -> None:
    """``create_security_group``; a rename also renames the group in every rule that uses it."""
    conf = state.cluster
    group, rename, comment = str(params["group"]), params.get("rename"), params.get("comment")
    if rename:
        assert_unmodified(list_digest(group_list(conf)), params.get("digest"))
        if rename not in conf.groups:
            raise param_error({"group": f"Security group '{rename}' does not exist"})
        if group in conf.groups and group != rename:
            raise param_error({"group": f"Security group '{group}' does already exist"})
        rules = conf.groups.pop(rename)
        old_comment = conf.group_comments.pop(rename, None)
        _store_group(conf, group, rules, comment if comment is not None else old_comment)
        for file in (conf, *state.hosts.values(), *state.guests.values()):
            for rule in file.rules:
                if rule.get("type") == "group" and rule.get("action") == rename:
                    rule["action"] = group
        return
    if group in conf.groups:
        raise param_error({"group": f"Security group '{group}' already exists"})
    if group.lower() in conf.groups:  # as with IP sets: the existing group survives the re-read
        return
    _store_group(conf, group, [], comment)


def _store_group(conf: FwConf, name: str, rules: list[dict[str, Any]], comment: Any) -> None:
    key = name.lower()
    conf.groups[key] = rules
    conf.group_comments.pop(key, None)
    if perl_true(comment) and str(comment).strip():
        conf.group_comments[key] = str(comment).strip()


def delete_group(conf: FwConf, name: str) -> None:
    if group_rules(conf, name):
        raise runtime_error(f"Security group '{name}' is not empty")
    del conf.groups[name]
    conf.group_comments.pop(name, None)


def macro_list() -> list[dict[str, str]]:
    return [{"macro": name, "descr": descr} for name, (descr, _) in sorted(MACROS.items())]
