"""State shared across core replicas through Redis (`CURSORGATE_REDIS_URL`): account cooldowns and
disables, so that a rate limit or a rejected token one replica met is honoured by all at once
instead of each finding it out upstream; proxies found down, likewise; conversation affinity
(`CURSORGATE_POOL_AFFINITY`), so a conversation keeps its account whichever replica serves its
next request; and per-license concurrency slots, so a cap of N holds across replicas.

Each cool-down and disable is published on a channel that every replica listens to. A replica that
starts later reads them from the shared store, which has them persisted within a second. Redis
being away never fails a request: account states then stay per replica until the store's periodic
sync carries them over, and slots are not limited. Slots live in one sorted set per license,
scored by expiry on Redis' clock and renewed while held, so the slots of a replica that died
come back after CURSORGATE_REDIS_SLOT_TTL.
Without a URL nothing here runs: one machine keeps the in-process pool and limiter.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, Final

from redis.asyncio import Redis
from redis.exceptions import RedisError

from core.errors import Code, GatewayError
from core.licensing.licenses import License
from core.pool.accounts import Account, AccountPool
from core.pool.proxies import mask_proxy, proxy_id

log = logging.getLogger("cursorgate.shared")

CHANNEL: Final = "cursorgate:accounts"
# Seconds before resubscribing after Redis went away, doubling up to the cap while it stays away.
RESUBSCRIBE_S: Final = 1.0
RESUBSCRIBE_MAX_S: Final = 30.0


class SharedAccounts:
    """Publishes this replica's cool-downs and disables, and applies the other replicas' here.
    Also tells the others when the admin API changed licenses or accounts in the store, so they
    read it again at once rather than at their next periodic sync."""

    def __init__(self, redis: Redis, pool: AccountPool) -> None:
        self.redis = redis
        self.pool = pool
        # Our own messages come back on the channel: skip them by this id.
        self.replica = secrets.token_hex(8)
        self._listener: asyncio.Task[None] | None = None
        self._writes: set[asyncio.Task[None]] = set()
        self._subscribed = asyncio.Event()
        # Re-reads licenses and accounts from the store (core/store/sync.py), set by the server.
        self.on_sync: Callable[[], Awaitable[None]] | None = None
        self._syncing: asyncio.Task[None] | None = None
        self._sync_again = False

    async def start(self) -> None:
        self.pool.on_shared_change = self.publish
        self.pool.proxies.on_down = self.publish_proxy_down
        if self.pool.affinity:
            self.pool.on_affinity_change = self.publish_affinity
        self._listener = asyncio.create_task(self._listen(), name="shared-accounts")
        with contextlib.suppress(TimeoutError):  # serve anyway: Redis may come later
            async with asyncio.timeout(5):
                await self._subscribed.wait()

    def publish(self, account: Account, kind: str, reason: str) -> None:
        """AccountPool.on_shared_change: pass this replica's decision on, in the background."""
        self._send(kind, account=account.id, until=account.cooldown_until, reason=reason)

    def publish_affinity(self, key: str, account_id: str) -> None:
        """AccountPool.on_affinity_change: a conversation's new account, to the others. Not stored:
        a replica that starts later learns conversations as they come (the map is a cache)."""
        self._send("affine", key=key, account=account_id)

    def publish_proxy_down(self, url: str, until: float, reason: str) -> None:
        """ProxyHealth.on_down: the others skip the proxy's accounts too, without each waiting on a
        dead proxy first. The proxy goes by a hash: its URL may carry a password."""
        self._send("proxy_down", proxy=proxy_id(url), until=until, reason=reason)

    def store_changed(self) -> None:
        """Backoffice.on_store_change: the others re-read the store (a license created or
        revoked, an account added or removed here)."""
        self._send("sync")

    def _send(self, kind: str, **fields: object) -> None:
        """Publishes one message in the background: the request that caused it does not wait on
        Redis. Every message names this replica, so that it can skip its own when they come back."""
        payload = json.dumps({"replica": self.replica, "kind": kind, **fields})
        task = asyncio.get_running_loop().create_task(self._write(payload))
        self._writes.add(task)
        task.add_done_callback(self._writes.discard)

    def _sync_soon(self) -> None:
        """One store read at a time; changes announced during it get one more read after."""
        if self._syncing is not None and not self._syncing.done():
            self._sync_again = True
            return
        self._syncing = asyncio.get_running_loop().create_task(self._sync(), name="shared-sync")

    async def _sync(self) -> None:
        while self.on_sync is not None:
            self._sync_again = False
            try:
                await self.on_sync()
            except Exception as err:  # the store may be briefly away; the periodic sync follows
                log.warning("shared accounts: store re-read failed (%s)", type(err).__name__)
            if not self._sync_again:
                return

    async def _write(self, payload: str) -> None:
        try:
            await self.redis.publish(CHANNEL, payload)
        except RedisError as err:
            log.warning("shared accounts: publishing failed (%s)", type(err).__name__)

    def _apply(self, data: dict[str, Any]) -> None:
        if data.get("replica") == self.replica:
            return
        if data["kind"] == "sync":
            self._sync_soon()
            return
        if data["kind"] == "affine":
            self.pool.remember_from_peer(str(data["key"]), str(data["account"]))
            return
        if data["kind"] == "proxy_down":
            self._proxy_down(str(data["proxy"]), float(data["until"]), str(data["reason"]))
            return
        account, reason = str(data["account"]), str(data["reason"])
        if data["kind"] == "enable":
            if self.pool.enable_from_peer(account):
                log.info("account %s enabled by another replica", account)
        elif data["kind"] == "disable":
            if self.pool.disable_from_peer(account, reason):
                log.info("account %s disabled by another replica", account)
        elif self.pool.cool_down_from_peer(account, float(data["until"]), reason):
            log.info("account %s cooled down by another replica", account)

    def _proxy_down(self, proxy: str, until: float, reason: str) -> None:
        urls = {a.proxy for a in self.pool.all() if a.proxy and proxy_id(a.proxy) == proxy}
        for url in urls:  # none: no account here uses that proxy
            if self.pool.proxies.mark_down_from_peer(url, until, reason):
                log.info("proxy %s marked down by another replica", mask_proxy(url))

    async def _listen(self) -> None:
        delay = RESUBSCRIBE_S
        while True:
            try:
                async with self.redis.pubsub() as pubsub:
                    await pubsub.subscribe(CHANNEL)
                    self._subscribed.set()
                    delay = RESUBSCRIBE_S
                    async for message in pubsub.listen():
                        if message.get("type") == "message":
                            try:
                                self._apply(json.loads(message["data"]))
                            except (ValueError, KeyError, TypeError):
                                log.warning("shared accounts: ignored a malformed message")
            except RedisError as err:
                log.warning(
                    "shared accounts: no subscription (%s); retry in %.0f s", type(err).__name__, delay
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, RESUBSCRIBE_MAX_S)

    async def aclose(self) -> None:
        if self._listener is not None:
            self._listener.cancel()
            await asyncio.gather(self._listener, return_exceptions=True)
        if self._syncing is not None:
            self._syncing.cancel()
            await asyncio.gather(self._syncing, return_exceptions=True)
        await asyncio.gather(*self._writes, return_exceptions=True)


