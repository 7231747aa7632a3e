"""Plain state records of the simulated cluster: nodes, storages, volumes, guests.

Guest configs are kept as PVE keeps them, a flat ``key -> string`` map (``scsi0: shared:vm-100-disk-0,
size=20G``), so what a client reads back is what PVE would show. Everything here serialises to JSON
through ``dataclasses.asdict`` and back through the ``from_dict`` constructors.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from typing import Any

GIB = 1024**3
MIB = 1024**2

# Drive keys that hold volumes (SEMANTICS.md §7: clone copies these; cdroms are copied as-is).
DISK_KEY_RE = re.compile(r"^(scsi|virtio|sata|ide)\d+$|^(efidisk0|tpmstate0)$")
SIZE_RE = re.compile(r"^(\d+(?:\.\d+)?)([KMGT]?)$")
_SIZE_UNITS = {"": 1, "K": 1024, "M": MIB, "G": GIB, "T": 1024 * GIB}


def parse_size(text: str) -> int:
    """PVE disk size text (``20G``, ``512M``, ``1.5T``; bare numbers are bytes) to bytes."""
    match = SIZE_RE.match(text.strip())
    if not match:
        raise ValueError(f"unable to parse size '{text}'")
    return int(float(match.group(1)) * _SIZE_UNITS[match.group(2)])


def format_size(size: int) -> str:
    """Bytes to the compact unit PVE writes into ``size=`` (``20G``, ``512M``)."""
    for unit in ("T", "G", "M", "K"):
        if size % _SIZE_UNITS[unit] == 0:
            return f"{size // _SIZE_UNITS[unit]}{unit}"
    return str(size)


def split_propstring(value: str) -> tuple[str, dict[str, str]]:
    """``shared:vm-100-disk-0,size=20G`` -> (``shared:vm-100-disk-0``, {size: 20G})."""
    head, *rest = value.split(",")
    opts = {}
    for part in rest:
        key, _, val = part.partition("=")
        opts[key] = val
    return head, opts


def join_propstring(head: str, opts: dict[str, str]) -> str:
    return ",".join([head, *(f"{k}={v}" for k, v in opts.items())])


@dataclass
class Node:
    name: str
    ip: str
    cpus: int = 16
    memory: int = 64 * GIB
    online: bool = True


@dataclass
class Storage:
    """A storage as PVE's storage.cfg defines it. Local storages exist once per node."""

    id: str
    type: str  # dir | lvmthin | zfspool | rbd
    shared: bool
    content: list[str]
    total: int
    bandwidth: float  # bytes/s that disk copies on this storage share
    snapshot_rollback: str = "any"  # "any", or "latest" for ZFS (rollback only to the newest)

    def location(self, node: str) -> str:
        """Key of one physical instance: ``shared`` for shared storage, ``local-lvm@pve1`` otherwise."""
        return self.id if self.shared else f"{self.id}@{node}"


@dataclass
class Volume:
    volid: str  # storage:name, e.g. local-lvm:vm-100-disk-0
    storage: str
    node: str  # node that holds it; for shared storage the node it was created from
    vmid: int
    size: int  # virtual size
    format: str = "raw"  # raw | qcow2; a backup archive's is its extension (vma.zst)
    content: str = "images"  # images | backup (RAM-state volumes are images too, as PVE lists them)
    base: str | None = None  # linked clone: the base volume it reads from
    snapshots: list[str] = field(default_factory=list)
    used: int = 0  # allocated bytes: storages are thin, and a full clone copies only these
    ctime: int | None = None  # backups: when the job started (the time in the archive's name)
    notes: str | None = None  # backups: the rendered ``notes-template``
    protected: bool = False  # backups: refused by storage deletion and by pruning

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Volume:
        return cls(**data)


@dataclass
class Guest:
    """A QEMU guest. ``snapshots`` maps name -> the snapshot section of the config file."""

    vmid: int
    node: str
    config: dict[str, str]
    snapshots: dict[str, dict[str, str]] = field(default_factory=dict)
    status: str = "stopped"  # running | stopped
    qmpstatus: str = "stopped"  # running | paused | stopped
    started_at: float | None = None
    pid: int | None = None
    boots: int = 0  # counters restart at zero on every boot, as a real VM's do
    load: str | None = None  # load profile assigned through /_sim/load (usage.py); None: tag or auto
    # The profile running since a switch in this boot: {boot, profile, at, base counters} (usage.py).
    load_segment: dict[str, Any] | None = None

    @property
    def lock(self) -> str | None:
        return self.config.get("lock")

    @property
    def is_template(self) -> bool:
        return self.config.get("template") == "1"

    @property
    def name(self) -> str:
        return self.config.get("name", f"VM {self.vmid}")

    @property
    def memory(self) -> int:
        return int(self.config.get("memory", "2048")) * MIB

    @property
    def cores(self) -> int:
        return int(self.config.get("cores", "1")) * int(self.config.get("sockets", "1"))

    def digest(self) -> str:
        """SHA1 over the serialised config, as PVE's ``digest`` (SEMANTICS.md §4)."""
        text = "".join(f"{k}: {v}\n" for k, v in sorted(self.config.items()))
        text += "".join(
            f"[{name}]\n" + "".join(f"{k}: {v}\n" for k, v in sorted(section.items()))
            for name, section in sorted(self.snapshots.items())
        )
        return hashlib.sha1(text.encode(), usedforsecurity=False).hexdigest()

    def disks(self, config: dict[str, str] | None = None) -> dict[str, str]:
        """Drive key -> volid for every non-cdrom drive of ``config`` (default: current config)."""
        cfg = self.config if config is None else config
        found = {}
        for key, value in cfg.items():
            if DISK_KEY_RE.match(key):
                volid, opts = split_propstring(value)
                if opts.get("media") != "cdrom" and volid not in ("none", "cdrom"):
                    found[key] = volid
        return found

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Guest:
        return cls(**data)
