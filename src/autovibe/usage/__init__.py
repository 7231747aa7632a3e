"""Usage accounting, quotas and the alerts they raise."""
