"""cursorgate.v1.AdminService: accounts, licenses and the request log, behind CURSORGATE_ADMIN_KEY."""

from __future__ import annotations

import asyncio
import logging
import re
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

import grpc
from google.protobuf import struct_pb2, timestamp_pb2
from google.protobuf.message import Message

from core.api.chat_service import metadata_value
from core.auth.cursor_auth import AuthError, Tokens, is_api_key
from core.auth.logins import AccountLogins, Login, TooManyLogins
from core.auth.renewal import Renewer
from core.chat.aliases import Alias, AliasError, Offer
from core.chat.resolve import ModelResolver
from core.config import DIALECTS
from core.licensing.licenses import License, LicenseRegistry, key_prefix
from core.licensing.limits import PERIODS, LocalLimits, period_end, period_start
from core.licensing.secrets import bearer, hash_key, keys_equal, mask, new_license
from core.pool.accounts import Account, AccountPool
from core.pool.proxies import InvalidProxy, mask_proxy, parse_proxy
from core.pool.refresh import Refresher
from core.store import Journal, Store
from core.store.repo import USAGE_GROUPS, DuplicateAccount, RequestQuery
from core.upstream.tokens import InvalidToken, jwt_claims, normalize_token
from cursorgate.v1 import admin_pb2, admin_pb2_grpc

if TYPE_CHECKING:  # imported only when Redis is configured (core/server.py)
    from core.shared.limits import SharedLimits

log = logging.getLogger("cursorgate.admin")

Req = TypeVar("Req")
Resp = TypeVar("Resp")
Context = grpc.aio.ServicerContext[Any, Any]

CLIENT_VERSION = re.compile(r"^\d{1,4}(\.\d{1,4}){1,3}$")
MAX_NAME = 200
MAX_REQUESTS = 1000
# A license may name this many models; beyond it a list of all-but-a-few is the better tool.
MAX_ALLOWED_MODELS = 200
# Usage series bucket sizes: (seconds, default span when `since` is unset), and how many
# buckets one answer may span.
BUCKETS = {"minute": (60, 3600.0), "hour": (3600, 86400.0), "day": (86400, 30 * 86400.0)}
MAX_BUCKETS = 2000
# The largest Unix time a Timestamp (and the admin page) can show: 9999-12-31T23:59:59Z.
MAX_UNIX_SECONDS = 253_402_300_799
# ImportAccounts: at most this many lines (and characters) per call.
MAX_IMPORT_LINES = 1000
MAX_IMPORT_CHARS = 4 * 1024 * 1024


class AdminError(Exception):
    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def _not_found(kind: str, ident: str) -> AdminError:
    return AdminError(grpc.StatusCode.NOT_FOUND, f"No {kind} with id '{ident[:80]}'.")


def _invalid(message: str) -> AdminError:
    return AdminError(grpc.StatusCode.INVALID_ARGUMENT, message)


@dataclass
class Backoffice:
    """What the admin API works on: core's in-memory state and the store behind it."""

    licenses: LicenseRegistry
    pool: AccountPool
    store: Store
    journal: Journal
    refresher: Refresher
    renewer: Renewer

    # Model resolution and the alias table (None: the alias RPCs answer UNIMPLEMENTED).
    resolver: ModelResolver | None = None
    # The licenses' rate limits and budgets (for the budget used now).
    limits: LocalLimits | SharedLimits | None = None
    # Seconds an admin-API login waits for the sign-in (CURSORGATE_ACCOUNT_LOGIN_TIMEOUT).
    login_timeout: float = 600.0
    # Told after licenses or accounts changed in the store, so other core replicas re-read it
    # at once (core/shared/state.py, with Redis); None: they see it at their periodic sync.
    on_store_change: Callable[[], None] | None = None

    def stored(self) -> None:
        if self.on_store_change is not None:
            self.on_store_change()


