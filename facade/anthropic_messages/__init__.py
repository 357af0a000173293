"""Anthropic Messages: `/v1/messages` and `/v1/messages/count_tokens`, also under `/cursor`.

The Anthropic SDKs append `/v1/messages` to their base URL, so both `http://host:port` and
`http://host:port/cursor` work as base URLs. Errors under these paths take Anthropic's shape.
"""

from __future__ import annotations

from fastapi import FastAPI

from facade.anthropic_messages.errors import render
from facade.anthropic_messages.routes import router
from facade.errors import add_error_renderer

PREFIXES = ("", "/cursor")
ROUTES = ("/v1/messages", "/v1/messages/count_tokens")
PATHS = frozenset(f"{prefix}{route}" for prefix in PREFIXES for route in ROUTES)


def _is_messages_path(path: str) -> bool:
    return path.rstrip("/") in PATHS


def attach(app: FastAPI) -> None:
    for prefix in PREFIXES:
        app.include_router(router, prefix=prefix, tags=["anthropic"])
    add_error_renderer(app, _is_messages_path, render)
