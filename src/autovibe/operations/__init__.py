"""Durable, journaled operations: ordered steps with compensations, resumable after a crash.

An operation's steps are written to the store before and after each step, and the facts a step needs
to undo itself (a vmid it is about to clone into) are remembered *before* it acts. If the process
dies anywhere, ``resume`` finds operations whose owner is gone and compensates them, newest step
first, so a machine ends either fully deployed and recorded or gone.
"""