class AdminService(admin_pb2_grpc.AdminServiceServicer):
    def __init__(self, office: Backoffice, admin_key: str | None) -> None:
        self.office = office
        # Only the hash is kept: comparing hashes is constant-time whatever the lengths.
        self._key_hash = hash_key(admin_key) if admin_key else None
        self.logins = AccountLogins(office.renewer.auth, self._add_logged_in, office.login_timeout)

    async def aclose(self) -> None:
        """Cancels the logins still polling Cursor (core is stopping)."""
        await self.logins.aclose()

    def _authorize(self, context: Context) -> None:
        if self._key_hash is None:
            raise AdminError(
                grpc.StatusCode.PERMISSION_DENIED,
                "The admin API is disabled: set CURSORGATE_ADMIN_KEY on core to enable it.",
            )
        given = bearer(metadata_value(context, "authorization"))
        if given is None or not keys_equal(hash_key(given), self._key_hash):
            # Who tried (the facade, or a direct gRPC caller), never what they tried.
            log.warning("admin authentication failed from %s", context.peer())
            raise AdminError(
                grpc.StatusCode.UNAUTHENTICATED,
                "Invalid or missing admin key. Pass it as 'Authorization: Bearer <CURSORGATE_ADMIN_KEY>'.",
            )

    async def _serve(self, context: Context, handler: Callable[[Req], Awaitable[Resp]], request: Req) -> Resp:
        try:
            self._authorize(context)
            return await handler(request)
        except AdminError as err:
            await context.abort(err.code, err.message)
            raise  # unreachable: abort raises

    # --- accounts ---

    def _account(self, account_id: str) -> Account:
        account = self.office.pool.get(account_id)
        if account is None:
            raise _not_found("account", account_id)
        return account

    async def _credentials(self, request: admin_pb2.AddAccountRequest, proxy: str) -> tuple[str, str, str]:
        """(access token, refresh token, API key) from what the operator gave: a JWT or cookie
        value (optionally with its refresh token), or a `crsr_` user API key, exchanged now
        (through the account's proxy).

        A web cookie (`WorkosCursorSessionToken`, `user_...%3A%3A<jwt>`) is upgraded by taking
        the JWT after `::`: Cursor accepts that JWT as a Bearer token on its RPCs (agent-protocol.md
        §6, GO-A), so no exchange endpoint is involved; it has no refresh token and lapses at
        its `exp` unless one is given."""
        if is_api_key(request.token):
            try:
                tokens = await self.office.renewer.auth.exchange_api_key(request.token, proxy)
            except AuthError as err:
                raise _invalid(f"token: {err}") from None
            return tokens.access_token, "", request.token.strip()
        try:
            token = normalize_token(request.token)
        except InvalidToken:
            # The value itself is never echoed: it may be a real secret pasted in the wrong field.
            raise _invalid(
                "token: expected a Cursor JWT, a WorkosCursorSessionToken cookie value or a crsr_ API key."
            ) from None
        if not jwt_claims(token):
            raise _invalid("token: its middle part is not a JWT payload (base64url-encoded JSON object).")
        refresh_token = request.refresh_token.strip()
        if refresh_token and (
            len(refresh_token) > 4096 or not refresh_token.isprintable() or " " in refresh_token
        ):
            raise _invalid("refresh_token: not a refresh token (too long, or spaces/control characters).")
        return token, refresh_token, ""

    async def _new_account(self, request: admin_pb2.AddAccountRequest) -> Account:
        """Checks, stores and pools the account; its details are not fetched yet."""
        proxy = _proxy(request.proxy)
        label = _name(request.label, "label")
        client_version = _client_version(request.client_version) or None
        dialect = _dialect(request.dialect or "auto")
        token, refresh_token, api_key = await self._credentials(request, proxy)
        _check_claims(jwt_claims(token))
        existing = next((a for a in self.office.pool.all() if keys_equal(a.token, token)), None)
        if existing is not None:
            raise AdminError(
                grpc.StatusCode.ALREADY_EXISTS, f"This token is already account '{existing.id}'."
            )
        account = Account(
            id=f"acc_{secrets.token_hex(6)}",
            token=token,
            label=label,
            client_version=client_version,
            dialect=dialect,
            refresh_token=refresh_token,
            api_key=api_key,
            proxy=proxy,
        )
        try:
            await self.office.store.add_account(account)
        except DuplicateAccount as dup:
            raise AdminError(
                grpc.StatusCode.ALREADY_EXISTS, f"This token is already account '{dup}'."
            ) from None
        self.office.pool.add(account)
        log.info("account %s added (%s, proxy %s)", account.id, mask(token), mask_proxy(proxy) or "none")
        return account

    async def _add_account(self, request: admin_pb2.AddAccountRequest) -> admin_pb2.Account:
        account = await self._new_account(request)
        await self.office.refresher.refresh(account)
        await self.office.journal.flush()
        self.office.stored()
        return self._proto(account)

    def _proto(self, account: Account) -> admin_pb2.Account:
        return safe_account_proto(account, self.office.pool)

    # --- add by login, bulk import ---

    async def _add_logged_in(self, tokens: Tokens, login: Login) -> str:
        request = admin_pb2.AddAccountRequest(
            token=tokens.access_token,
            refresh_token=tokens.refresh_token,
            label=login.label or "admin login",
            proxy=login.proxy,
            dialect=login.dialect,
        )
        try:
            account = await self._new_account(request)
        except AdminError as err:
            raise ValueError(err.message) from None
        await self.office.refresher.refresh(account)
        await self.office.journal.flush()
        self.office.stored()
        return account.id

    def _login_proto(self, login: Login) -> admin_pb2.AccountLogin:
        out = admin_pb2.AccountLogin(
            login_id=login.id,
            url=login.start.url,
            expires_at=_ts(login.expires_at),
            state=login.state,
            error=login.error,
        )
        account = self.office.pool.get(login.account_id) if login.account_id else None
        if account is not None:
            out.account.CopyFrom(self._proto(account))
        return out

    async def _start_account_login(
        self, request: admin_pb2.StartAccountLoginRequest
    ) -> admin_pb2.AccountLogin:
        proxy = _proxy(request.proxy)
        label = _name(request.label, "label")
        dialect = _dialect(request.dialect or "auto")
        try:
            login = self.logins.start(label, proxy, dialect)
        except TooManyLogins as err:
            raise AdminError(grpc.StatusCode.RESOURCE_EXHAUSTED, str(err)) from None
        log.info("login %s started (proxy %s)", login.id, mask_proxy(proxy) or "none")
        return self._login_proto(login)

    async def _get_account_login(self, request: admin_pb2.GetAccountLoginRequest) -> admin_pb2.AccountLogin:
        login = self.logins.get(request.login_id)
        if login is None:
            raise _not_found("login", request.login_id)
        return self._login_proto(login)

    async def _import_accounts(
        self, request: admin_pb2.ImportAccountsRequest
    ) -> admin_pb2.ImportAccountsResponse:
        if len(request.tokens) > MAX_IMPORT_CHARS:
            raise _invalid(f"tokens: at most {MAX_IMPORT_CHARS} characters per import.")
        lines = request.tokens.splitlines()
        if len(lines) > MAX_IMPORT_LINES:
            raise _invalid(f"tokens: at most {MAX_IMPORT_LINES} lines per import.")
        proxy = _proxy(request.proxy)
        prefix = _name(request.label_prefix, "label_prefix") or "import"
        answer = admin_pb2.ImportAccountsResponse()
        added: list[Account] = []
        for number, line in enumerate(lines, start=1):
            value = line.strip()
            if not value or value.startswith("#"):
                continue
            label = f"{prefix[: MAX_NAME - 8]} {number}"
            try:
                added.append(
                    await self._new_account(
                        admin_pb2.AddAccountRequest(token=value, label=label, proxy=proxy)
                    )
                )
            except AdminError as err:
                # The message names what was wrong, never the line's content.
                answer.failed.add(line=number, error=err.message)
        # Models, usage and plan for all of them (the refresher bounds the concurrency).
        await asyncio.gather(*(self.office.refresher.refresh(a) for a in added), return_exceptions=True)
        await self.office.journal.flush()
        if added:
            self.office.stored()
        answer.added.extend(self._proto(a) for a in added)
        log.info("import: %d account(s) added, %d line(s) refused", len(added), len(answer.failed))
        return answer

    async def _list_accounts(self, request: admin_pb2.ListAccountsRequest) -> admin_pb2.ListAccountsResponse:
        accounts = sorted(self.office.pool.all(), key=lambda a: a.created_at)
        return admin_pb2.ListAccountsResponse(accounts=[self._proto(a) for a in accounts])

    async def _get_account(self, request: admin_pb2.GetAccountRequest) -> admin_pb2.Account:
        return self._proto(self._account(request.id))

    async def _update_account(self, request: admin_pb2.UpdateAccountRequest) -> admin_pb2.Account:
        account = self._account(request.id)
        # Every value is checked before anything changes: a bad request changes nothing.
        label = _name(request.label, "label") if request.HasField("label") else account.label
        client_version = account.client_version
        if request.HasField("client_version"):
            client_version = _client_version(request.client_version) or None
        dialect = _dialect(request.dialect) if request.HasField("dialect") else account.dialect
        proxy = _proxy(request.proxy) if request.HasField("proxy") else account.proxy
        account.label, account.client_version, account.dialect = label, client_version, dialect
        if proxy != account.proxy:
            account.proxy = proxy
            log.info("account %s: proxy now %s", account.id, mask_proxy(proxy) or "none")
        if request.HasField("enabled"):
            account.enabled = request.enabled
            # Re-enabling is the admin's word that the problem is solved: start afresh.
            account.disabled_reason = "" if request.enabled else "Disabled by the admin."
            account.cooldown_until = 0.0
        self.office.pool.changed(account)
        await self.office.journal.flush()
        self.office.stored()  # label, version, dialect, proxy: the other replicas re-read them
        if request.HasField("enabled"):
            self.office.pool.admin_toggled(account)
        log.info("account %s updated", account.id)
        return self._proto(account)

    async def _remove_account(
        self, request: admin_pb2.RemoveAccountRequest
    ) -> admin_pb2.RemoveAccountResponse:
        account = self._account(request.id)
        self.office.pool.remove(account.id)
        await self.office.store.remove_account(account.id)
        self.office.stored()
        log.info("account %s removed", account.id)
        return admin_pb2.RemoveAccountResponse()

    async def _probe_account(self, request: admin_pb2.ProbeAccountRequest) -> admin_pb2.Account:
        account = self._account(request.id)
        await self.office.refresher.reprobe(account)
        await self.office.journal.flush()
        return self._proto(account)

    async def _refresh_account(self, request: admin_pb2.RefreshAccountRequest) -> admin_pb2.Account:
        account = self._account(request.id)
        await self.office.refresher.refresh(account)
        await self.office.journal.flush()
        return self._proto(account)

    # --- licenses ---

    async def _create_license(
        self, request: admin_pb2.CreateLicenseRequest
    ) -> admin_pb2.CreateLicenseResponse:
        if request.HasField("expires_at") and not _timestamp_in_range(request.expires_at):
            raise _invalid("expires_at: must be a valid time before the year 10000.")
        if len(request.allowed_models) > MAX_ALLOWED_MODELS:
            raise _invalid(f"allowed_models: at most {MAX_ALLOWED_MODELS} models.")
        expires_at = request.expires_at.ToMilliseconds() / 1000 if request.HasField("expires_at") else None
        if expires_at is not None and expires_at <= time.time():
            raise _invalid("expires_at: must be in the future.")
        if request.HasField("request_quota") and request.request_quota < 0:
            raise _invalid("request_quota: must not be negative.")
        models = [m.strip() for m in request.allowed_models if m.strip()]
        if any(len(m) > MAX_NAME for m in models):
            raise _invalid("allowed_models: a model id is too long.")
        rpm = _limit(request, "rpm_limit", None)
        tpm = _limit(request, "tpm_limit", None)
        budget = _limit(request, "token_budget", None)
        period = _period(request.budget_period) if request.HasField("budget_period") else ""
        _check_budget(budget, period)
        key = new_license()
        lic = License(
            id=f"lic_{secrets.token_hex(6)}",
            key_hash=hash_key(key),
            name=_name(request.name, "name"),
            allowed_models=frozenset(models) if models else None,
            expires_at=expires_at,
            request_quota=request.request_quota if request.HasField("request_quota") else None,
            key_prefix=key_prefix(key),
            rpm_limit=rpm,
            tpm_limit=tpm,
            token_budget=budget,
            budget_period=period,
        )
        await self.office.store.add_license(lic)
        self.office.licenses.put(lic)
        self.office.stored()
        log.info("license %s created", lic.id)
        return admin_pb2.CreateLicenseResponse(license=await self._license_proto(lic), key=key)

    async def _license_proto(self, lic: License) -> admin_pb2.License:
        """The license with its budget count as the limiter has it now (Redis: every replica's)."""
        limits = self.office.limits
        if limits is None:
            return license_proto(lic)
        await limits.budget_used(lic)
        return license_proto(lic, limits.clock())

    async def _list_licenses(self, request: admin_pb2.ListLicensesRequest) -> admin_pb2.ListLicensesResponse:
        return admin_pb2.ListLicensesResponse(
            licenses=[await self._license_proto(x) for x in self.office.licenses.all()]
        )

    async def _update_license(self, request: admin_pb2.UpdateLicenseRequest) -> admin_pb2.License:
        lic = self.office.licenses.get(request.id)
        if lic is None:
            raise _not_found("license", request.id)
        # Every value is checked before anything changes: a bad request changes nothing.
        name = _name(request.name, "name") if request.HasField("name") else lic.name
        models = lic.allowed_models
        if request.HasField("allowed_models"):
            listed = [m.strip() for m in request.allowed_models.models if m.strip()]
            if len(listed) > MAX_ALLOWED_MODELS:
                raise _invalid(f"allowed_models: at most {MAX_ALLOWED_MODELS} models.")
            if any(len(m) > MAX_NAME for m in listed):
                raise _invalid("allowed_models: a model id is too long.")
            models = frozenset(listed) if listed else None
        quota = lic.request_quota
        if request.clear_request_quota:
            quota = None
        elif request.HasField("request_quota"):
            if request.request_quota < 0:
                raise _invalid("request_quota: must not be negative.")
            quota = request.request_quota
        expires_at = lic.expires_at
        if request.clear_expires_at:
            expires_at = None
        elif request.HasField("expires_at"):
            if not _timestamp_in_range(request.expires_at):
                raise _invalid("expires_at: must be a valid time before the year 10000.")
            expires_at = request.expires_at.ToMilliseconds() / 1000
            if expires_at <= time.time():
                raise _invalid("expires_at: must be in the future.")
        revoked_at = lic.revoked_at
        if request.HasField("enabled"):
            revoked_at = None if request.enabled else (lic.revoked_at or time.time())
        rpm = None if _cleared(request, "rpm_limit") else _limit(request, "rpm_limit", lic.rpm_limit)
        tpm = None if _cleared(request, "tpm_limit") else _limit(request, "tpm_limit", lic.tpm_limit)
        cleared = _cleared(request, "token_budget")
        budget = None if cleared else _limit(request, "token_budget", lic.token_budget)
        period = lic.budget_period if not cleared else ""
        if request.HasField("budget_period"):
            period = _period(request.budget_period)
        _check_budget(budget, period)
        lic.name, lic.allowed_models, lic.request_quota, lic.expires_at = name, models, quota, expires_at
        lic.revoked_at, lic.revoked = revoked_at, revoked_at is not None
        lic.rpm_limit, lic.tpm_limit, lic.token_budget = rpm, tpm, budget
        # Another period is another count: it starts afresh.
        reset_budget = period != lic.budget_period
        if reset_budget:
            lic.budget_period, lic.budget_used, lic.budget_period_start = period, 0, 0.0
        await self.office.store.update_license(lic, reset_budget=reset_budget)
        self.office.stored()
        log.info("license %s updated", lic.id)
        return await self._license_proto(lic)

    async def _revoke_license(self, request: admin_pb2.RevokeLicenseRequest) -> admin_pb2.License:
        lic = self.office.licenses.get(request.id)
        if lic is None:
            raise _not_found("license", request.id)
        if not lic.revoked:
            lic.revoked_at = time.time()
            lic.revoked = True  # effective now, in memory; the store follows
            await self.office.store.revoke_license(lic.id, lic.revoked_at)
            self.office.stored()
            log.info("license %s revoked", lic.id)
        return await self._license_proto(lic)

    # --- request log ---

    async def _list_requests(self, request: admin_pb2.ListRequestsRequest) -> admin_pb2.ListRequestsResponse:
        limit = (
            request.limit if 0 < request.limit <= MAX_REQUESTS else (MAX_REQUESTS if request.limit else 100)
        )
        if request.before_id < 0:
            raise _invalid("before_id: must not be negative.")
        since = _optional_time(request, "since")
        until = _optional_time(request, "until")
        query = RequestQuery(
            license_id=_name(request.license_id, "license_id"),
            model=_name(request.model, "model"),
            account_id=_name(request.account_id, "account_id"),
            outcome=_name(request.outcome, "outcome"),
            since=since,
            until=until,
            before_id=request.before_id,
        )
        await self.office.journal.flush()
        # One more than asked: whether an older page exists, without counting.
        entries = await self.office.store.recent_requests(limit + 1, query)
        more = len(entries) > limit
        entries = entries[:limit]
        return admin_pb2.ListRequestsResponse(
            requests=[
                admin_pb2.RequestLogEntry(
                    id=e.id,
                    time=_ts(e.time),
                    license_id=e.license_id,
                    license_name=e.license_name,
                    model=e.model,
                    account_id=e.account_id,
                    latency_ms=e.latency_ms,
                    prompt_tokens=e.prompt_tokens,
                    completion_tokens=e.completion_tokens,
                    outcome=e.outcome,
                    stream=e.stream,
                    requested_model=e.requested_model,
                    key_prefix=e.key_prefix,
                    ttft_ms=e.ttft_ms,
                )
                for e in entries
            ],
            next_before_id=entries[-1].id if more else 0,
        )

    async def _usage_series(
        self, request: admin_pb2.GetUsageSeriesRequest
    ) -> admin_pb2.GetUsageSeriesResponse:
        group_by = request.group_by.strip().lower() or "model"
        if group_by not in USAGE_GROUPS:
            raise _invalid(f"group_by: expected one of {', '.join(USAGE_GROUPS)}.")
        bucket = request.bucket.strip().lower() or "hour"
        if bucket not in BUCKETS:
            raise _invalid(f"bucket: expected one of {', '.join(BUCKETS)}.")
        size, default_span = BUCKETS[bucket]
        until = _optional_time(request, "until")
        until = time.time() if until is None else until
        since = _optional_time(request, "since")
        since = until - default_span if since is None else since
        if since >= until:
            raise _invalid("since: must be before until.")
        if (until - since) / size > MAX_BUCKETS:
            raise _invalid(f"since/until: at most {MAX_BUCKETS} {bucket} buckets; choose a larger bucket.")
        await self.office.journal.flush()
        rows = await self.office.store.usage_rows(group_by, size, since, until)
        series: dict[str, admin_pb2.UsageSeries] = {}
        totals: dict[str, int] = {}
        for row in rows:
            out = series.get(row.group)
            if out is None:
                out = series[row.group] = admin_pb2.UsageSeries(group=row.group, label=row.label or row.group)
            out.buckets.add(
                start=_ts(row.bucket),
                requests=row.requests,
                prompt_tokens=row.prompt_tokens,
                completion_tokens=row.completion_tokens,
                errors=row.errors,
                ttft_ms_mean=round(row.ttft_ms_total / row.ttft_samples) if row.ttft_samples else 0,
            )
            totals[row.group] = totals.get(row.group, 0) + row.requests
        busiest = sorted(series, key=lambda group: (-totals[group], group))
        return admin_pb2.GetUsageSeriesResponse(
            group_by=group_by,
            bucket=bucket,
            since=_ts(since),
            until=_ts(until),
            bucket_seconds=size,
            series=[series[group] for group in busiest],
        )

    # --- model aliases ---

    def _resolver(self) -> ModelResolver:
        if self.office.resolver is None:
            raise AdminError(grpc.StatusCode.UNIMPLEMENTED, "Model aliases are not available in this core.")
        return self.office.resolver

    def _alias_proto(self, alias: Alias) -> admin_pb2.ModelAlias:
        resolver = self._resolver()
        served = resolver.resolve(alias.name)
        offered = resolver.offer(served.model) is not Offer.NONE
        return admin_pb2.ModelAlias(
            name=alias.name,
            targets=alias.targets,
            source=alias.source,
            note=alias.note,
            resolves_to=served.model if offered else "",
        )

    async def _list_aliases(self, request: admin_pb2.ListAliasesRequest) -> admin_pb2.ListAliasesResponse:
        table = self._resolver().aliases
        return admin_pb2.ListAliasesResponse(aliases=[self._alias_proto(a) for a in table.all()])

    async def _set_alias(self, request: admin_pb2.SetAliasRequest) -> admin_pb2.ModelAlias:
        table = self._resolver().aliases
        try:
            alias = table.set(request.name, list(request.targets), apply=False)
        except AliasError as err:
            raise _invalid(str(err)) from None
        await self.office.store.set_alias(alias.name, alias.targets, time.time())
        table.set(alias.name, list(alias.targets))  # validated above; stored before it applies
        self.office.stored()
        log.info("alias %s set to %s", alias.name, ", ".join(alias.targets))
        return self._alias_proto(alias)

    async def _delete_alias(self, request: admin_pb2.DeleteAliasRequest) -> admin_pb2.DeleteAliasResponse:
        table = self._resolver().aliases
        name = request.name.strip()
        try:
            found = table.remove(name, apply=False)
        except AliasError as err:
            raise _invalid(f"Removing '{name[:80]}' would leave {err}") from None
        if not found:
            raise AdminError(
                grpc.StatusCode.NOT_FOUND,
                f"No alias '{name[:80]}' was set through the admin API (built-in and "
                "CURSORGATE_MODEL_ALIASES aliases are changed by setting one of the same name).",
            )
        await self.office.store.delete_alias(name)
        table.remove(name)
        self.office.stored()
        log.info("alias %s removed", name)
        return admin_pb2.DeleteAliasResponse()

    # --- gRPC methods ---

    async def AddAccount(self, request: admin_pb2.AddAccountRequest, context: Context) -> admin_pb2.Account:
        return await self._serve(context, self._add_account, request)

    async def ListAccounts(
        self, request: admin_pb2.ListAccountsRequest, context: Context
    ) -> admin_pb2.ListAccountsResponse:
        return await self._serve(context, self._list_accounts, request)

    async def GetAccount(self, request: admin_pb2.GetAccountRequest, context: Context) -> admin_pb2.Account:
        return await self._serve(context, self._get_account, request)

    async def UpdateAccount(
        self, request: admin_pb2.UpdateAccountRequest, context: Context
    ) -> admin_pb2.Account:
        return await self._serve(context, self._update_account, request)

    async def RemoveAccount(
        self, request: admin_pb2.RemoveAccountRequest, context: Context
    ) -> admin_pb2.RemoveAccountResponse:
        return await self._serve(context, self._remove_account, request)

    async def RefreshAccount(
        self, request: admin_pb2.RefreshAccountRequest, context: Context
    ) -> admin_pb2.Account:
        return await self._serve(context, self._refresh_account, request)

    async def CreateLicense(
        self, request: admin_pb2.CreateLicenseRequest, context: Context
    ) -> admin_pb2.CreateLicenseResponse:
        return await self._serve(context, self._create_license, request)

    async def ListLicenses(
        self, request: admin_pb2.ListLicensesRequest, context: Context
    ) -> admin_pb2.ListLicensesResponse:
        return await self._serve(context, self._list_licenses, request)

    async def RevokeLicense(
        self, request: admin_pb2.RevokeLicenseRequest, context: Context
    ) -> admin_pb2.License:
        return await self._serve(context, self._revoke_license, request)

    async def ListRequests(
        self, request: admin_pb2.ListRequestsRequest, context: Context
    ) -> admin_pb2.ListRequestsResponse:
        return await self._serve(context, self._list_requests, request)

    async def UpdateLicense(
        self, request: admin_pb2.UpdateLicenseRequest, context: Context
    ) -> admin_pb2.License:
        return await self._serve(context, self._update_license, request)

    async def GetUsageSeries(
        self, request: admin_pb2.GetUsageSeriesRequest, context: Context
    ) -> admin_pb2.GetUsageSeriesResponse:
        return await self._serve(context, self._usage_series, request)

    async def ProbeAccount(
        self, request: admin_pb2.ProbeAccountRequest, context: Context
    ) -> admin_pb2.Account:
        return await self._serve(context, self._probe_account, request)

    async def ListAliases(
        self, request: admin_pb2.ListAliasesRequest, context: Context
    ) -> admin_pb2.ListAliasesResponse:
        return await self._serve(context, self._list_aliases, request)

    async def SetAlias(self, request: admin_pb2.SetAliasRequest, context: Context) -> admin_pb2.ModelAlias:
        return await self._serve(context, self._set_alias, request)

    async def DeleteAlias(
        self, request: admin_pb2.DeleteAliasRequest, context: Context
    ) -> admin_pb2.DeleteAliasResponse:
        return await self._serve(context, self._delete_alias, request)

    async def StartAccountLogin(
        self, request: admin_pb2.StartAccountLoginRequest, context: Context
    ) -> admin_pb2.AccountLogin:
        return await self._serve(context, self._start_account_login, request)

    async def GetAccountLogin(
        self, request: admin_pb2.GetAccountLoginRequest, context: Context
    ) -> admin_pb2.AccountLogin:
        return await self._serve(context, self._get_account_login, request)

    async def ImportAccounts(
        self, request: admin_pb2.ImportAccountsRequest, context: Context
    ) -> admin_pb2.ImportAccountsResponse:
        return await self._serve(context, self._import_accounts, request)


