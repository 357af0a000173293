"""The identities Cursor's backend expects, one header profile per client type.

Legacy IDE 2.x (docs/cursor-protocol.md, "Request headers"), current IDE 3.18 (RunInference) and
the CLI (agent Run): ../shared/research/agent-protocol.md §2.5. Everything version-specific about
a client's identity lives here and in CoreSettings.
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


def checksum_prefix_ide3(now: float) -> str:
    """x-cursor-checksum's timestamp part as IDE 3.18 forms it (agent-protocol.md §2.5, from
    oh-my-pi's late-2026 headers.ts): ms // 1e6 as a true 48-bit big-endian number, the same XOR
    chain, standard base64. This newer source differs from the legacy layout above (no 32-bit
    wrap, standard alphabet); as the most recent, it is used for the IDE 3.18 profile.
    """
    k = int(now * 1000) // 1_000_000
    prev = 165
    out = bytearray()
    for i, shift in enumerate((40, 32, 24, 16, 8, 0)):
        prev = (((k >> shift) & 0xFF ^ prev) + i) & 0xFF
        out.append(prev)
    return base64.b64encode(bytes(out)).decode()


def machine_ids(token: str) -> tuple[str, str]:
    """Stable per-account machine ids, derived from the token as the JS clients do."""
    return _sha256_hex(token + "machineId"), _sha256_hex(token + "macMachineId")


def checksum(token: str, now: float | None = None, *, ide3: bool = False) -> str:
    machine_id, mac_machine_id = machine_ids(token)
    when = time.time() if now is None else now
    prefix = checksum_prefix_ide3(when) if ide3 else checksum_prefix(when)
    return f"{prefix}{machine_id}/{mac_machine_id}"


def session_id(token: str) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_DNS, token))


@dataclass(frozen=True, slots=True)
class ClientIdentity:
    client_version: str
    timezone: str = "UTC"
    ghost_mode: bool = True
    # From GetServerConfig when known; the header is left out rather than made up.
    config_version: str = ""
    # IDE 3.x only: the build's commit and the platform it claims.
    commit: str = ""
    os: str = "linux"
    arch: str = "x64"


def cursor_headers(token: str, identity: ClientIdentity, request_id: str | None = None) -> dict[str, str]:
    """The legacy IDE 2.x profile, for one call. Framing headers (content-type, connect-*) are
    connectrpc's job."""
    request_id = request_id or str(uuid.uuid4())
    headers = {
        "authorization": f"Bearer {token}",
        "user-agent": USER_AGENT,
        "x-amzn-trace-id": f"Root={uuid.uuid4()}",
        "x-client-key": _sha256_hex(token),
        "x-cursor-checksum": checksum(token),
        "x-cursor-client-version": identity.client_version,
        "x-cursor-streaming": "true",
        "x-cursor-timezone": identity.timezone,
        "x-ghost-mode": "true" if identity.ghost_mode else "false",
        "x-new-onboarding-completed": "false",
        "x-request-id": request_id,
        "x-session-id": session_id(token),
    }
    if identity.config_version:
        headers["x-cursor-config-version"] = identity.config_version
    return headers


def ide_headers(token: str, identity: ClientIdentity, request_id: str | None = None) -> dict[str, str]:
    """The IDE 3.18 profile (RunInference; agent-protocol.md §2.5, "IDE-style profile")."""
    request_id = request_id or str(uuid.uuid4())
    headers = {
        "authorization": f"Bearer {token}",
        "cookie": f"CursorCookie=Cookie-{token[:15]}",
        "user-agent": USER_AGENT,
        "x-amzn-trace-id": f"Root={request_id}",
        "x-client-key": _sha256_hex(token),
        "x-cursor-checksum": checksum(token, ide3=True),
        "x-cursor-client-arch": identity.arch,
        "x-cursor-client-commit": identity.commit,
        "x-cursor-client-device-type": "desktop",
        "x-cursor-client-os": identity.os,
        "x-cursor-client-type": "ide",
        "x-cursor-client-version": identity.client_version,
        "x-cursor-streaming": "true",
        "x-cursor-timezone": identity.timezone,
        "x-ghost-mode": "true" if identity.ghost_mode else "false",
        "x-new-onboarding-completed": "false",
        "x-request-id": request_id,
    }
    if identity.config_version:
        headers["x-cursor-config-version"] = identity.config_version
    return headers


def cli_headers(token: str, identity: ClientIdentity, request_id: str | None = None) -> dict[str, str]:
    """The CLI profile (agent Run, GetUsableModels; agent-protocol.md §2.5): no checksum and no
    machine identity, which the agent host does not expect from a CLI."""
    request_id = request_id or str(uuid.uuid4())
    return {
        "authorization": f"Bearer {token}",
        "user-agent": USER_AGENT,
        "x-client-key": _sha256_hex(token),
        "x-cursor-client-type": "cli",
        "x-cursor-client-version": identity.client_version,
        "x-cursor-timezone": identity.timezone,
        "x-ghost-mode": "true" if identity.ghost_mode else "false",
        "x-original-request-id": request_id,
        "x-request-id": request_id,
    }
