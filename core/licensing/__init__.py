"""Licenses: who gets in, their rate limits and token budgets, and handling their secrets."""