# --- validation and conversion ---


def _name(value: str, field: str) -> str:
    value = value.strip()
    if len(value) > MAX_NAME:
        raise _invalid(f"{field}: at most {MAX_NAME} characters.")
    return value


def _proxy(value: str) -> str:
    try:
        return parse_proxy(value)
    except InvalidProxy as err:
        raise _invalid(str(err)) from None


def _dialect(value: str) -> str:
    value = value.strip().lower()
    if value not in DIALECTS:
        raise _invalid(f"dialect: expected one of {', '.join(DIALECTS)}.")
    return value


def _client_version(value: str) -> str:
    value = value.strip()
    if value and not CLIENT_VERSION.match(value):
        raise _invalid("client_version: expected a version like '2.3.41'.")
    return value


def _timestamp_in_range(stamp: timestamp_pb2.Timestamp) -> bool:
    return 0 <= stamp.seconds <= MAX_UNIX_SECONDS and 0 <= stamp.nanos < 1_000_000_000


def _optional_time(request: Message, field: str) -> float | None:
    """A Timestamp field as Unix seconds; None when unset. INVALID_ARGUMENT when out of range."""
    if not request.HasField(field):
        return None
    stamp: timestamp_pb2.Timestamp = getattr(request, field)
    if not _timestamp_in_range(stamp):
        raise _invalid(f"{field}: must be a valid time between 1970 and the year 10000.")
    return float(stamp.ToMilliseconds()) / 1000


