"""The value grammar of PVE's firewall (pve-firewall ``PVE/Firewall.pm``), with PVE's error texts.

Pure functions, shared by the schema formats (``pve-fw-addr-spec``, ``pve-fw-dport-spec``, ``IPorCIDR``
...) and the rule verification in ``firewall.py``. Every checker raises ``SpecError`` with the text
PVE dies with (no trailing newline). Addresses follow Perl's ``Net::IP`` (which PVE uses to parse
them), so its messages appear verbatim: ``invalid IP address: Invalid prefix 0000...0001/24``.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Final

# pve-firewall's name patterns and limits.
NAME_PATTERN: Final = r"[A-Za-z][A-Za-z0-9\-_]+"  # ipset, alias and security group names
ALIAS_RE: Final = re.compile(rf"^(dc/|guest/)?({NAME_PATTERN})$")
IPSET_REF_RE: Final = re.compile(rf"^\+(guest/|dc/|sdn/)?({NAME_PATTERN})$")
MAX_ALIAS_NAME, MAX_IPSET_NAME, MAX_GROUP_NAME = 64, 64, 18

PROTOCOLS_WITH_PORTS: Final = frozenset(
    {"udp", "17", "udplite", "136", "tcp", "6", "dccp", "33", "sctp", "132"}
)
ICMP_PROTOCOLS: Final = frozenset({"icmp", "icmpv6", "ipv6-icmp"})
LOG_LEVELS: Final = ("emerg", "alert", "crit", "err", "warning", "notice", "info", "debug", "nolog")
CONNTRACK_HELPERS: Final = frozenset(
    {"amanda", "ftp", "irc", "netbios-ns", "pptp", "sane", "sip", "snmp", "tftp"}
)


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


# Debian's /etc/protocols (netbase), name -> number; PVE adds "icmpv6" (ip6tables' spelling).
PROTOCOLS: Final = {
    "ip": 0, "hopopt": 0, "icmp": 1, "igmp": 2, "ggp": 3, "ipencap": 4, "st": 5, "tcp": 6, "egp": 8,
    "igp": 9, "pup": 12, "udp": 17, "hmp": 20, "xns-idp": 22, "rdp": 27, "iso-tp4": 29, "dccp": 33,
    "xtp": 36, "ddp": 37, "idpr-cmtp": 38, "ipv6": 41, "ipv6-route": 43, "ipv6-frag": 44, "idrp": 45,
    "rsvp": 46, "gre": 47, "esp": 50, "ah": 51, "skip": 57, "ipv6-icmp": 58, "ipv6-nonxt": 59,
    "ipv6-opts": 60, "rspf": 73, "vmtp": 81, "eigrp": 88, "ospf": 89, "ax.25": 93, "ipip": 94,
    "etherip": 97, "encap": 98, "pim": 103, "ipcomp": 108, "vrrp": 112, "l2tp": 115, "isis": 124,
    "sctp": 132, "fc": 133, "mobility-header": 135, "udplite": 136, "mpls-in-ip": 137, "manet": 138,
    "hip": 139, "shim6": 140, "wesp": 141, "rohc": 142, "ethernet": 143,
}  # fmt: skip
_PROTOCOL_IDS: Final = frozenset(str(number) for number in PROTOCOLS.values())

# Service names of Debian's /etc/services (netbase) that PVE accepts in place of port numbers.
SERVICES: Final = _words(
    """
    tcpmux echo discard systat daytime netstat qotd chargen ftp-data ftp ssh telnet smtp time whois
    tacacs domain gopher finger http kerberos iso-tsap acr-nema pop3 sunrpc auth nntp ntp epmap
    netbios-ns netbios-dgm netbios-ssn imap2 snmp snmp-trap cmip-man cmip-agent mailq xdmcp bgp smux
    qmtp z3950 ipx ptp-event ptp-general pawserv zserv rpc2portmap codaauth2 clearcase ldap svrloc
    https snpp microsoft-ds kpasswd saft isakmp rtsp nqs asf-rmcp qmqp ipp ldp exec biff login who
    shell syslog printer talk ntalk route gdomap uucp klogin kshell dhcpv6-client dhcpv6-server
    afpovertcp nntps submission ldaps tinc silc kerberos-adm domain-s rsync ftps-data ftps telnets
    imaps pop3s socks proofd rootd openvpn rmiregistry lotusnote ms-sql-s ms-sql-m ingreslock
    datametrics sa-msg-port kermit groupwise l2f radius radius-acct cisco-sccp nfs gnunet rtcm-sc104
    gsigatekeeper gris cvspserver venus venus-se codasrv codasrv-se mon dict f5-globalsite gsiftp gpsd
    gds-db icpv2 isns iscsi-target mysql ms-wbt-server nut distcc daap svn suucp sysrqd sieve epmd
    remctl f5-iquery ntske ipsec-nat-t iax mtn radmin-port sip sip-tls xmpp-client xmpp-server
    cfengine mdns postgresql freeciv amqps amqp ggz x11 x11-1 x11-2 x11-3 x11-4 x11-5 x11-6 x11-7
    gnutella-svc gnutella-rtr sge-qmaster sge-execd mysql-proxy babel-routing babel hkp bacula-dir
    bacula-fd bacula-sd xmms2 nbd zabbix-agent zabbix-trapper amanda dicom hkp hylafax munin
    rplay nrpe nsca mrtd bgpsim canna syslog-tls sane-port ircd zope-ftp tproxy omniorb clc-build-daemon
    xinetd git supfilesrv supfiledbg rtmp nbp zip bootps bootpc tftp kerberos4 kerberos-master
    passwd-server krb-prop zephyr-srv zephyr-clt zephyr-hm iprop webmin kamanda amandaidx amidxtape
    sgi-cmsd sgi-crsd sgi-gcd sgi-cad binkp asp csync2 dircproxy tfido fido spamd http-alt
    """
)

# iptables -p icmp -h, ip6tables -p icmpv6 -h
ICMP_TYPES: Final = _words(
    """
    any echo-reply destination-unreachable network-unreachable host-unreachable protocol-unreachable
    port-unreachable fragmentation-needed source-route-failed network-unknown host-unknown
    network-prohibited host-prohibited TOS-network-unreachable TOS-host-unreachable
    communication-prohibited host-precedence-violation precedence-cutoff source-quench redirect
    network-redirect host-redirect TOS-network-redirect TOS-host-redirect echo-request
    router-advertisement router-solicitation time-exceeded ttl-zero-during-transit
    ttl-zero-during-reassembly parameter-problem ip-header-bad required-option-missing
    timestamp-request timestamp-reply address-mask-request address-mask-reply
    """
)
ICMPV6_TYPES: Final = _words(
    """
    destination-unreachable no-route communication-prohibited beyond-scope address-unreachable
    port-unreachable failed-policy reject-route packet-too-big time-exceeded ttl-zero-during-transit
    ttl-zero-during-reassembly parameter-problem bad-header unknown-header-type unknown-option
    echo-request echo-reply router-solicitation router-advertisement neighbor-solicitation
    neighbour-solicitation neighbor-advertisement neighbour-advertisement redirect
    """
)

_IPV4_RE: Final = re.compile(
    r"^(?:(?:25[0-5]|(?:2[0-4]|1[0-9]|[1-9])?[0-9])\.){3}(?:25[0-5]|(?:2[0-4]|1[0-9]|[1-9])?[0-9])$"
)


class SpecError(ValueError):
    """A value PVE refuses; ``str(error)`` is PVE's text."""


