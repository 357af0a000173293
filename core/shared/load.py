"""Per-account in-flight counts shared across core replicas through Redis, so least-loaded routing
sees every replica's calls: the pick of an account and the lease on it are one atomic script.

Each account has a sorted set of leases (member: lease id, score: expiry in ms on Redis' clock).
A lease lives while its call runs and is renewed by this replica's heartbeat; a replica that dies
stops renewing, so its leases drop out after CURSORGATE_REDIS_SLOT_TTL and the counts come back.
Redis being away never fails a request: the pool's own order (this replica's counts) decides.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import AsyncIterator, Sequence
from typing import Final

from redis.asyncio import Redis
from redis.exceptions import RedisError

from core.pool.accounts import Account
from core.shared.state import RENEW_LEASES

log = logging.getLogger("cursorgate.shared")

# One hash tag for every account's key: the pick script reads several at once, which Redis Cluster
# allows only within one slot.
LOAD_PREFIX: Final = "cursorgate:{inflight}:"
# A Redis call that takes longer than this is treated as Redis away (the request goes on unshared).
REDIS_WAIT_S: Final = 1.0
# KEYS: the candidates' lease sets, in this replica's order of preference (the tie-break).
# ARGV: lease id, ttl in ms. Expired leases (their replica died) are dropped first; the first
# candidate with the fewest live leases gets the new one. Returns its 1-based position.
_PICK: Final = """
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
local best, fewest = 1, nil
for i = 1, #KEYS do
  redis.call('ZREMRANGEBYSCORE', KEYS[i], '-inf', now)
  local n = redis.call('ZCARD', KEYS[i])
  if fewest == nil or n < fewest then best, fewest = i, n end
end
redis.call('ZADD', KEYS[best], now + tonumber(ARGV[2]), ARGV[1])
redis.call('PEXPIRE', KEYS[best], 2 * tonumber(ARGV[2]))
return best
"""


class SharedLoad:
    """Chooses the least-loaded account over all replicas and holds a lease on it for a call."""

    def __init__(self, redis: Redis, ttl_s: float) -> None:
        self.redis = redis
        self.ttl_ms = max(1000, int(ttl_s * 1000))
        self._pick = redis.register_script(_PICK)
        self._renew = redis.register_script(RENEW_LEASES)
        # Lease ids this replica holds, by account key: what the heartbeat renews.
        self._held: dict[str, set[str]] = {}
        self._heartbeat: asyncio.Task[None] | None = None
        self._releases: set[asyncio.Task[None]] = set()

    def start(self) -> None:
        self._heartbeat = asyncio.create_task(self._renew_forever(), name="shared-load")

    @contextlib.asynccontextmanager
    async def lease(self, choices: Sequence[Account]) -> AsyncIterator[Account]:
        """The account among `choices` (non-empty, preferred first) with the fewest calls in
        flight over all replicas, leased for the block."""
        lease_id = secrets.token_hex(8)
        keys = [f"{LOAD_PREFIX}{a.id}" for a in choices]
        position = 0
        try:
            async with asyncio.timeout(REDIS_WAIT_S):
                position = int(await self._pick(keys=keys, args=[lease_id, self.ttl_ms]))
        except (RedisError, TimeoutError) as err:
            log.warning("shared in-flight: picking failed (%s); local counts decide", type(err).__name__)
        if not 1 <= position <= len(choices):
            yield choices[0]
            return
        key = keys[position - 1]
        held = self._held.setdefault(key, set())
        held.add(lease_id)
        try:
            yield choices[position - 1]
        finally:
            held.discard(lease_id)
            if not held:
                self._held.pop(key, None)
            # In the background: a cancelled call (client gone, drain deadline) gives its lease
            # back too, and nothing waits on Redis here. If it fails, the lease expires unrenewed.
            release = asyncio.get_running_loop().create_task(self._release(key, lease_id))
            self._releases.add(release)
            release.add_done_callback(self._releases.discard)

    async def _release(self, key: str, lease_id: str) -> None:
        try:
            async with asyncio.timeout(REDIS_WAIT_S):
                await self.redis.zrem(key, lease_id)
        except (RedisError, TimeoutError) as err:
            log.warning("shared in-flight: releasing failed (%s); the lease expires", type(err).__name__)

    async def _renew_forever(self) -> None:
        while True:
            await asyncio.sleep(self.ttl_ms / 3000)
            for key, leases in list(self._held.items()):
                try:
                    async with asyncio.timeout(REDIS_WAIT_S):
                        await self._renew(keys=[key], args=[self.ttl_ms, *leases])
                except (RedisError, TimeoutError) as err:
                    log.warning("shared in-flight: renewing failed (%s)", type(err).__name__)

    async def aclose(self) -> None:
        if self._heartbeat is not None:
            self._heartbeat.cancel()
            await asyncio.gather(self._heartbeat, return_exceptions=True)
        await asyncio.gather(*self._releases, return_exceptions=True)