def _ts(seconds: float) -> timestamp_pb2.Timestamp:
    stamp = timestamp_pb2.Timestamp()
    stamp.FromMilliseconds(int(seconds * 1000))
    return stamp


def _struct(data: object) -> struct_pb2.Struct | None:
    if not isinstance(data, dict):
        return None
    value = struct_pb2.Struct()
    try:
        value.update(data)
    except (TypeError, ValueError):
        return None
    return value


def _check_claims(claims: dict[str, object]) -> None:
    """What the gateway reads from a token's claims must be sane: a crafted `exp` (1e20, NaN)
    would be stored and then break every listing of accounts."""
    exp = claims.get("exp")
    if exp is not None and (
        not isinstance(exp, int) or isinstance(exp, bool) or not 0 < exp <= MAX_UNIX_SECONDS
    ):
        raise _invalid("token: its 'exp' claim must be a Unix time in seconds (an integer up to year 9999).")
    sub = claims.get("sub")
    if sub is not None and not isinstance(sub, str):
        raise _invalid("token: its 'sub' claim must be a string.")


def _token_expiry(claims: dict[str, object]) -> timestamp_pb2.Timestamp | None:
    exp = claims.get("exp")
    if isinstance(exp, int | float) and not isinstance(exp, bool) and 0 < exp <= MAX_UNIX_SECONDS:
        return _ts(float(exp))
    return None  # absent, or a value no Timestamp can hold (NaN, 1e20): not shown


