#!/usr/bin/env python3
"""Generate the simulator's trimmed PVE API schema from the official apidoc dump.

Usage (from the repository root)::

    python scripts/gen_sim_schema.py [SOURCE_JSON] [--out DIR]

SOURCE_JSON defaults to ``<repo>/../shared/pve-api/pve-8.4-apidoc.json`` and DIR to
``<repo>/src/autovibe/sim/schema_data``. The output ``pve-8.4.json`` keeps, for every path and method,
what validation, routing and permission checks need (names, types, formats, enums, ranges, optional
flags, return shapes, permissions) and drops all description prose. It is deterministic: the same source
gives the same bytes, which ``tests/unit/sim/test_schema_up_to_date.py`` checks. If the plain file grew
beyond ``GZIP_THRESHOLD`` it would be written gzipped (``pve-8.4.json.gz``, mtime 0) instead.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import json
import re
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
DEFAULT_SOURCE = REPO.parent / "shared" / "pve-api" / "pve-8.4-apidoc.json"
DEFAULT_OUT = REPO / "src" / "autovibe" / "sim" / "schema_data"
BASENAME = "pve-8.4.json"
GZIP_THRESHOLD = 1_500_000

# Last valid index of each indexed property ``name[n]``. The apidoc carries the bound only as prose, and
# only for some prefixes ("(n is 0 to 30)"); where the prose states it, ``max_index`` uses the prose and
# the generator fails if it disagrees with this table. The numbers are the loop bounds that create the
# keys in PVE 8.4's Perl sources:
INDEX_BOUNDS: dict[str, int] = {
    "ide": 3,  # qemu-server Drive.pm $MAX_IDE_DISKS = 4
    "sata": 5,  # qemu-server Drive.pm $MAX_SATA_DISKS = 6
    "scsi": 30,  # qemu-server Drive.pm $MAX_SCSI_DISKS = 31
    "virtio": 15,  # qemu-server Drive.pm $MAX_VIRTIO_DISKS = 16
    "unused": 255,  # qemu-server Drive.pm / pve-container $MAX_UNUSED_DISKS = 256
    "net": 31,  # qemu-server $MAX_NETS = 32; pve-container $MAX_LXC_NETWORKS = 32
    "ipconfig": 31,  # qemu-server: created in the same $MAX_NETS loop as netN
    "serial": 3,  # qemu-server $MAX_SERIAL_PORTS = 4
    "parallel": 2,  # qemu-server $MAX_PARALLEL_PORTS = 3
    "hostpci": 15,  # qemu-server PCI.pm $MAX_HOSTPCI_DEVICES = 16
    # The prose says "n is 0 to 4, ... can be up to 14"; the config schema registers usb0..usb13
    # ($MAX_USB_DEVICES = 14) and the 0..4 limit is enforced later, per machine version.
    "usb": 13,
    "numa": 7,  # qemu-server Memory.pm $MAX_NUMA = 8
    "virtiofs": 9,  # qemu-server Virtiofs.pm $MAX_VIRTIOFS = 10
    "mp": 255,  # pve-container $MAX_MOUNT_POINTS = 256
    "dev": 255,  # pve-container $MAX_DEVICES = 256
    "link": 7,  # pve-cluster Corosync.pm MAX_LINK_INDEX = 7 (inclusive loop; "link0..link7" in prose)
    "acmedomain": 5,  # pve-manager NodeConfig.pm $MAXDOMAINS = 5 (inclusive loop)
}
# An indexed prefix missing from the table gets this bound: PVE's smallest common device count
# (ide, serial), so the simulator under-accepts rather than invents slots. The generator warns.
FALLBACK_MAX_INDEX = 3

_INDEXED = re.compile(r"^(?P<prefix>[A-Za-z0-9_-]+)\[n\]$")
_PROSE_RANGE = re.compile(r"\(n is 0 to (\d+)\)")
_BOOL_WORDS = {"1": 1, "on": 1, "yes": 1, "true": 1, "0": 0, "off": 0, "no": 0, "false": 0}
_NUMERIC = re.compile(r"^[+-]?(\d+\.\d+|\d+\.|\.\d+|\d+)([eE][+-]?\d+)?$")


def perl_to_python_regex(pattern: str) -> str:
    """Rewrite Perl's stringified ``qr//`` groups (``(?^:``, ``(?^i:``) into Python syntax.

    Every other construct used by the 8.4 schema means the same in both engines; the result is compiled
    here so an unsupported construct fails generation rather than a request.
    """
    converted = re.sub(r"\(\?\^([a-z]*):", lambda m: f"(?{m.group(1)}:" if m.group(1) else "(?:", pattern)
    re.compile(converted)
    return converted


def _number(value: Any) -> int | float | None:
    """A schema bound as a number; Perl schemas sometimes carry ``minimum => '0'`` as a string."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return value
    if isinstance(value, str) and _NUMERIC.match(value):
        as_float = float(value)
        return (
            int(as_float)
            if as_float.is_integer() and "." not in value and "e" not in value.lower()
            else as_float
        )
    return None


def _real_default(prop: dict[str, Any]) -> Any:
    """The default if it is a real value of the property's type, else None (prose such as 'same as user')."""
    value = prop.get("default")
    kind = prop.get("type")
    if value is None:
        return None
    if kind == "boolean":
        word = str(value).lower() if not isinstance(value, bool) else ("1" if value else "0")
        return _BOOL_WORDS.get(word)
    if kind in ("integer", "number"):
        number = _number(value)
        if number is None or (kind == "integer" and not float(number).is_integer()):
            return None
        return int(number) if kind == "integer" else number
    if kind != "string" or not isinstance(value, str):
        return None
    if "enum" in prop and value not in prop["enum"]:
        return None
    if "pattern" in prop and not re.search(f"^{perl_to_python_regex(prop['pattern'])}$", value):
        return None
    fmt = prop.get("format")
    # A named single-value format never admits spaces; a default with spaces is a sentence about
    # the default ("current connected node"), not a value.
    if isinstance(fmt, str) and not fmt.endswith("-list") and re.search(r"\s", value):
        return None
    return value


