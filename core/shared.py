"""Account cooldowns shared across core replicas through Redis (`CURSORGATE_REDIS_URL`), so that a
rate limit one replica met is honoured by all at once instead of each finding it out upstream.

Each cool-down is published on a channel that every replica listens to. A replica that starts
later reads the cooldowns from the shared store, which has them persisted within a second. Redis
being away never fails a request: cooldowns then stay per replica until the store's periodic
sync carries them over. Without a URL nothing here runs: one machine keeps the in-process pool.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
from typing import Any, Final

from redis.asyncio import Redis
from redis.exceptions import RedisError

from core.accounts import Account, AccountPool

log = logging.getLogger("cursorgate.shared")

CHANNEL: Final = "cursorgate:cooldowns"
# Seconds before resubscribing after Redis went away, doubling up to the cap while it stays away.
RESUBSCRIBE_S: Final = 1.0
RESUBSCRIBE_MAX_S: Final = 30.0


class SharedCooldowns:
    """Publishes this replica's cool-downs and applies the other replicas' to the local pool."""

    def __init__(self, url: str, pool: AccountPool) -> None:
        self.redis: Redis = Redis.from_url(url)
        self.pool = pool
        # Our own messages come back on the channel: skip them by this id.
        self.replica = secrets.token_hex(8)
        self._listener: asyncio.Task[None] | None = None
        self._writes: set[asyncio.Task[None]] = set()
        self._subscribed = asyncio.Event()

    async def start(self) -> None:
        self.pool.on_cool_down = self.publish
        self._listener = asyncio.create_task(self._listen(), name="shared-cooldowns")
        with contextlib.suppress(TimeoutError):  # serve anyway: Redis may come later
            async with asyncio.timeout(5):
                await self._subscribed.wait()

    def publish(self, account: Account, reason: str) -> None:
        """AccountPool.on_cool_down: pass this replica's cool-down on, in the background."""
        task = asyncio.get_running_loop().create_task(self._write(account.id, account.cooldown_until, reason))
        self._writes.add(task)
        task.add_done_callback(self._writes.discard)

    async def _write(self, account_id: str, until: float, reason: str) -> None:
        payload = json.dumps(
            {"replica": self.replica, "account": account_id, "until": until, "reason": reason}
        )
        try:
            await self.redis.publish(CHANNEL, payload)
        except RedisError as err:
            log.warning("shared cooldowns: publishing failed (%s)", type(err).__name__)

    def _apply(self, data: dict[str, Any]) -> None:
        if data.get("replica") == self.replica:
            return
        if self.pool.cool_down_from_peer(str(data["account"]), float(data["until"]), str(data["reason"])):
            log.info("account %s cooled down by another replica", data["account"])

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
                                log.warning("shared cooldowns: ignored a malformed message")
            except RedisError as err:
                log.warning(
                    "shared cooldowns: no subscription (%s); retry in %.0f s", type(err).__name__, delay
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, RESUBSCRIBE_MAX_S)

    async def aclose(self) -> None:
        if self._listener is not None:
            self._listener.cancel()
            await asyncio.gather(self._listener, return_exceptions=True)
        await asyncio.gather(*self._writes, return_exceptions=True)
        await self.redis.aclose()
