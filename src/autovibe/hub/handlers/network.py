"""network jobs (filled in by the network router work)."""
