"""The hub: a long-running service over the same services the CLI uses.

``jobs`` is the queue of long work (claimed by one replica with ``SKIP LOCKED``), ``handlers`` what
each kind of job runs, ``leader`` which replica runs the scheduler (a PostgreSQL advisory lock),
``tick`` the scheduler's pass, and ``service`` the :class:`~autovibe.hub.service.Hub` that owns the
PVE connection, the store and the loops. The HTTP face is ``autovibe.api``.
"""
