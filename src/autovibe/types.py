"""Small value aliases shared by every layer. Imports nothing from autovibe."""

from __future__ import annotations

from typing import NewType

Vmid = NewType("Vmid", int)
NodeName = NewType("NodeName", str)
Upid = NewType("Upid", str)
Bytes = NewType("Bytes", int)

GIB = 1024**3
MIB = 1024**2