def safe_account_proto(account: Account, pool: AccountPool | None = None) -> admin_pb2.Account:
    """The account as account_proto renders it, or, should that fail, the fields that cannot
    fail: one bad row never hides the others."""
    try:
        return account_proto(account, pool)
    except Exception:
        log.exception("account %s could not be rendered in full", account.id)
        return admin_pb2.Account(
            id=account.id,
            label=account.label[:MAX_NAME],
            token_masked=mask(account.token),
            enabled=account.enabled,
            status="disabled" if not account.enabled else "active",
            last_error="This account's details could not be shown; see core's log.",
            proxy=mask_proxy(account.proxy),
        )


def account_proto(account: Account, pool: AccountPool | None = None) -> admin_pb2.Account:
    now = time.time()
    claims = jwt_claims(account.token)
    out = admin_pb2.Account(
        id=account.id,
        label=account.label,
        token_masked=mask(account.token),
        enabled=account.enabled,
        status=account.status(now),
        disabled_reason=account.disabled_reason,
        client_version=account.client_version or "",
        models_known=account.models is not None,
        last_error=account.last_error,
        created_at=_ts(account.created_at),
        subject=str(claims.get("sub", ""))[:200],
        in_flight=account.in_flight,
        requests=account.requests,
        failures=account.failures,
        dialect=account.dialect,
        active_dialect=str(account.dialect_state.get("active") or ""),
        credential="api_key" if account.api_key else "refresh_token" if account.refresh_token else "token",
        renewal_error=str(account.auth_state.get("error") or "")[:300],
        proxy=mask_proxy(account.proxy),
    )
    credit, used = account.remaining_credit(), account.plan_used_percent()
    if credit is not None:
        out.remaining_credit = credit
    if used is not None:
        out.plan_used_percent = used
    if pool is not None:
        out.near_limit = pool.near_limit(account)
        down = pool.proxies.down(account.proxy, now)
        if down is not None:
            out.proxy_down_until.CopyFrom(_ts(down.until))
        outage = pool.proxies.last(account.proxy)
        if outage is not None:
            out.proxy_error = outage.reason
    renewed_at = account.auth_state.get("renewed_at")
    if isinstance(renewed_at, int | float):
        out.renewed_at.CopyFrom(_ts(float(renewed_at)))
    probes = account.dialect_state.get("probes")
    for name, probe in (probes if isinstance(probes, dict) else {}).items():
        if isinstance(probe, dict):
            entry = out.probes.add(
                dialect=str(name), ok=bool(probe.get("ok")), detail=str(probe.get("detail", ""))
            )
            when = probe.get("at")
            if isinstance(when, int | float):
                entry.probed_at.CopyFrom(_ts(float(when)))
    for info in (account.models or {}).values():
        out.models.add(
            id=info.id,
            display_name=info.display_name,
            supports_thinking=info.supports_thinking,
            supports_images=info.supports_images,
            supports_tools=info.supports_tools,
            context_window=info.context_window,
            supports_max_mode=bool(info.supports_max_mode),
            max_mode_context_window=info.max_mode_context_window,
            max_mode_only=info.max_mode_only,
        )
    for field in ("usage", "membership"):
        detail = _struct(account.details.get(field))
        if detail is not None:
            getattr(out, field).CopyFrom(detail)
    if account.last_refreshed_at is not None:
        out.last_refreshed_at.CopyFrom(_ts(account.last_refreshed_at))
    if account.cooldown_until > now:
        out.cooldown_until.CopyFrom(_ts(account.cooldown_until))
    expiry = _token_expiry(claims)
    if expiry is not None:
        out.token_expires_at.CopyFrom(expiry)
    return out