def perl_true(value: object) -> bool:
    """Perl truthiness of a parameter: undef, ``""`` and ``"0"`` are false."""
    return value is not None and str(value) not in ("", "0")


# ---- Net::IP ---------------------------------------------------------------------------------------
def _ipv4_bits(text: str) -> str | None:
    """Net::IP ``ip_is_ipv4`` + ``ip_expand_address``: 1-4 decimal quads, missing ones are 0."""
    if not re.fullmatch(r"[\d.]+", text) or text.startswith(".") or text.endswith("."):
        return None
    quads = text.split(".")
    if len(quads) > 4 or "" in quads or any(int(quad) > 255 for quad in quads):
        return None
    quads += ["0"] * (4 - len(quads))
    return "".join(f"{int(quad):08b}" for quad in quads)


def _ipv6_bits(text: str) -> str | None:
    if "%" in text:
        return None
    try:
        return f"{int(ipaddress.IPv6Address(text)):0128b}"
    except ValueError:
        return None


def _ip_bits(text: str) -> tuple[int, str]:
    """(version, 32/128-bit string) of one address, or Net::IP's version error."""
    bits = None if ":" in text else _ipv4_bits(text)
    if bits is not None:
        return 4, bits
    bits = _ipv6_bits(text)
    if bits is not None:
        return 6, bits
    raise SpecError(f"Cannot determine IP version for {text}")