SLOTS_PREFIX: Final = "cursorgate:slots:"
# KEYS[1]: one license's slots (member: slot id, score: expiry in ms on Redis' clock).
# ARGV: slot id, cap, ttl in ms. Expired slots (their replica died) are dropped first; all atomic.
_ACQUIRE: Final = """
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[2]) then return 0 end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[3]), ARGV[1])
redis.call('PEXPIRE', KEYS[1], 2 * tonumber(ARGV[3]))
return 1
"""
# KEYS[1]: one lease set (a license's slots, an account's in-flight leases); ARGV: ttl in ms,
# then the ids this replica still holds (XX: an expired, dropped one is not brought back).
RENEW_LEASES: Final = """
local t = redis.call('TIME')
local until_ms = t[1] * 1000 + math.floor(t[2] / 1000) + tonumber(ARGV[1])
for i = 2, #ARGV do redis.call('ZADD', KEYS[1], 'XX', until_ms, ARGV[i]) end
redis.call('PEXPIRE', KEYS[1], 2 * tonumber(ARGV[1]))
return 0
"""


class SharedSlots:
    """Per-license concurrency slots counted across replicas (CURSORGATE_LICENSE_MAX_CONCURRENT)."""

    def __init__(self, redis: Redis, cap: int, ttl_s: float) -> None:
        self.redis = redis
        self.cap = cap
        self.ttl_ms = max(1000, int(ttl_s * 1000))
        self._acquire = redis.register_script(_ACQUIRE)
        self._renew = redis.register_script(RENEW_LEASES)
        self._held: dict[str, set[str]] = {}
        self._renewer: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self.cap:
            self._renewer = asyncio.create_task(self._renew_forever(), name="shared-slots")

    @contextlib.asynccontextmanager
    async def hold(self, lic: License) -> AsyncIterator[None]:
        """One of the license's slots for the duration of a request; 429 when all are taken."""
        if not self.cap:
            yield
            return
        key, slot = f"{SLOTS_PREFIX}{lic.id}", secrets.token_hex(8)
        try:
            taken = bool(await self._acquire(keys=[key], args=[slot, self.cap, self.ttl_ms]))
        except RedisError as err:
            # Redis away: serve rather than refuse (the cap is a guard, not the service).
            log.warning("shared slots: acquiring failed (%s); not limiting", type(err).__name__)
            yield
            return
        if not taken:
            raise GatewayError(
                Code.ERROR_CODE_RATE_LIMITED,
                f"Too many concurrent requests for this license (at most {self.cap}).",
                retry_after_ms=1000,
            )
        held = self._held.setdefault(key, set())
        held.add(slot)
        try:
            yield
        finally:
            held.discard(slot)
            if not held:
                self._held.pop(key, None)
            with contextlib.suppress(RedisError):  # else it expires on its own
                await self.redis.zrem(key, slot)

    async def _renew_forever(self) -> None:
        while True:
            await asyncio.sleep(self.ttl_ms / 3000)
            for key, slots in list(self._held.items()):
                try:
                    await self._renew(keys=[key], args=[self.ttl_ms, *slots])
                except RedisError as err:
                    log.warning("shared slots: renewing failed (%s)", type(err).__name__)

    async def aclose(self) -> None:
        if self._renewer is not None:
            self._renewer.cancel()
            await asyncio.gather(self._renewer, return_exceptions=True)
