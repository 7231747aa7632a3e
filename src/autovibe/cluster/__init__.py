"""Cluster-wide services: the status view, the doctor, and single-guest steps (``guests.py``).

Services take the ``PveClient`` keyword-only and know nothing about faces or the simulator.
"""
