"""Simulator settings (environment, prefix CURSORGATE_SIMULATOR_)."""

from __future__ import annotations

import base64
import json

from pydantic_settings import BaseSettings, SettingsConfigDict


def make_jwt(subject: str, exp: int = 4102444800, **claims: object) -> str:
    """An unsigned JWT-shaped token (the simulator checks its shape and its exp, as Cursor does)."""

    def part(obj: dict[str, object]) -> str:
        return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()

    payload = {"sub": subject, "exp": exp, **claims}
    return f"{part({'alg': 'HS256', 'typ': 'JWT'})}.{part(payload)}.c2ltdWxhdG9y"


class SimulatorSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CURSORGATE_SIMULATOR_", extra="ignore")

    host: str = "127.0.0.1"
    port: int = 8790
    # Requests older than this client version get ERROR_OUTDATED_CLIENT, as Cursor does.
    min_client_version: str = "1.0.0"
    # The agent RPCs' minimum CLI build (cli-YYYY.MM.DD-<hex>); older builds are outdated.
    min_cli_version: str = "cli-2026.01.01-0000000"
    # Seconds the agent Run waits for the client to answer an exec or KV request before it fails
    # the stream loudly (a real Run would hang; a test must see an error instead).
    agent_reply_timeout: float = 10.0
    # Default pacing of text frames, in milliseconds (0: as fast as possible).
    frame_delay_ms: int = 0
    log_level: str = "warning"
    # Lifetime of the access tokens the simulated auth endpoints issue (login, refresh, API key).
    token_ttl_s: float = 3600.0
    # Dialects this simulated Cursor no longer accepts, comma separated (legacy, inference, agent):
    # as Cursor did to StreamUnifiedChatWithTools in 2026, they answer "Update Required".
    retired: str = ""

    def retired_dialects(self) -> frozenset[str]:
        return frozenset(part.strip() for part in self.retired.split(",") if part.strip())

    def demo_token(self) -> str:
        return make_jwt("auth0|user_simulator")
