"""Checkpoints: PVE snapshots with RAM state as a tree, restore, branch, and retention policies."""
