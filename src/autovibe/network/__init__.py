"""Network isolation: profiles applied through the PVE firewall, host names kept as IP sets."""