def trim_param(prop: dict[str, Any], name: str = "") -> dict[str, Any]:
    """Keep the validation-relevant keys of one parameter (or property-string sub-key)."""
    out: dict[str, Any] = {}
    for key in ("type", "enum", "alias", "keyAlias", "requires"):
        if key in prop and prop[key] is not None:
            out[key] = prop[key]
    for key in ("optional", "default_key"):
        if prop.get(key):
            out[key] = True
    for key in ("minimum", "maximum", "minLength", "maxLength"):
        number = _number(prop.get(key))
        if number is not None:
            out[key] = number
    if "pattern" in prop:
        out["pattern"] = perl_to_python_regex(prop["pattern"])
    fmt = prop.get("format")
    if isinstance(fmt, str):
        out["format"] = fmt
    elif isinstance(fmt, dict):
        out["format"] = {key: trim_param(sub) for key, sub in fmt.items()}
    if isinstance(prop.get("items"), dict):
        out["items"] = trim_param(prop["items"])
    default = _real_default(prop)
    if default is not None:
        out["default"] = default
    match = _INDEXED.match(name)
    if match:
        out["max_index"] = _max_index(match.group("prefix"), prop)
    return out


def _max_index(prefix: str, prop: dict[str, Any]) -> int:
    prose = _PROSE_RANGE.search(prop.get("description", ""))
    known = INDEX_BOUNDS.get(prefix)
    if prose and prefix != "usb":
        stated = int(prose.group(1))
        if known is not None and known != stated:
            raise SystemExit(f"{prefix}[n]: description says 0..{stated}, INDEX_BOUNDS says {known}")
        return stated
    if known is None:
        print(f"warning: no index bound for {prefix}[n]; using {FALLBACK_MAX_INDEX}", file=sys.stderr)
        return FALLBACK_MAX_INDEX
    return known


def trim_returns(ret: Any) -> Any:
    """Return shapes without prose: type, optional, properties and items, recursively."""
    if not isinstance(ret, dict):
        return ret
    out: dict[str, Any] = {}
    if "type" in ret:
        out["type"] = ret["type"]
    if ret.get("optional"):
        out["optional"] = True
    if isinstance(ret.get("properties"), dict):
        out["properties"] = {key: trim_returns(sub) for key, sub in ret["properties"].items()}
    if isinstance(ret.get("items"), dict):
        out["items"] = trim_returns(ret["items"])
    return out


def trim_endpoint(path: str, method: str, info: dict[str, Any]) -> dict[str, Any]:
    params = info.get("parameters") or {}
    permissions = info.get("permissions")
    if isinstance(permissions, dict):
        permissions = {key: value for key, value in permissions.items() if key != "description"}
    return {
        "path": path,
        "method": method,
        "name": info.get("name", ""),
        "params": {name: trim_param(prop, name) for name, prop in (params.get("properties") or {}).items()},
        "additionalProperties": bool(params.get("additionalProperties", 0)),
        "returns": trim_returns(info.get("returns")),
        "permissions": permissions,
        "allowtoken": bool(info.get("allowtoken", 1)),
        "protected": bool(info.get("protected", 0)),
        "proxyto": info.get("proxyto"),
    }


def collect(tree: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every (path, method) of the apidoc tree, sorted by path then method."""
    found: list[dict[str, Any]] = []
    stack = list(tree)
    while stack:
        node = stack.pop()
        for method, info in (node.get("info") or {}).items():
            found.append(trim_endpoint(node["path"], method, info))
        stack.extend(node.get("children") or [])
    found.sort(key=lambda endpoint: (endpoint["path"], endpoint["method"]))
    return found


def render(source_bytes: bytes, source_name: str) -> bytes:
    """The output document: one endpoint per line so diffs stay readable."""
    endpoints = collect(json.loads(source_bytes))
    header = json.dumps(
        {"source": source_name, "source_sha256": hashlib.sha256(source_bytes).hexdigest()},
        sort_keys=True,
    )
    lines = [json.dumps(endpoint, sort_keys=True, separators=(",", ":")) for endpoint in endpoints]
    body = ",\n".join(lines)
    return f'{{"meta":{header},\n"endpoints":[\n{body}\n]}}\n'.encode()


def write(data: bytes, out_dir: Path) -> Path:
    """Write plain or gzipped (deterministically) and remove the other variant."""
    out_dir.mkdir(parents=True, exist_ok=True)
    plain, packed = out_dir / BASENAME, out_dir / f"{BASENAME}.gz"
    if len(data) <= GZIP_THRESHOLD:
        plain.write_bytes(data)
        packed.unlink(missing_ok=True)
        return plain
    buffer = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=buffer, mtime=0, compresslevel=9) as archive:
        archive.write(data)
    packed.write_bytes(buffer.getvalue())
    plain.unlink(missing_ok=True)
    return packed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("source", nargs="?", type=Path, default=DEFAULT_SOURCE)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    source: Path = args.source
    if not source.is_file():
        print(f"error: {source} not found", file=sys.stderr)
        return 1
    target = write(render(source.read_bytes(), source.name), args.out)
    print(f"wrote {target} ({target.stat().st_size} bytes)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
