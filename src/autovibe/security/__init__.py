"""Security: identities and roles, risk, the gate, the tamper-evident audit log, encrypted secrets."""
