"""Per-request access to the app's shared state: the core client, settings, call metadata."""

from __future__ import annotations

from starlette.requests import Request

from facade.config import FacadeSettings
from facade.core_client import CoreClient, Metadata, call_metadata


def core_of(request: Request) -> CoreClient:
    core: CoreClient = request.app.state.core
    return core


def settings_of(request: Request) -> FacadeSettings:
    settings: FacadeSettings = request.app.state.settings
    return settings


def metadata_of(request: Request, request_id: str, authorization: str | None = None) -> Metadata:
    """Core call metadata: `authorization` when the API carries the key elsewhere, else the
    request's own Authorization header."""
    return call_metadata(authorization or request.headers.get("authorization"), request_id)
