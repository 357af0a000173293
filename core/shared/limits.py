"""Per-license rate limits and token budgets counted in Redis (`CURSORGATE_REDIS_URL`), so that a
limit holds across core replicas: the same rules as core/licensing/limits.py, checked and reserved by one
Lua script (atomic in Redis) and settled by another.

Per license: a sorted set of admissions (RPM), one of token entries `id:tokens` (TPM), both
scored by time on Redis' clock; the current budget period's used tokens (a counter whose key
names the period, so a new period starts from 0) and its reservations in flight, scored by
expiry so a dead replica's reservations come back. The budget counter is seeded from the
database, which keeps the real usage (through the journal) and so survives Redis and restarts.
Redis being away never fails a request: this replica then counts in process (LocalLimits).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Final

from redis.asyncio import Redis
from redis.exceptions import RedisError

from core.licensing.licenses import License
from core.licensing.limits import (
    WINDOW_S,
    LocalLimits,
    Reservation,
    budget_exhausted,
    has_limits,
    period_end,
    roll_budget,
    rpm_exceeded,
    tpm_exceeded,
)

log = logging.getLogger("cursorgate.limits")

PREFIX: Final = "cursorgate:limits:"
# A budget counter outlives its period by this much (then Redis drops it).
BUDGET_KEY_GRACE_S: Final = 86_400.0

# KEYS: requests, tokens, budget used, budget reservations.
# ARGV: reservation id, rpm (0: none), tpm (0: none), budget (-1: none), estimate, budget seed
#       (the stored count, for a period Redis has no counter of), budget key ttl (ms),
#       reservation ttl (ms), window (ms).
# Returns {0, 0} when admitted, else {1 rpm | 2 tpm | 3 budget, retry delay in ms}.
_ADMIT: Final = """
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
local window = tonumber(ARGV[9])
local id, rpm, tpm, budget = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local est = tonumber(ARGV[5])
local function tokens(member) return tonumber(string.match(member, ':(%d+)$')) end
if rpm > 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
  if redis.call('ZCARD', KEYS[1]) >= rpm then
    local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
    return {1, tonumber(oldest[2]) + window - now}
  end
end
if tpm > 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now - window)
  if est > tpm then return {2, window} end
  local entries = redis.call('ZRANGE', KEYS[2], 0, -1, 'WITHSCORES')
  local used = 0
  for i = 1, #entries, 2 do used = used + tokens(entries[i]) end
  if used + est > tpm then
    for i = 1, #entries, 2 do
      used = used - tokens(entries[i])
      if used + est <= tpm then return {2, tonumber(entries[i + 1]) + window - now} end
    end
    return {2, window}
  end
end
if budget >= 0 then
  redis.call('SET', KEYS[3], ARGV[6], 'NX', 'PX', ARGV[7])
  redis.call('ZREMRANGEBYSCORE', KEYS[4], '-inf', now)
  local used = tonumber(redis.call('GET', KEYS[3]))
  for _, member in ipairs(redis.call('ZRANGE', KEYS[4], 0, -1)) do used = used + tokens(member) end
  if used + est > budget then return {3, 0} end
  redis.call('ZADD', KEYS[4], now + tonumber(ARGV[8]), id .. ':' .. est)
  redis.call('PEXPIRE', KEYS[4], ARGV[7])
end
if rpm > 0 then
  redis.call('ZADD', KEYS[1], now, id)
  redis.call('PEXPIRE', KEYS[1], 2 * window)
end
if tpm > 0 then
  redis.call('ZADD', KEYS[2], now, id .. ':' .. est)
  redis.call('PEXPIRE', KEYS[2], 2 * window)
end
return {0, 0}
"""

# KEYS: tokens, budget used, budget reservations. ARGV: reservation id, estimate, tokens used,
# budget key ttl (ms; 0: no budget). Returns the period's used tokens (-1 without a budget).
_SETTLE: Final = """
local held = ARGV[1] .. ':' .. ARGV[2]
local at = redis.call('ZSCORE', KEYS[1], held)
if at then
  redis.call('ZREM', KEYS[1], held)
  redis.call('ZADD', KEYS[1], at, ARGV[1] .. ':' .. ARGV[3])
