"""Errors of the operations runner."""

from __future__ import annotations

from autovibe.errors import AutovibeError, AutovibeNotFound


class OperationFailed(AutovibeError):
    """An operation failed and was compensated (or is stuck). ``cause`` is the step's error."""

    def __init__(
        self, message: str, *, operation_id: str, step: str, compensated: bool, hint: str | None = None
    ):
        super().__init__(message, hint=hint)
        self.operation_id = operation_id
        self.step = step
        self.compensated = compensated


class OperationNotFound(AutovibeNotFound, KeyError):
    """No operation has that id (or id prefix)."""

    def __str__(self) -> str:  # KeyError would quote the message
        return self.message


class UnknownOperationKind(AutovibeError):
    """The journal holds an operation of a kind this version does not know how to resume."""
