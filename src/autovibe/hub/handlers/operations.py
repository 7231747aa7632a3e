"""operations jobs (filled in by the operations router work)."""
