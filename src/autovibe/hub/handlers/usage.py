"""usage jobs (filled in by the usage router work)."""
