"""The hub's HTTP face: FastAPI routers over the same services the CLI calls (no business rules here).

``app.create_app(hub)`` builds the app; ``errors`` is the one table from error kinds to HTTP statuses
and the one error body; ``deps`` authenticates callers (bearer API tokens), rate-limits them and hands
routers their collaborators; ``routers`` holds one module per area.
"""
