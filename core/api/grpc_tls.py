"""TLS (and mutual TLS) for core's gRPC port, from CURSORGATE_GRPC_TLS_CERT / _KEY / _CA.

CERT and KEY (PEM files) turn TLS on. CA, when set too, makes it mutual: every client (the
facade among them) must present a certificate that CA signed.
"""

from __future__ import annotations

import ipaddress
import logging

import grpc

from core.config import CoreSettings

log = logging.getLogger("cursorgate.core")


class TLSConfigError(ValueError):
    """The TLS settings are incomplete or their files unreadable."""


def _read(path: object, name: str) -> bytes:
    try:
        with open(str(path), "rb") as file:
            return file.read()
    except OSError as err:
        raise TLSConfigError(f"{name}: cannot read {path}: {err.strerror}") from None


def server_credentials(settings: CoreSettings) -> grpc.ServerCredentials | None:
    """None when TLS is off (neither CERT nor KEY set)."""
    cert, key, ca = settings.grpc_tls_cert, settings.grpc_tls_key, settings.grpc_tls_ca
    if cert is None and key is None:
        if ca is not None:
            raise TLSConfigError("CURSORGATE_GRPC_TLS_CA needs CURSORGATE_GRPC_TLS_CERT and _KEY on core.")
        return None
    if cert is None or key is None:
        raise TLSConfigError("Set both CURSORGATE_GRPC_TLS_CERT and CURSORGATE_GRPC_TLS_KEY.")
    pair = (_read(key, "CURSORGATE_GRPC_TLS_KEY"), _read(cert, "CURSORGATE_GRPC_TLS_CERT"))
    roots = _read(ca, "CURSORGATE_GRPC_TLS_CA") if ca is not None else None
    return grpc.ssl_server_credentials([pair], root_certificates=roots, require_client_auth=roots is not None)


def channel_credentials(settings: CoreSettings) -> grpc.ChannelCredentials | None:
    """For core's own clients (`cursorgate token-extract --add`): the same files, as a client."""
    cert, key, ca = settings.grpc_tls_cert, settings.grpc_tls_key, settings.grpc_tls_ca
    if cert is None and ca is None:
        return None
    return grpc.ssl_channel_credentials(
        root_certificates=_read(ca, "CURSORGATE_GRPC_TLS_CA") if ca is not None else None,
        private_key=_read(key, "CURSORGATE_GRPC_TLS_KEY") if key is not None and cert is not None else None,
        certificate_chain=_read(cert, "CURSORGATE_GRPC_TLS_CERT")
        if key is not None and cert is not None
        else None,
    )


def is_loopback(host: str) -> bool:
    if host in ("localhost", "ip6-localhost"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def warn_if_exposed(settings: CoreSettings, tls: bool) -> None:
    if tls or is_loopback(settings.grpc_host):
        return
    log.warning(
        "!!! core's gRPC port %s is bound beyond loopback WITHOUT TLS: licenses and the admin key "
        "cross the network in clear text. Set CURSORGATE_GRPC_TLS_CERT and CURSORGATE_GRPC_TLS_KEY "
        "(and CURSORGATE_GRPC_TLS_CA for mutual TLS), or bind CURSORGATE_GRPC_HOST=127.0.0.1. !!!",
        settings.grpc_address,
    )