end
if tonumber(ARGV[4]) == 0 then return -1 end
redis.call('ZREM', KEYS[3], held)
local used = redis.call('INCRBY', KEYS[2], ARGV[3])
redis.call('PEXPIRE', KEYS[2], ARGV[4])
return used
"""

# KEYS: budget used. Returns the counter, or -1 when this period has none yet.
_USED: Final = """
local used = redis.call('GET', KEYS[1])
if used then return tonumber(used) end
return -1
"""


def _keys(lic: License, budget_start: float) -> list[str]:
    base = f"{PREFIX}{lic.id}"
    period = f"{lic.budget_period}:{int(budget_start)}"
    return [f"{base}:rpm", f"{base}:tpm", f"{base}:budget:{period}", f"{base}:reserved:{period}"]


class SharedLimits:
    """Limits counted in Redis; in process (`local`) while Redis is away."""

    def __init__(self, redis: Redis, local: LocalLimits, reservation_ttl_s: float) -> None:
        self.redis = redis
        self.local = local
        self.clock = local.clock
        # A reservation of a replica that died is dropped after this long (the longest a call runs).
        self.reservation_ttl_ms = max(1000, int(reservation_ttl_s * 1000))
        self._admit = redis.register_script(_ADMIT)
        self._settle = redis.register_script(_SETTLE)
        self._used = redis.register_script(_USED)
        self._settling: set[asyncio.Task[None]] = set()

    def _budget_ttl_ms(self, lic: License, start: float, now: float) -> int:
        return max(1000, int((period_end(lic.budget_period, start) - now + BUDGET_KEY_GRACE_S) * 1000))

    async def admit(self, lic: License, estimate: int) -> Reservation | None:
        if not has_limits(lic):
            return None
        now = self.clock()
        start = roll_budget(lic, now) if lic.token_budget is not None else 0.0
        reservation = Reservation(lic, estimate, budget_start=start, shared=True)
        args: list[str | int | float] = [
            reservation.id,
            lic.rpm_limit or 0,
            lic.tpm_limit or 0,
            lic.token_budget if lic.token_budget is not None else -1,
            estimate,
            lic.budget_used,
            self._budget_ttl_ms(lic, start, now) if start else 1000,
            self.reservation_ttl_ms,
            int(WINDOW_S * 1000),
        ]
        try:
            verdict, retry_ms = await self._admit(keys=_keys(lic, start), args=args)
        except RedisError as err:
            log.warning("shared limits: Redis failed (%s); counting in this process", type(err).__name__)
            return self.local.reserve(lic, estimate)
        if verdict == 1:
            raise rpm_exceeded(lic.rpm_limit or 0, int(retry_ms))
        if verdict == 2:
            raise tpm_exceeded(lic.tpm_limit or 0, estimate, int(retry_ms))
        if verdict == 3:
            raise budget_exhausted(lic, period_end(lic.budget_period, start), now)
        return reservation

    def settle(self, reservation: Reservation, tokens: int) -> None:
        """Settles in the background: the call has ended and must not wait on Redis."""
        if not reservation.shared:
            self.local.settle(reservation, tokens)
            return
        if reservation.settled:
            return
        reservation.settled = True
        task = asyncio.get_running_loop().create_task(self._write(reservation, tokens))
        self._settling.add(task)
        task.add_done_callback(self._settling.discard)

    async def _write(self, reservation: Reservation, tokens: int) -> None:
        lic, start = reservation.license, reservation.budget_start
        ttl = self._budget_ttl_ms(lic, start, self.clock()) if start else 0
        try:
            used = await self._settle(
                keys=_keys(lic, start)[1:], args=[reservation.id, reservation.estimate, tokens, ttl]
            )
        except RedisError as err:
            # The estimate stays in the window (it ages out); the database still gets the usage.
            log.warning("shared limits: settling failed (%s)", type(err).__name__)
            used = -1
        if start:
            if used >= 0 and lic.budget_period_start == start:
                lic.budget_used = int(used)
            elif lic.budget_period_start == start:
                lic.budget_used += tokens
            if tokens and self.local.on_budget is not None:
                self.local.on_budget(lic, start, tokens)

    async def budget_used(self, lic: License) -> int:
        if lic.token_budget is None:
            return lic.budget_used
        start = roll_budget(lic, self.clock())
        try:
            used = int(await self._used(keys=[_keys(lic, start)[2]]))
        except RedisError:
            return lic.budget_used
        if used >= 0:
            lic.budget_used = used
        return lic.budget_used

    async def aclose(self) -> None:
        await asyncio.gather(*self._settling, return_exceptions=True)
