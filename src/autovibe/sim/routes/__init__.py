"""One module per PVE API subtree. ``load_all`` imports them so their ``@route`` handlers register."""

from __future__ import annotations

import importlib

MODULES = (
    "access", "cluster", "nodes", "tasks", "storage", "pools", "qemu", "qemu_power", "clone", "snapshot",
    "vzdump", "firewall", "network",
)  # fmt: skip


def load_all() -> None:
    for name in MODULES:
        importlib.import_module(f"autovibe.sim.routes.{name}")
