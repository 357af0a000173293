"""Re-reads the store now and then, so that with several core replicas on one PostgreSQL an
admin change made through one replica reaches the others (licenses and model aliases fully;
accounts as additions, removals and their admin settings: label, client version, dialect pin
and proxy; their runtime state is each replica's own)."""

from __future__ import annotations

import asyncio
import logging
import time

from core.chat.aliases import AliasError, AliasTable
from core.licensing.licenses import LicenseRegistry
from core.pool.accounts import AccountPool
from core.store.journal import Journal
from core.store.repo import Store

log = logging.getLogger("cursorgate.store")


async def sync_once(
    store: Store,
    licenses: LicenseRegistry,
    pool: AccountPool,
    journal: Journal,
    aliases: AliasTable | None = None,
) -> None:
    read_at = time.time()
    for stored in await store.licenses():
        current = licenses.get(stored.id)
        if current is None:
            licenses.put(stored)
            continue
        current.name = stored.name
        current.allowed_models = stored.allowed_models
        current.expires_at = stored.expires_at
        current.request_quota = stored.request_quota
        current.rpm_limit, current.tpm_limit = stored.rpm_limit, stored.tpm_limit
        if current.budget_period != stored.budget_period:
            current.budget_period_start = 0.0  # another period: counted afresh from what is stored
        current.token_budget, current.budget_period = stored.token_budget, stored.budget_period
        # The budget count of the newest period: every replica's flushed tokens and our unflushed.
        if stored.budget_period_start > current.budget_period_start:
            current.budget_used = stored.budget_used
            current.budget_period_start = stored.budget_period_start
        elif stored.budget_period_start == current.budget_period_start:
            current.budget_used = max(
                current.budget_used,
                stored.budget_used + journal.pending_budget(stored.id, stored.budget_period_start),
            )
        if stored.revoked:
            current.revoked, current.revoked_at = True, stored.revoked_at
        elif current.revoked and (current.revoked_at or 0.0) < read_at:
            # Enabled again through another replica. A revocation made here while the store was
            # being read is newer than what was read, and stands.
            current.revoked, current.revoked_at = False, None
        # Counts only grow: the store has every replica's flushed uses, memory our unflushed ones.
        current.requests_used = max(
            current.requests_used, stored.requests_used + journal.pending_usage(stored.id)
        )
    accounts = await store.accounts()
    known = {a.id for a in accounts}
    for account in accounts:
        held = pool.get(account.id)
        if held is None:
            pool.add(account)
            continue
        held.label, held.client_version = account.label, account.client_version
        held.dialect, held.proxy = account.dialect, account.proxy
    for account in pool.all():
        if account.id not in known:
            pool.remove(account.id)
    if aliases is not None:
        try:
            aliases.replace_admin(await store.aliases())
        except AliasError as err:  # another replica's env closes a cycle with it: keep ours
            log.warning("stored aliases not applied: %s", err)


async def sync_forever(
    store: Store,
    licenses: LicenseRegistry,
    pool: AccountPool,
    journal: Journal,
    interval: float,
    aliases: AliasTable | None = None,
) -> None:
    while True:
        await asyncio.sleep(interval)
        try:
            await sync_once(store, licenses, pool, journal, aliases)
        except Exception as err:  # the store may be briefly unreachable; memory keeps serving
            log.warning("store sync failed (%s)", type(err).__name__)
