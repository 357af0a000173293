"""Gateway licenses: the API keys callers present. Only hashes are kept."""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass, field

from core.errors import Code, GatewayError
from core.secrets import hash_key, keys_equal


@dataclass(slots=True)
class License:
    id: str
    key_hash: str
    name: str = ""
    # None: every model.
    allowed_models: frozenset[str] | None = None
    # Unix seconds; None: never expires.
    expires_at: float | None = None
    revoked: bool = False
    # Total requests allowed; None: unlimited.
    request_quota: int | None = None
    requests_used: int = 0
    created_at: float = field(default_factory=time.time)

    def allows(self, model: str) -> bool:
        return self.allowed_models is None or model in self.allowed_models


UNAUTHENTICATED_MESSAGE = "Invalid or missing license. Pass it as 'Authorization: Bearer <license>'."


class LicenseRegistry:
    """Looks licenses up by hash and compares in constant time."""

    def __init__(self, licenses: Iterable[License] = ()) -> None:
        self._by_hash: dict[str, License] = {}
        for lic in licenses:
            self.put(lic)

    @classmethod
    def from_keys(cls, keys: Iterable[str]) -> LicenseRegistry:
        return cls(License(id=f"env-{i}", key_hash=hash_key(k), name="from CURSORGATE_LICENSES")
                   for i, k in enumerate(keys))

    def put(self, lic: License) -> None:
        self._by_hash[lic.key_hash] = lic

    def remove(self, key_hash: str) -> None:
        self._by_hash.pop(key_hash, None)

    def __len__(self) -> int:
        return len(self._by_hash)

    def authenticate(self, credential: str | None) -> License:
        # Hashing first makes the dict lookup independent of the secret's bytes; the final
        # compare_digest guards the equality itself.
        digest = hash_key(credential or "")
        lic = self._by_hash.get(digest)
        if credential is None or lic is None or not keys_equal(lic.key_hash, digest):
            raise GatewayError(Code.ERROR_CODE_UNAUTHENTICATED, UNAUTHENTICATED_MESSAGE)
        if lic.revoked:
            raise GatewayError(Code.ERROR_CODE_UNAUTHENTICATED, "This license has been revoked.")
        if lic.expires_at is not None and lic.expires_at <= time.time():
            raise GatewayError(Code.ERROR_CODE_UNAUTHENTICATED, "This license has expired.")
        return lic

    def authorize(self, lic: License, model: str) -> None:
        if not lic.allows(model):
            raise GatewayError(
                Code.ERROR_CODE_MODEL_NOT_ALLOWED,
                f"This license may not use the model '{model}'.",
                param="model",
            )
        if lic.request_quota is not None and lic.requests_used >= lic.request_quota:
            raise GatewayError(Code.ERROR_CODE_QUOTA_EXCEEDED, "This license's request quota is used up.")
