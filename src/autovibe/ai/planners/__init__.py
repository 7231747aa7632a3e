"""Planners turn a request into a Plan: offline (deterministic), anthropic, openai_compat."""