def net_ip(text: str) -> int:
    """``Net::IP->new(text)``: an address, ``addr/len`` with zero host bits, or ``begin-end``.

    Returns the IP version; raises SpecError with Net::IP's error text.
    """
    range_match = re.fullmatch(r"(.+?)\s*-\s*(.+)", text)
    if range_match is not None:
        begin, end = range_match.group(1), range_match.group(2)
        version, begin_bits = _ip_bits(begin)
        end_version, end_bits = _ip_bits(end)
        if version != end_version:
            raise SpecError(f"Begin and end IP versions do not match for {begin} - {end}")
        if begin_bits > end_bits:
            raise SpecError(f"Begin address is greater than end address {begin} - {end}")
        return version
    prefix_match = re.fullmatch(r"([^/]+)/(\d+)", text)
    if prefix_match is not None:
        version, bits = _ip_bits(prefix_match.group(1))
        length = int(prefix_match.group(2))
        if length > len(bits):
            raise SpecError(f"Prefix length {length} is longer than IP address ({len(bits)})")
        if "1" in bits[length:]:
            raise SpecError(f"Invalid prefix {bits}/{length}")
        return version
    return _ip_bits(text)[0]


def is_ipv4(text: str) -> bool:
    return _IPV4_RE.match(text) is not None


def is_ipv6(text: str) -> bool:
    return _ipv6_bits(text) is not None


def ip_or_cidr(text: str) -> tuple[str, int]:
    """``parse_ip_or_cidr``: PVE's normal form (``/32`` and ``/128`` dropped) and the IP version."""
    address, slash, length = text.partition("/")
    if slash and not length.isdigit():
        raise SpecError("value does not look like a valid IP address or CIDR network")
    if is_ipv6(address):
        return (address if length == "128" else text), 6
    if is_ipv4(address):
        return (address if length == "32" else text), 4
    raise SpecError("value does not look like a valid IP address or CIDR network")


def check_ip_or_cidr(text: str) -> None:
    """Format ``IPorCIDR``: an address with an optional prefix length; host bits may be set (PVE
    clears them before asking Net::IP), the length may not exceed the address."""
    address, slash, length = text.partition("/")
    if (slash and not length.isdigit()) or not (is_ipv4(address) or is_ipv6(address)):
        raise SpecError("value does not look like a valid IP address or CIDR network")
    if slash:
        bits = 32 if is_ipv4(address) else 128
        if int(length) > bits:
            raise SpecError(f"Prefix length {int(length)} is longer than IP address ({bits})")


def check_ip_or_cidr_or_alias(text: str) -> None:
    """Format ``IPorCIDRorAlias``: ``IPorCIDR``, or an alias name (``dc/`` or ``guest/`` scoped)."""
    if ALIAS_RE.match(text) is None:
        check_ip_or_cidr(text)


# ---- rule fields -----------------------------------------------------------------------------------
def address_list(text: str) -> int | None:
    """``parse_address_list``: an ipset reference, an alias, or IPs/CIDRs/one range; the IP version
    (None for references)."""
    if re.fullmatch(r"\+\S+", text):
        if len(text) > MAX_IPSET_NAME + 1:
            raise SpecError("ipset name too long")
        return None
    if ALIAS_RE.match(text):
        if len(text) > MAX_ALIAS_NAME:
            raise SpecError("alias name too long")
        return None
    elements = text.split(",")
    while elements and elements[-1] == "":  # Perl's split drops trailing empty fields
        elements.pop()
    if text != ",".join(elements):
        raise SpecError("extraneous commas in list")
    version: int | None = None
    has_range = False
    for element in elements:
        try:
            element_version = net_ip(element)
        except SpecError as error:
            raise SpecError(f"invalid IP address: {error}") from None
        has_range = has_range or "-" in element
        if version is not None and element_version != version:
            raise SpecError(f"detected mixed ipv4/ipv6 addresses in address list '{text}'")
        version = element_version
    if has_range and len(elements) > 1:
        raise SpecError("you can't use a range in a list")
    return version


