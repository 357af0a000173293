"""Runs a chat on the account pool: pick an account, fail over while nothing reached the caller."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
from collections.abc import AsyncIterator, Callable
from typing import Protocol

from core.errors import Code, GatewayError
from core.observability.tracing import UpstreamSpan
from core.pool.accounts import Account, AccountPool
from core.pool.admission import overloaded
from core.pool.proxies import mask_proxy, reachable
from core.upstream.errors import Failure, UpstreamError
from cursorgate.v1 import chat_pb2

log = logging.getLogger("cursorgate.router")

# Pause before retrying after a transport failure (connection refused/reset, 503), times the attempt.
RETRY_BACKOFF_S = 0.05
# Failures one request causes by itself: they never touch the account's state.
CALLER_FAULTS = frozenset({Failure.BAD_REQUEST, Failure.TOO_LARGE})
# Failures a dead proxy shows as (nothing connects, or nothing comes back).
PROXY_SYMPTOMS = frozenset({Failure.UNAVAILABLE, Failure.TIMEOUT})
MAX_AFFINITY_KEY = 200


async def backoff(seconds: float) -> None:
    """The pause before retrying after a transport failure; the unit tests replace this seam, not
    asyncio.sleep, which every task on the loop shares."""
    await asyncio.sleep(seconds)


def affinity_key(request: chat_pb2.ChatRequest) -> str:
    """What identifies the conversation: the caller's key (OpenAI `prompt_cache_key`/`user`,
    Anthropic `metadata.user_id`, passed by the facade), else a hash of the conversation's start
    (its leading system messages and the first message after them), which every later request of
    the same conversation repeats."""
    if request.affinity_key:
        return "key:" + request.affinity_key[:MAX_AFFINITY_KEY]
    digest = hashlib.sha256()
    for message in request.messages:
        digest.update(message.SerializeToString(deterministic=True))
        digest.update(b"\x00")
        if message.role != chat_pb2.ROLE_SYSTEM:
            break
    return "start:" + digest.hexdigest()


class ChatUpstream(Protocol):
    def stream_chat(
        self, account: Account, request: chat_pb2.ChatRequest, time_remaining: float | None
    ) -> AsyncIterator[chat_pb2.ChatEvent]: ...


class TokenRenewer(Protocol):
    async def renew(self, account: Account, *, seen_token: str | None = None) -> bool: ...


class Router:
    def __init__(
        self,
        pool: AccountPool,
        upstream: ChatUpstream,
        attempts: int,
        renewer: TokenRenewer | None = None,
        on_failure: Callable[[Failure], None] | None = None,
        max_per_account: int = 0,
    ) -> None:
        self.pool = pool
        self.upstream = upstream
        self.attempts = max(1, attempts)
        self.renewer = renewer
        # Told of every failed attempt (the upstream error metric).
        self.on_failure = on_failure
        # Upstream streams one account carries at once (0: no limit; core/pool/admission.py).
        self.max_per_account = max_per_account

    async def stream(
        self, request: chat_pb2.ChatRequest, time_remaining: float | None
    ) -> AsyncIterator[chat_pb2.ChatEvent]:
        last: UpstreamError | None = None
        tried: set[str] = set()
        renewed: set[str] = set()
        key = affinity_key(request) if self.pool.affinity and request.messages else ""
        for attempt in range(self.attempts):
            choices = self._choices(request.model, tried, last, key)
            if not choices:
                break
            if attempt and last is not None and last.failure is Failure.UNAVAILABLE:
                await backoff(RETRY_BACKOFF_S * attempt)
            started = False
            # The pool picks among the choices by calls in flight (over all replicas with Redis).
            async with self.pool.lease_least_loaded(choices) as account:
                tried.add(account.id)
                token_used = account.token
                attempt_attributes = {
                    "cursorgate.account_id": account.id,
                    "cursorgate.model": request.model,
                    "cursorgate.attempt": attempt + 1,
                }
                with UpstreamSpan(attempt_attributes):
                    try:
                        events = self.upstream.stream_chat(account, request, time_remaining)
                        async with contextlib.aclosing(events):  # type: ignore[type-var]
                            async for event in events:
                                if not started:
                                    started = True
                                    self.pool.remember(key, account)
                                yield event
                        return
                    except UpstreamError as err:
                        if not started and await self._renewed(account, err, token_used, renewed):
                            tried.discard(account.id)  # the same account again, with its new token
                            last = err
                            continue
                        if not started and await self._proxy_failed(account, err):
                            # The proxy's fault: the account is left as it was, and with no other
                            # account left the answer says when the proxy is tried again.
                            last = None
                            continue
                        self._record(account, err)
                        if started or not err.retryable:
                            raise
                        log.warning(
                            "account %s failed before first byte (%s); failing over",
                            account.id,
                            err.failure.value,
                        )
                        last = err
        if last is not None:
            raise last
        if self.max_per_account and self.pool.candidates(request.model):
            # There are accounts for the model, and every one carries all it may.
            raise overloaded(f"{self.max_per_account} streams per account", 1.0)
        raise self._no_account(request.model)

    async def _renewed(
        self, account: Account, err: UpstreamError, token_used: str, renewed: set[str]
    ) -> bool:
        """On an auth failure, the account's token is renewed once before the account is given up."""
        if err.failure is not Failure.AUTH or self.renewer is None or account.id in renewed:
            return False
        renewed.add(account.id)
        return await self.renewer.renew(account, seen_token=token_used)

    async def _proxy_failed(self, account: Account, err: UpstreamError) -> bool:
        """A transport failure of an account with its own proxy, when that proxy does not even
        accept a connection: the proxy is marked down (its accounts are skipped until its retry
        time) and the account is not penalised. The request fails over to another account, never
        around the proxy: an operator sets one for a reason (region, egress policy)."""
        if not account.proxy or err.failure not in PROXY_SYMPTOMS:
            return False
        if await reachable(account.proxy):
            return False
        if self.on_failure is not None:
            self.on_failure(err.failure)
        reason = f"the proxy refused or did not answer a connection ({err.failure.value})"
        self.pool.proxies.mark_down(account.proxy, reason)
        log.warning(
            "account %s: proxy %s is down; failing over to another account",
            account.id,
            mask_proxy(account.proxy),
        )
        return True

    def _choices(
        self, model: str, tried: set[str], last: UpstreamError | None, key: str = ""
    ) -> list[Account]:
        """The accounts this attempt may take, all equally good, for the pool to pick the least
        loaded of: not tried yet; after a transport failure, tried ones will do (the fault was the
        connection's, not the account's). Candidates are re-read each attempt, so an
        account disabled or cooled down by the last failure is skipped."""
        candidates = self.pool.candidates(model, key)
        if self.max_per_account:
            candidates = [a for a in candidates if a.in_flight < self.max_per_account]
        fresh = [a for a in candidates if a.id not in tried]
        if fresh:
            return self._as_good_as_first(fresh, key)
        if candidates and (last is None or last.failure is Failure.UNAVAILABLE):
            return self._as_good_as_first(candidates, key)
        return []

    def _as_good_as_first(self, ordered: list[Account], key: str) -> list[Account]:
        """Load may only choose between equals: the conversation's own account stands alone
        (affinity), and an account near its plan limit never ties with one that is not."""
        first = ordered[0]
        if key and self.pool.affine_account(key) == first.id:
            return [first]
        near = self.pool.near_limit(first)
        return [a for a in ordered if self.pool.near_limit(a) == near]

    def _record(self, account: Account, err: UpstreamError) -> None:
        """What a failure means for the account. Only failures about the account itself change
        its state; one caused by the request or by the model never penalises it for everyone."""
        if self.on_failure is not None:
            self.on_failure(err.failure)
        if err.failure in CALLER_FAULTS:
            return  # the request's fault, not the account's: nothing to hold against it
        if err.failure is Failure.AUTH:
            self.pool.disable(account, f"Cursor rejected the token: {err.message}")
        elif err.failure is Failure.ACCOUNT_BLOCKED:
            self.pool.disable(account, err.message)
        elif err.failure in (Failure.RATE_LIMITED, Failure.USAGE_LIMIT):
            self.pool.cool_down(account, err.retry_after_s, f"{err.failure.value}: {err.message}")
        else:
            self.pool.record_error(account, f"{err.failure.value}: {err.message}")

    def _no_account(self, model: str) -> GatewayError:
        wait = self.pool.next_available_in(model)
        if wait > 0:
            return GatewayError(
                Code.ERROR_CODE_RATE_LIMITED,
                "Every Cursor account that offers this model is cooling down (or behind a proxy that "
                "is down); retry later.",
                retry_after_ms=int(wait * 1000),
            )
        return GatewayError(
            Code.ERROR_CODE_NO_ACCOUNT_AVAILABLE,
            f"No enabled Cursor account offers the model '{model}'.",
        )
