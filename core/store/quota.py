"""Uses of licenses with a request quota, counted in the store before the request is served, so
that no crash of core (and no number of replicas) lets a license past its quota.

The alternative, reserving a block of uses and handing them out from memory, saves writes but
loses the unused part of the block on every crash; a crashing core would then eat the quota
instead of exceeding it. One conditional UPDATE per request is exact, and only licenses with a
quota pay it; the others are counted in memory and flushed by the journal.
"""

from __future__ import annotations

import logging

from core.errors import Code, GatewayError
from core.licensing.licenses import License
from core.store.journal import Journal
from core.store.repo import Store

log = logging.getLogger("cursorgate.store")

STORE_RETRY_MS = 1000


class QuotaLedger:
    def __init__(self, store: Store, journal: Journal) -> None:
        self.store = store
        self.journal = journal

    async def charge(self, lic: License) -> bool:
        """True when one more use fits the quota and is now stored; False when it is used up."""
        pending = self.journal.pending_usage(lic.id)
        try:
            stored = await self.store.charge_license(lic.id, pending)
        except Exception as err:
            # Serving without counting could exceed the quota: refuse, retryably.
            log.warning("could not count a use of license %s (%s)", lic.id, type(err).__name__)
            raise GatewayError(
                Code.ERROR_CODE_STORE_UNAVAILABLE,
                "The gateway could not record this request against the license's quota; retry shortly.",
                retry_after_ms=STORE_RETRY_MS,
            ) from None
        if stored is None:
            lic.requests_used = max(lic.requests_used, lic.request_quota or 0)
            return False
        # stored + pending already counts this use (and every other one so far); adding one to
        # the in-memory figure instead would count twice when concurrent charges finish out of
        # order (a refusal may already have raised it to the quota).
        lic.requests_used = max(lic.requests_used, stored + pending)
        return True
