"""Machines: profiles, requests and placement (pure), and later the service and the deploy saga.

Import the modules themselves (``from autovibe.machines import placement``); this package
re-exports nothing so that importing one part never drags in the others.
"""