def port_list(text: str, *, icmp: bool) -> None:
    """``parse_port_name_number_or_range``: ports, ``a:b`` ranges and service names, comma separated
    (at most 15 numbers, a range counting two); with ``icmp`` also ICMP type names (legacy dport)."""
    elements = text.split(",")
    while elements and elements[-1] == "":
        elements.pop()
    if text != ",".join(elements):
        raise SpecError("extraneous commas in list")
    count, icmp_port = 0, False
    for item in elements:
        port_range = re.fullmatch(r"([0-9]+):([0-9]+)", item)
        if port_range is not None:
            count += 2
            first, second = int(port_range.group(1)), int(port_range.group(2))
            for port in (port_range.group(1), port_range.group(2)):
                if int(port) > 65535:
                    raise SpecError(f"invalid port '{port}'")
            if first > second:
                raise SpecError(
                    f"backwards range '{port_range.group(1)}:{port_range.group(2)}' not allowed, "
                    f"did you mean '{port_range.group(2)}:{port_range.group(1)}'?"
                )
        elif re.fullmatch(r"[0-9]+", item):
            count += 1
            if int(item) > 65535:
                raise SpecError(f"invalid port '{item}'")
        elif icmp and (item in ICMP_TYPES or item in ICMPV6_TYPES):
            icmp_port = True
        elif item not in SERVICES:
            raise SpecError(f"invalid port '{item}'")
    if icmp_port and count > 0:
        raise SpecError("ICMP ports not allowed in port range")
    if count > 15:
        raise SpecError("too many entries in port list (> 15 numbers)")


def check_protocol(text: str) -> None:
    if text and text not in PROTOCOLS and text != "icmpv6" and text not in _PROTOCOL_IDS:
        raise SpecError(f"unknown protocol '{text}'")


def check_icmp_type(text: str) -> None:
    if text and text not in ICMP_TYPES and text not in ICMPV6_TYPES:
        raise SpecError(f"invalid icmp-type value '{text}'")


def check_conntrack_helpers(text: str) -> None:
    helpers = text.split(",")
    if text != ",".join(helpers):
        raise SpecError("extraneous commas in list")
    for helper in helpers:
        if helper not in CONNTRACK_HELPERS:
            raise SpecError(f"unknown helper {helper}")


def check_iface(text: str) -> None:
    """pve-common ``pve_verify_iface``."""
    if re.fullmatch(r"[a-z][a-z0-9_]{1,20}(?:[:.]\d+)?", text, re.IGNORECASE) is None:
        raise SpecError(f"invalid network interface name '{text}'")


