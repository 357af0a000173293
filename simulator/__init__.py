"""A Cursor simulator: a Connect server generated from protos/aiserver, scripted to answer like Cursor.

It checks what the real server checks (auth header, checksum shape, client version, model) and
streams scripted answers. Tests steer it per request with a `sim:` line in the last user message
(see `script.py`) and per token through the control API (see `control.py`).
"""
