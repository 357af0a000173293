"""Gateway licenses: the API keys callers present. Only hashes are kept.

The registry is core's in-memory cache: loaded from the store at start, updated by the admin
API, so the hot path never waits on the database. Usage counts reach the store through the
journal (`on_use`), except for licenses with a quota: those are charged in the store before the
request is served (`charge`, core/store/quota.py), so a crash cannot forget them.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field

from core.errors import Code, GatewayError
from core.licensing.secrets import hash_key, keys_equal


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
    # The key's first characters, for display.
    key_prefix: str = ""
    revoked_at: float | None = None
    # Rate limits and a token budget (core/licensing/limits.py); None: unlimited.
    rpm_limit: int | None = None
    tpm_limit: int | None = None
    token_budget: int | None = None
    # "day", "week" or "month" (UTC calendar periods); "" without a budget.
    budget_period: str = ""
    # Tokens used in the period that began at budget_period_start (Unix seconds).
    budget_used: int = 0
    budget_period_start: float = 0.0

    def allows(self, model: str) -> bool:
        return self.allowed_models is None or model in self.allowed_models

    def admits(self, model: str, via: Sequence[str] = ()) -> bool:
        """`via`: the aliases a request went through to reach `model`. The allow-list admits it
        when it names the model or one of them: an alias never opens a model the list does not
        name, unless the operator listed the alias itself."""
        return self.allows(model) or any(self.allows(name) for name in via)


UNAUTHENTICATED_MESSAGE = "Invalid or missing license. Pass it as 'Authorization: Bearer <license>'."
QUOTA_MESSAGE = "This license's request quota is used up."
SEED_NAME = "from CURSORGATE_LICENSES"


def key_prefix(key: str) -> str:
    """Enough of a key to recognise it in a list (`sk-cg-AbCd`), far too little to use it.

    At most a quarter of the key: operators may seed short keys of their own choosing."""
    return key[: min(10, len(key) // 4)]


def seed_license(key: str) -> License:
    """A CURSORGATE_LICENSES key; its id follows from the key, so seeding is idempotent."""
    digest = hash_key(key)
    return License(id=f"env-{digest[:12]}", key_hash=digest, name=SEED_NAME, key_prefix=key_prefix(key))


class LicenseRegistry:
    """Looks licenses up by hash and compares in constant time."""

    def __init__(
        self,
        licenses: Iterable[License] = (),
        on_use: Callable[[License], None] | None = None,
        max_concurrent: int = 0,
        charge: Callable[[License], Awaitable[bool]] | None = None,
    ) -> None:
        self._by_hash: dict[str, License] = {}
        self.on_use = on_use
        # Durable counting for licenses with a quota: True when the use fits and is stored.
        self.charge = charge
        # Requests one license may have open at once (0: no limit); counts live in this process.
        self.max_concurrent = max_concurrent
        self._in_flight: dict[str, int] = {}
        for lic in licenses:
            self.put(lic)

    @classmethod
    def from_keys(cls, keys: Iterable[str]) -> LicenseRegistry:
        return cls(seed_license(k) for k in keys)

    def put(self, lic: License) -> None:
        self._by_hash[lic.key_hash] = lic

    def replace_all(self, licenses: Iterable[License]) -> None:
        self._by_hash = {lic.key_hash: lic for lic in licenses}

    def get(self, license_id: str) -> License | None:
        return next((lic for lic in self._by_hash.values() if lic.id == license_id), None)

    def all(self) -> list[License]:
        return sorted(self._by_hash.values(), key=lambda lic: lic.created_at)

    def __len__(self) -> int:
        return len(self._by_hash)

    def identify(self, credential: str | None) -> License | None:
        """The license a key belongs to, whatever its state (revoked, expired): for the request
        log, which names the license a refused call presented. Checks nothing else."""
        if credential is None:
            return None
        digest = hash_key(credential)
        lic = self._by_hash.get(digest)
        return lic if lic is not None and keys_equal(lic.key_hash, digest) else None

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

    def authorize(self, lic: License, model: str, via: Sequence[str] = ()) -> None:
        if not lic.admits(model, via):
            shown = f"'{via[0]}' (served by '{model}')" if via else f"'{model}'"
            raise GatewayError(
                Code.ERROR_CODE_MODEL_NOT_ALLOWED,
                f"This license may not use the model {shown}.",
                param="model",
            )
        if lic.request_quota is not None and lic.requests_used >= lic.request_quota:
            raise GatewayError(Code.ERROR_CODE_QUOTA_EXCEEDED, QUOTA_MESSAGE)

    @contextlib.contextmanager
    def slot(self, lic: License) -> Iterator[None]:
        """Holds one of the license's concurrent-request slots for the duration of a request."""
        open_now = self._in_flight.get(lic.id, 0)
        if self.max_concurrent and open_now >= self.max_concurrent:
            raise GatewayError(
                Code.ERROR_CODE_RATE_LIMITED,
                f"Too many concurrent requests for this license (at most {self.max_concurrent}).",
                retry_after_ms=1000,
            )
        self._in_flight[lic.id] = open_now + 1
        try:
            yield
        finally:
            left = self._in_flight[lic.id] - 1
            if left:
                self._in_flight[lic.id] = left
            else:
                del self._in_flight[lic.id]

    async def use(self, lic: License) -> None:
        """Counts one admitted request before it is served: durably first when it has a quota."""
        if lic.request_quota is not None and self.charge is not None:
            if not await self.charge(lic):
                raise GatewayError(Code.ERROR_CODE_QUOTA_EXCEEDED, QUOTA_MESSAGE)
            return
        self.record_use(lic)

    def record_use(self, lic: License) -> None:
        """Counts one admitted request (in memory now, in the store soon)."""
        lic.requests_used += 1
        if self.on_use is not None:
            self.on_use(lic)