# ---- macros ----------------------------------------------------------------------------------------
# name -> (description, templates); a template is (proto, dport, sport), ``action`` is the rule's.
Template = tuple[str, str | None, str | None]
_T = "tcp"
_U = "udp"
MACROS: Final[dict[str, tuple[str, tuple[Template, ...]]]] = {
    "Amanda": ("Amanda Backup", ((_U, "10080", None), (_T, "10080", None))),
    "Auth": ("Auth (identd) traffic", ((_T, "113", None),)),
    "BGP": ("Border Gateway Protocol traffic", ((_T, "179", None),)),
    "BitTorrent": (
        "BitTorrent traffic for BitTorrent 3.1 and earlier",
        ((_T, "6881:6889", None), (_U, "6881", None)),
    ),
    "BitTorrent32": (
        "BitTorrent traffic for BitTorrent 3.2 and later",
        ((_T, "6881:6999", None), (_U, "6881", None)),
    ),
    "Ceph": (
        "Ceph Storage Cluster traffic (Ceph Monitors, OSD & MDS Daemons)",
        ((_T, "6789", None), (_T, "3300", None), (_T, "6800:7300", None)),
    ),
    "CVS": ("Concurrent Versions System pserver traffic", ((_T, "2401", None),)),
    "Citrix": (
        "Citrix/ICA traffic (ICA, ICA Browser, CGP)",
        ((_T, "1494", None), (_U, "1604", None), (_T, "2598", None)),
    ),
    "DAAP": (
        "Digital Audio Access Protocol traffic (iTunes, Rythmbox daemons)",
        ((_T, "3689", None), (_U, "3689", None)),
    ),
    "DCC": ("Distributed Checksum Clearinghouse spam filtering mechanism", ((_T, "6277", None),)),
    "DHCPfwd": ("Forwarded DHCP traffic", ((_U, "67:68", "67:68"),)),
    "DNS": ("Domain Name System traffic (upd and tcp)", ((_U, "53", None), (_T, "53", None))),
    "Distcc": ("Distributed Compiler service", ((_T, "3632", None),)),
    "FTP": ("File Transfer Protocol", ((_T, "21", None),)),
    "Finger": ("Finger protocol (RFC 742)", ((_T, "79", None),)),
    "GNUnet": (
        "GNUnet secure peer-to-peer networking traffic",
        ((_T, "2086", None), (_U, "2086", None), (_T, "1080", None), (_U, "1080", None)),
    ),
    "GRE": ("Generic Routing Encapsulation tunneling protocol", (("47", None, None),)),
    "Git": ("Git distributed revision control traffic", ((_T, "9418", None),)),
    "HKP": ("OpenPGP HTTP key server protocol traffic", ((_T, "11371", None),)),
    "HTTP": ("Hypertext Transfer Protocol (WWW)", ((_T, "80", None),)),
    "HTTPS": ("Hypertext Transfer Protocol (WWW) over SSL", ((_T, "443", None),)),
    "ICPV2": ("Internet Cache Protocol V2 (Squid) traffic", ((_U, "3130", None),)),
    "ICQ": ("AOL Instant Messenger traffic", ((_T, "5190", None),)),
    "IMAP": ("Internet Message Access Protocol", ((_T, "143", None),)),
    "IMAPS": ("Internet Message Access Protocol over SSL", ((_T, "993", None),)),
    "IPIP": ("IPIP capsulation traffic", (("94", None, None),)),
    "IPsec": ("IPsec traffic", ((_U, "500", "500"), ("50", None, None))),
    "IPsecah": ("IPsec authentication (AH) traffic", ((_U, "500", "500"), ("51", None, None))),
    "IPsecnat": (
        "IPsec traffic and Nat-Traversal",
        ((_U, "500", None), (_U, "4500", None), ("50", None, None)),
    ),
    "IRC": ("Internet Relay Chat traffic", ((_T, "6667", None),)),
    "Jetdirect": ("HP Jetdirect printing", ((_T, "9100", None),)),
    "L2TP": ("Layer 2 Tunneling Protocol traffic", ((_U, "1701", None),)),
    "LDAP": ("Lightweight Directory Access Protocol traffic", ((_T, "389", None),)),
    "LDAPS": ("Secure Lightweight Directory Access Protocol traffic", ((_T, "636", None),)),
    "MSNP": ("Microsoft Notification Protocol", ((_T, "1863", None),)),
    "MSSQL": ("Microsoft SQL Server", ((_T, "1433", None),)),
    "Mail": (
        "Mail traffic (SMTP, SMTPS, Submission)",
        ((_T, "25", None), (_T, "465", None), (_T, "587", None)),
    ),
    "MDNS": ("Multicast DNS", ((_U, "5353", None),)),
    "Munin": ("Munin networked resource monitoring traffic", ((_T, "4949", None),)),
    "MySQL": ("MySQL server", ((_T, "3306", None),)),
    "NNTP": ("NNTP traffic (Usenet).", ((_T, "119", None),)),
    "NNTPS": ("Encrypted NNTP traffic (Usenet)", ((_T, "563", None),)),
    "NTP": ("Network Time Protocol (ntpd)", ((_U, "123", None),)),
    "OSPF": ("OSPF multicast traffic", (("89", None, None),)),
    "OpenVPN": ("OpenVPN traffic", ((_U, "1194", None),)),
    "PCA": ("Symantec PCAnywere (tm)", ((_U, "5632", None), (_T, "5631", None))),
    "PMG": ("Proxmox Mail Gateway web interface", ((_T, "8006", None),)),
    "POP3": ("POP3 traffic", ((_T, "110", None),)),
    "POP3S": ("Encrypted POP3 traffic", ((_T, "995", None),)),
    "PPtP": ("Point-to-Point Tunneling Protocol", (("47", None, None), (_T, "1723", None))),
    "Ping": ("ICMP echo request", (("icmp", "echo-request", None),)),
    "PostgreSQL": ("PostgreSQL server", ((_T, "5432", None),)),
    "Printer": ("Line Printer protocol printing", ((_T, "515", None),)),
    "RDP": ("Microsoft Remote Desktop Protocol traffic", ((_T, "3389", None),)),
    "RIP": ("Routing Information Protocol (bidirectional)", ((_U, "520", None),)),
    "RNDC": ("BIND remote management protocol", ((_T, "953", None),)),
    "Razor": ("Razor Antispam System", ((_T, "2703", None),)),
    "Rdate": ("Remote time retrieval (rdate)", ((_T, "37", None),)),
    "Rsync": ("Rsync server", ((_T, "873", None),)),
    "SANE": ("SANE network scanning", ((_T, "6566", None),)),
    "SMB": (
        "Microsoft SMB traffic",
        ((_U, "135,445", None), (_U, "137:139", None), (_U, "1024:65535", "137"), (_T, "135,139,445", None)),
    ),
    "SMBswat": ("Samba Web Administration Tool", ((_T, "901", None),)),
    "SMTP": ("Simple Mail Transfer Protocol", ((_T, "25", None),)),
    "SMTPS": ("Encrypted Simple Mail Transfer Protocol", ((_T, "465", None),)),
    "SNMP": ("Simple Network Management Protocol", ((_U, "161:162", None), (_T, "161", None))),
    "SPAMD": ("Spam Assassin SPAMD traffic", ((_T, "783", None),)),
    "SSH": ("Secure shell traffic", ((_T, "22", None),)),
    "SVN": ("Subversion server (svnserve)", ((_T, "3690", None),)),
    "SixXS": (
        "SixXS IPv6 Deployment and Tunnel Broker",
        ((_T, "3874", None), (_U, "3740", None), ("41", None, None), (_U, "5072,8374", None)),
    ),
    "SPICEproxy": ("Proxmox VE SPICE display proxy traffic", ((_T, "3128", None),)),
    "Squid": ("Squid web proxy traffic", ((_T, "3128", None),)),
    "Submission": ("Mail message submission traffic", ((_T, "587", None),)),
    "Syslog": ("Syslog protocol (RFC 5424) traffic", ((_U, "514", None), (_T, "514", None))),
    "TFTP": ("Trivial File Transfer Protocol traffic", ((_U, "69", None),)),
    "Telnet": ("Telnet traffic", ((_T, "23", None),)),
    "Telnets": ("Telnet over SSL", ((_T, "992", None),)),
    "Time": ("RFC 868 Time protocol", ((_T, "37", None),)),
    "Trcrt": (
        "Traceroute (for up to 30 hops) traffic",
        ((_U, "33434:33524", None), ("icmp", "echo-request", None)),
    ),
    "VNC": ("VNC traffic for VNC display's 0 - 99", ((_T, "5900:5999", None),)),
    "VNCL": ("VNC traffic from Vncservers to Vncviewers in listen mode", ((_T, "5500", None),)),
    "Web": ("WWW traffic (HTTP and HTTPS)", ((_T, "80", None), (_T, "443", None))),
    "Webcache": ("Web Cache/Proxy traffic (port 8080)", ((_T, "8080", None),)),
    "Webmin": ("Webmin traffic", ((_T, "10000", None),)),
    "Whois": ("Whois (nicname, RFC 3912) traffic", ((_T, "43", None),)),
    # IPv6 only (PVE's $pve_ipv6fw_macros entries without an IPv4 twin).
    "NeighborDiscovery": (
        "IPv6 neighbor solicitation, neighbor and router advertisement",
        (
            ("icmpv6", "router-solicitation", None),
            ("icmpv6", "router-advertisement", None),
            ("icmpv6", "neighbor-solicitation", None),
            ("icmpv6", "neighbor-advertisement", None),
        ),
    ),
    "DHCPv6": ("DHCPv6 traffic", ((_U, "546:547", "546:547"),)),
}
MACRO_IPVERSION: Final = {"NeighborDiscovery": 6, "DHCPv6": 6}
# Macros whose IPv6 variant differs (PVE's $pve_ipv6fw_macros).
MACROS_V6: Final[dict[str, tuple[Template, ...]]] = {
    "Ping": (("icmpv6", "echo-request", None),),
    "Trcrt": ((_U, "33434:33524", None), ("icmpv6", "echo-request", None)),
}
PREFERRED_MACRO_NAMES: Final = {name.lower(): name for name in MACROS}
