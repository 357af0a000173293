"""TLS credentials for the facade's channel to core (CURSORGATE_GRPC_TLS_CA / _CERT / _KEY)."""

from __future__ import annotations

from pathlib import Path

import grpc

from facade.config import FacadeSettings


def channel_credentials(settings: FacadeSettings) -> grpc.ChannelCredentials | None:
    """None (plaintext) unless CA or CERT is set. Unreadable files fail the start, loudly."""
    ca, cert, key = settings.grpc_tls_ca, settings.grpc_tls_cert, settings.grpc_tls_key
    if ca is None and cert is None:
        return None
    if (cert is None) != (key is None):
        raise ValueError("Set both CURSORGATE_GRPC_TLS_CERT and CURSORGATE_GRPC_TLS_KEY, or neither.")

    def read(path: Path | None) -> bytes | None:
        return path.read_bytes() if path is not None else None

    return grpc.ssl_channel_credentials(
        root_certificates=read(ca), private_key=read(key), certificate_chain=read(cert)
    )
