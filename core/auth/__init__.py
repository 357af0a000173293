"""Cursor credentials: the CLI's PKCE login, OAuth refresh, user API key exchange, and renewing
each account's access token before it expires (agent-protocol.md §6)."""
