"""Runs a chat on the account pool: pick an account, fail over while nothing reached the caller."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from typing import Protocol

from core.accounts import Account, AccountPool
from core.admission import overloaded
from core.errors import Code, GatewayError
from core.tracing import UpstreamSpan
from core.upstream.errors import Failure, UpstreamError
from cursorgate.v1 import chat_pb2

log = logging.getLogger("cursorgate.router")

# Pause before retrying after a transport failure (connection refused/reset, 503), times the attempt.
RETRY_BACKOFF_S = 0.05
# Failures one request causes by itself: they never touch the account's state.
CALLER_FAULTS = frozenset({Failure.BAD_REQUEST, Failure.TOO_LARGE})


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
        # Upstream streams one account carries at once (0: no limit; core/admission.py).
        self.max_per_account = max_per_account

    async def stream(
        self, request: chat_pb2.ChatRequest, time_remaining: float | None
    ) -> AsyncIterator[chat_pb2.ChatEvent]:
        last: UpstreamError | None = None
        tried: set[str] = set()
        renewed: set[str] = set()
        for attempt in range(self.attempts):
            account = self._pick(request.model, tried, last)
            if account is None:
                break
            if attempt and last is not None and last.failure is Failure.UNAVAILABLE:
                await asyncio.sleep(RETRY_BACKOFF_S * attempt)
            tried.add(account.id)
            started = False
            token_used = account.token
            attempt_attributes = {
                "cursorgate.account_id": account.id,
                "cursorgate.model": request.model,
                "cursorgate.attempt": attempt + 1,
            }
            with self.pool.lease(account), UpstreamSpan(attempt_attributes):
                try:
                    events = self.upstream.stream_chat(account, request, time_remaining)
                    async with contextlib.aclosing(events):  # type: ignore[type-var]
                        async for event in events:
                            started = True
                            yield event
                    return
                except UpstreamError as err:
                    if not started and await self._renewed(account, err, token_used, renewed):
                        tried.discard(account.id)  # the same account again, with its new token
                        last = err
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

    def _pick(self, model: str, tried: set[str], last: UpstreamError | None) -> Account | None:
        """An account not tried yet; after a transport failure, a tried one will do (the fault
        was the connection's, not the account's). Candidates are re-read each attempt, so an
        account disabled or cooled down by the last failure is skipped."""
        candidates = self.pool.candidates(model)
        if self.max_per_account:
            candidates = [a for a in candidates if a.in_flight < self.max_per_account]
        fresh = [a for a in candidates if a.id not in tried]
        if fresh:
            return fresh[0]
        if candidates and (last is None or last.failure is Failure.UNAVAILABLE):
            return candidates[0]
        return None

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
                "Every Cursor account that offers this model is cooling down; retry later.",
                retry_after_ms=int(wait * 1000),
            )
        return GatewayError(
            Code.ERROR_CODE_NO_ACCOUNT_AVAILABLE,
            f"No enabled Cursor account offers the model '{model}'.",
        )
