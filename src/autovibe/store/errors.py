"""Store errors. A unique-constraint clash becomes ``StoreConflict`` so services can say what clashed."""

from __future__ import annotations

from autovibe.errors import AutovibeConflict, AutovibeError, AutovibeUnavailable


class StoreError(AutovibeError):
    """Base of the store adapter's errors."""


class StoreUnavailable(StoreError, AutovibeUnavailable):
    """The database cannot be opened, migrated or reached."""


class StoreConflict(StoreError, AutovibeConflict):
    """A row with the same unique key already exists."""
