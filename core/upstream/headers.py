"""The headers Cursor's backend expects on every call (docs/cursor-protocol.md, "Request headers").

Everything version-specific about the client's identity lives here and in CoreSettings.
"""

from __future__ import annotations

import base64
import hashlib
import time
import uuid
from dataclasses import dataclass

# The IDE's Connect client (connect-es) names itself so; [W][J] send the same.
USER_AGENT = "connect-es/1.6.1"


def _sha256_hex(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def checksum_prefix(now: float) -> str:
    """The obfuscated-timestamp part of x-cursor-checksum.

    The timestamp is unix seconds // 1000. Its bytes are laid out as [k>>8, k, k>>24, k>>16, k>>8, k]:
    the IDE writes 48-bit big-endian with JavaScript shifts, which wrap at 32 bits, so the top two
    bytes repeat the low half ([W] checksum.rs and the JS encoder agree on the result). Each byte is
    XORed with the previous output byte (seed 165) plus its index, then base64url without padding
    ([W] uses the URL-safe alphabet, the older JS encoder the standard one; the newer is preferred).
    """
    k = int(now) // 1000
    raw = [(k >> 8) & 0xFF, k & 0xFF, (k >> 24) & 0xFF, (k >> 16) & 0xFF, (k >> 8) & 0xFF, k & 0xFF]
    prev = 165
    out = bytearray()
    for i, byte in enumerate(raw):
        prev = ((byte ^ prev) + i) & 0xFF
        out.append(prev)
    return base64.urlsafe_b64encode(bytes(out)).rstrip(b"=").decode()


def machine_ids(token: str) -> tuple[str, str]:
    """Stable per-account machine ids, derived from the token as the JS clients do."""
    return _sha256_hex(token + "machineId"), _sha256_hex(token + "macMachineId")


def checksum(token: str, now: float | None = None) -> str:
    machine_id, mac_machine_id = machine_ids(token)
    return f"{checksum_prefix(time.time() if now is None else now)}{machine_id}/{mac_machine_id}"


def session_id(token: str) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_DNS, token))


@dataclass(frozen=True, slots=True)
class ClientIdentity:
    client_version: str
    timezone: str = "UTC"
    ghost_mode: bool = True
    config_version: str = ""


def cursor_headers(token: str, identity: ClientIdentity, request_id: str | None = None) -> dict[str, str]:
    """Headers for one call. Framing headers (content-type, connect-*) are connectrpc's job."""
    request_id = request_id or str(uuid.uuid4())
    return {
        "authorization": f"Bearer {token}",
        "user-agent": USER_AGENT,
        "x-amzn-trace-id": f"Root={uuid.uuid4()}",
        "x-client-key": _sha256_hex(token),
        "x-cursor-checksum": checksum(token),
        "x-cursor-client-version": identity.client_version,
        "x-cursor-config-version": identity.config_version or str(uuid.uuid5(uuid.NAMESPACE_URL, token)),
        "x-cursor-streaming": "true",
        "x-cursor-timezone": identity.timezone,
        "x-ghost-mode": "true" if identity.ghost_mode else "false",
        "x-new-onboarding-completed": "false",
        "x-request-id": request_id,
        "x-session-id": session_id(token),
    }
