"""Errors of the machines area. Each is a domain kind (faces map kinds to exit codes and statuses)
and, where one fits, a builtin, so plain Python callers can ``except KeyError`` / ``ValueError``.

- ``AutovibeNotFound``: ``ProfileNotFound``, ``ProjectNotFound``, ``MachineNotFound`` (also ``KeyError``),
  ``NodeNotFound``
- ``AutovibeInvalid``: ``InvalidMachineRequest``, ``ProfileInvalid`` (also ``ValueError``)
- ``AutovibeConflict``: ``NodeUnavailable``, ``InsufficientCapacity``, ``ProjectNotEmpty``,
  ``MachineNameTaken``

Every class has a default ``hint`` saying what to do; raisers pass a sharper one when they know more
(the known profile names, the nodes that are online).
"""

from __future__ import annotations

from collections.abc import Collection
from difflib import get_close_matches
from typing import ClassVar

from pydantic import ValidationError

from autovibe.errors import AutovibeConflict, AutovibeError, AutovibeInvalid, AutovibeNotFound

__all__ = [
    "InsufficientCapacity",
    "InvalidMachineRequest",
    "MachineNameTaken",
    "MachineNotFound",
    "NodeNotFound",
    "NodeUnavailable",
    "ProfileInvalid",
    "ProfileNotFound",
    "ProjectNotEmpty",
    "ProjectNotFound",
    "validation_message",
]


class _Hinted(AutovibeError):
    """Fills ``hint`` from ``default_hint`` when the raiser gives none."""

    default_hint: ClassVar[str] = ""

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message, hint=hint or self.default_hint or None)


class ProfileNotFound(_Hinted, AutovibeNotFound, KeyError):
    """No profile has that name."""

    default_hint = "use one of the configured profiles, or define one under [profiles] in the config file"


class ProjectNotFound(_Hinted, AutovibeNotFound, KeyError):
    """No project has that name."""

    default_hint = "check the project name, or create the project first"


class MachineNotFound(_Hinted, AutovibeNotFound, KeyError):
    """autovibe tracks no machine with that name (or vmid)."""

    default_hint = "run `autovibe machine list` to see the machines autovibe tracks"


class NodeNotFound(_Hinted, AutovibeNotFound):
    """The requested PVE node is not part of the cluster."""

    default_hint = (
        "run `autovibe cluster status` to see the nodes, or leave the node out to let autovibe choose"
    )


class NodeUnavailable(_Hinted, AutovibeConflict):
    """The requested PVE node exists but is not online."""

    default_hint = "bring the node back online, or leave the node out to let autovibe choose an online one"


class InsufficientCapacity(_Hinted, AutovibeConflict):
    """No eligible node has room for the machine(s); the message says how much is free where."""

    default_hint = (
        "ask for less memory or fewer machines, stop or delete machines you no longer need, or add a node"
    )


class ProjectNotEmpty(_Hinted, AutovibeConflict):
    """A project still owns machines, so it cannot be deleted."""

    default_hint = "delete the project's machines first, then the project"


class MachineNameTaken(_Hinted, AutovibeConflict):
    """Another machine already has that name."""

    default_hint = "choose another name, or delete the existing machine first"


class ProfileInvalid(_Hinted, AutovibeInvalid, ValueError):
    """A profile in the config file is malformed; ``message`` names the profile and the field."""

    default_hint = "fix the profile under [profiles] in the config file"


class InvalidMachineRequest(_Hinted, AutovibeInvalid, ValueError):
    """A machine or project request is malformed; ``message`` is one line naming the field."""

    default_hint = "fix the named field and try again"

    @classmethod
    def from_validation(cls, exc: ValidationError, *, fields: Collection[str] = ()) -> InvalidMachineRequest:
        """The first problem of ``exc`` as one line (see :func:`validation_message`)."""
        return cls(validation_message(exc, fields=fields))


def validation_message(exc: ValidationError, *, fields: Collection[str] = ()) -> str:
    """Turn a pydantic ``ValidationError`` into one line that starts with the field's name.

    ``"cores: must be at most 128"``; further problems are counted (``"(and 2 more problems)"``)
    rather than listed, because faces show one line and the user fixes one thing at a time. Pydantic's
    echo of the input is left out (our own validators quote a value where that helps). With the
    model's ``fields``, a misspelt field gets a suggestion: ``"memory: is not a known field; did
    you mean 'memory_mib'?"``.
    """
    problems = exc.errors(include_url=False, include_input=False)
    first = problems[0]
    where = ".".join(str(part) for part in first["loc"])
    text = _plain(first["type"], first["msg"], first.get("ctx") or {})
    if first["type"] == "extra_forbidden" and fields:
        close = get_close_matches(str(first["loc"][-1]), list(fields), n=1)
        text += f"; did you mean {close[0]!r}?" if close else f"; known fields: {', '.join(fields)}"
    line = f"{where}: {text}" if where else text
    if len(problems) > 1:
        extra = len(problems) - 1
        line += f" (and {extra} more problem{'s' if extra > 1 else ''})"
    return line


def _plain(kind: str, msg: str, ctx: dict[str, object]) -> str:
    # pydantic's wording is written for developers ("Input should be less than or equal to 128");
    # the common bound and shape errors read better in the user's terms.
    if kind == "extra_forbidden":
        return "is not a known field"
    if kind == "missing":
        return "is required"
    if kind == "less_than_equal":
        return f"must be at most {ctx['le']}"
    if kind == "greater_than_equal":
        return f"must be at least {ctx['ge']}"
    if kind == "less_than":
        return f"must be less than {ctx['lt']}"
    if kind == "greater_than":
        return f"must be greater than {ctx['gt']}"
    return msg.removeprefix("Value error, ")


class ProjectExists(_Hinted, AutovibeConflict):
    """Another project already has that name (exit code 1, HTTP 409)."""