# The limits' largest values (int32 per minute; budgets in int64, bounded to stay far from overflow).
MAX_PER_MINUTE = 2**31 - 1
MAX_BUDGET = 10**15


def _limit(request: Any, field: str, current: int | None) -> int | None:
    """A limit from the request (checked: positive), or `current` when it is not set."""
    if not request.HasField(field):
        return current
    value = int(getattr(request, field))
    top = MAX_BUDGET if field == "token_budget" else MAX_PER_MINUTE
    if not 0 < value <= top:
        raise _invalid(f"{field}: must be a positive whole number (at most {top}); clear_{field} removes it.")
    return value


def _cleared(request: admin_pb2.UpdateLicenseRequest, field: str) -> bool:
    clear = bool(getattr(request, f"clear_{field}"))
    if clear and request.HasField(field):
        raise _invalid(f"{field} and clear_{field}: give one or the other.")
    return clear


def _period(value: str) -> str:
    value = value.strip().lower()
    if value and value not in PERIODS:
        raise _invalid(f"budget_period: expected one of {', '.join(PERIODS)} (calendar periods in UTC).")
    return value


def _check_budget(budget: int | None, period: str) -> None:
    if budget is not None and not period:
        raise _invalid("token_budget: needs a budget_period (day, week or month).")
    if period and budget is None:
        raise _invalid("budget_period: applies only with a token_budget.")


def license_proto(lic: License, now: float | None = None) -> admin_pb2.License:
    out = admin_pb2.License(
        id=lic.id,
        name=lic.name,
        key_prefix=lic.key_prefix,
        created_at=_ts(lic.created_at),
        revoked=lic.revoked,
        allowed_models=sorted(lic.allowed_models or ()),
        requests_used=lic.requests_used,
    )
    if lic.expires_at is not None:
        out.expires_at.CopyFrom(_ts(lic.expires_at))
    if lic.revoked_at is not None:
        out.revoked_at.CopyFrom(_ts(lic.revoked_at))
    if lic.request_quota is not None:
        out.request_quota = lic.request_quota
    if lic.rpm_limit is not None:
        out.rpm_limit = lic.rpm_limit
    if lic.tpm_limit is not None:
        out.tpm_limit = lic.tpm_limit
    if lic.token_budget is not None and lic.budget_period:
        out.token_budget, out.budget_period = lic.token_budget, lic.budget_period
        now = time.time() if now is None else now
        start = period_start(lic.budget_period, now)
        out.budget_used = lic.budget_used if lic.budget_period_start == start else 0
        out.budget_resets_at.CopyFrom(_ts(period_end(lic.budget_period, start)))
    return out
