"""A test-side reader of Server-Sent Events (``event:``/``data:`` lines, a blank line ends an event),
written here rather than borrowed from the CLI's client, so the hub's streams are checked by a second,
independent reader."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterable, Iterator
from typing import Any


class _Events:
    def __init__(self) -> None:
        self.kind, self.data = "message", ""

    def feed(self, line: str) -> tuple[str, dict[str, Any]] | None:
        """One line in; the finished event ``(kind, data)`` when the line ends one."""
        if line.startswith("event:"):
            self.kind = line[6:].strip()
        elif line.startswith("data:"):
            self.data += line[5:].strip()
        elif line == "" and self.data:
            event = (self.kind, dict(json.loads(self.data)))
            self.kind, self.data = "message", ""
            return event
        return None


def events(lines: Iterable[str]) -> Iterator[tuple[str, dict[str, Any]]]:
    reader = _Events()
    for line in lines:
        event = reader.feed(line)
        if event is not None:
            yield event


async def aevents(lines: AsyncIterator[str]) -> AsyncIterator[tuple[str, dict[str, Any]]]:
    reader = _Events()
    async for line in lines:
        event = reader.feed(line)
        if event is not None:
            yield event
