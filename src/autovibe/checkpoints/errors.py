"""Errors of the checkpoints area, each a domain kind (faces map kinds to exit codes and statuses).

- ``AutovibeNotFound``: ``CheckpointNotFound``, ``PolicyNotFound`` (also ``KeyError``)
- ``AutovibeInvalid``: ``InvalidCheckpointRequest`` (also ``ValueError``)
- ``AutovibeConflict``: ``CheckpointExists``, ``RestoreNeedsDiscard``, ``BranchNotPossible``,
  ``CheckpointProtected``,
  ``PolicyInUse``, ``MachineMissingInPve``
"""

from __future__ import annotations

from autovibe.errors import AutovibeConflict, AutovibeInvalid, AutovibeNotFound


class CheckpointNotFound(AutovibeNotFound, KeyError):
    """The machine has no checkpoint of that name."""

    def __str__(self) -> str:  # KeyError would quote the message
        return self.message


class PolicyNotFound(AutovibeNotFound, KeyError):
    """No retention policy has that name."""

    def __str__(self) -> str:
        return self.message


class InvalidCheckpointRequest(AutovibeInvalid, ValueError):
    """A bad checkpoint name, policy or schedule, refused before anything reaches PVE."""


class CheckpointExists(AutovibeConflict):
    """A checkpoint of that name already exists on the machine."""


class RestoreNeedsDiscard(AutovibeConflict):
    """ZFS can only roll back to a disk's newest snapshot; newer checkpoints are in the way."""


class BranchNotPossible(AutovibeConflict):
    """The checkpoint's storage cannot be cloned from (PVE's ZFS has no full clone from a snapshot)."""


class CheckpointProtected(AutovibeConflict):
    """The checkpoint is pinned (or a branch was taken from it) and the action would delete it."""


class PolicyInUse(AutovibeConflict):
    """The policy is attached to a project or machine and cannot be deleted."""


class MachineMissingInPve(AutovibeConflict):
    """The machine is recorded but PVE no longer has its VM."""
