"""An embedded Proxmox VE API simulator.

A separate product living in this package: it imports nothing from the rest of autovibe, and its only
contract is the PVE API schema (``schema_data/``). See ``docs/simulator.md``.
"""
