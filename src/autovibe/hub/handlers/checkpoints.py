"""checkpoints jobs (filled in by the checkpoints router work)."""
