"""cursorgate.v1.AdminService: accounts, licenses and the request log, behind CURSORGATE_ADMIN_KEY."""

from __future__ import annotations

import logging
import re
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import grpc
from google.protobuf import struct_pb2, timestamp_pb2

from core.accounts import Account, AccountPool
from core.aliases import Alias, AliasError, Offer
from core.auth.cursor_auth import AuthError, is_api_key
from core.auth.renewal import Renewer
from core.chat_service import metadata_value
from core.config import DIALECTS
from core.licenses import License, LicenseRegistry, key_prefix
from core.refresh import Refresher
from core.resolve import ModelResolver
from core.secrets import bearer, hash_key, keys_equal, mask, new_license
from core.store import Journal, Store
from core.store.repo import DuplicateAccount
from core.upstream.tokens import InvalidToken, jwt_claims, normalize_token
from cursorgate.v1 import admin_pb2, admin_pb2_grpc

log = logging.getLogger("cursorgate.admin")

Req = TypeVar("Req")
Resp = TypeVar("Resp")
Context = grpc.aio.ServicerContext[Any, Any]

CLIENT_VERSION = re.compile(r"^\d{1,4}(\.\d{1,4}){1,3}$")
MAX_NAME = 200
MAX_REQUESTS = 1000
# A license may name this many models; beyond it a list of all-but-a-few is the better tool.
MAX_ALLOWED_MODELS = 200
# The largest Unix time a Timestamp (and the admin page) can show: 9999-12-31T23:59:59Z.
MAX_UNIX_SECONDS = 253_402_300_799


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
    # Told after licenses or accounts changed in the store, so other core replicas re-read it
    # at once (core/shared.py, with Redis); None: they see it at their periodic sync.
    on_store_change: Callable[[], None] | None = None

    def stored(self) -> None:
        if self.on_store_change is not None:
            self.on_store_change()


class AdminService(admin_pb2_grpc.AdminServiceServicer):
    def __init__(self, office: Backoffice, admin_key: str | None) -> None:
        self.office = office
        # Only the hash is kept: comparing hashes is constant-time whatever the lengths.
        self._key_hash = hash_key(admin_key) if admin_key else None

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

    async def _credentials(self, request: admin_pb2.AddAccountRequest) -> tuple[str, str, str]:
        """(access token, refresh token, API key) from what the operator gave: a JWT or cookie
        value (optionally with its refresh token), or a `crsr_` user API key, exchanged now."""
        if is_api_key(request.token):
            try:
                tokens = await self.office.renewer.auth.exchange_api_key(request.token)
            except AuthError as err:
                raise _invalid(f"token: {err}") from None
            return tokens.access_token, "", request.token.strip()
        try:
            return normalize_token(request.token), request.refresh_token.strip(), ""
        except InvalidToken:
            # The value itself is never echoed: it may be a real secret pasted in the wrong field.
            raise _invalid(
                "token: expected a Cursor JWT, a WorkosCursorSessionToken cookie value or a crsr_ API key."
            ) from None

    async def _add_account(self, request: admin_pb2.AddAccountRequest) -> admin_pb2.Account:
        token, refresh_token, api_key = await self._credentials(request)
        _check_claims(jwt_claims(token))
        existing = next((a for a in self.office.pool.all() if keys_equal(a.token, token)), None)
        if existing is not None:
            raise AdminError(
                grpc.StatusCode.ALREADY_EXISTS, f"This token is already account '{existing.id}'."
            )
        account = Account(
            id=f"acc_{secrets.token_hex(6)}",
            token=token,
            label=_name(request.label, "label"),
            client_version=_client_version(request.client_version) or None,
            dialect=_dialect(request.dialect or "auto"),
            refresh_token=refresh_token,
            api_key=api_key,
        )
        try:
            await self.office.store.add_account(account)
        except DuplicateAccount as dup:
            raise AdminError(
                grpc.StatusCode.ALREADY_EXISTS, f"This token is already account '{dup}'."
            ) from None
        self.office.pool.add(account)
        log.info("account %s added (%s)", account.id, mask(token))
        await self.office.refresher.refresh(account)
        await self.office.journal.flush()
        self.office.stored()
        return safe_account_proto(account)

    async def _list_accounts(self, request: admin_pb2.ListAccountsRequest) -> admin_pb2.ListAccountsResponse:
        accounts = sorted(self.office.pool.all(), key=lambda a: a.created_at)
        return admin_pb2.ListAccountsResponse(accounts=[safe_account_proto(a) for a in accounts])

    async def _get_account(self, request: admin_pb2.GetAccountRequest) -> admin_pb2.Account:
        return safe_account_proto(self._account(request.id))

    async def _update_account(self, request: admin_pb2.UpdateAccountRequest) -> admin_pb2.Account:
        account = self._account(request.id)
        if request.HasField("label"):
            account.label = _name(request.label, "label")
        if request.HasField("client_version"):
            account.client_version = _client_version(request.client_version) or None
        if request.HasField("dialect"):
            account.dialect = _dialect(request.dialect)
        if request.HasField("enabled"):
            account.enabled = request.enabled
            # Re-enabling is the admin's word that the problem is solved: start afresh.
            account.disabled_reason = "" if request.enabled else "Disabled by the admin."
            account.cooldown_until = 0.0
        self.office.pool.changed(account)
        await self.office.journal.flush()
        if request.HasField("enabled"):
            self.office.pool.admin_toggled(account)
        log.info("account %s updated", account.id)
        return safe_account_proto(account)

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
        return account_proto(account)

    async def _refresh_account(self, request: admin_pb2.RefreshAccountRequest) -> admin_pb2.Account:
        account = self._account(request.id)
        await self.office.refresher.refresh(account)
        await self.office.journal.flush()
        return safe_account_proto(account)

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
        key = new_license()
        lic = License(
            id=f"lic_{secrets.token_hex(6)}",
            key_hash=hash_key(key),
            name=_name(request.name, "name"),
            allowed_models=frozenset(models) if models else None,
            expires_at=expires_at,
            request_quota=request.request_quota if request.HasField("request_quota") else None,
            key_prefix=key_prefix(key),
        )
        await self.office.store.add_license(lic)
        self.office.licenses.put(lic)
        self.office.stored()
        log.info("license %s created", lic.id)
        return admin_pb2.CreateLicenseResponse(license=license_proto(lic), key=key)

    async def _list_licenses(self, request: admin_pb2.ListLicensesRequest) -> admin_pb2.ListLicensesResponse:
        return admin_pb2.ListLicensesResponse(licenses=[license_proto(x) for x in self.office.licenses.all()])

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
        lic.name, lic.allowed_models, lic.request_quota, lic.expires_at = name, models, quota, expires_at
        lic.revoked_at, lic.revoked = revoked_at, revoked_at is not None
        await self.office.store.update_license(lic)
        self.office.stored()
        log.info("license %s updated", lic.id)
        return license_proto(lic)

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
        return license_proto(lic)

    # --- request log ---

    async def _list_requests(self, request: admin_pb2.ListRequestsRequest) -> admin_pb2.ListRequestsResponse:
        limit = (
            request.limit if 0 < request.limit <= MAX_REQUESTS else (MAX_REQUESTS if request.limit else 100)
        )
        await self.office.journal.flush()
        entries = await self.office.store.recent_requests(limit)
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
                )
                for e in entries
            ]
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


# --- validation and conversion ---


def _name(value: str, field: str) -> str:
    value = value.strip()
    if len(value) > MAX_NAME:
        raise _invalid(f"{field}: at most {MAX_NAME} characters.")
    return value


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


def safe_account_proto(account: Account) -> admin_pb2.Account:
    """The account as account_proto renders it, or, should that fail, the fields that cannot
    fail: one bad row never hides the others."""
    try:
        return account_proto(account)
    except Exception:
        log.exception("account %s could not be rendered in full", account.id)
        return admin_pb2.Account(
            id=account.id,
            label=account.label[:MAX_NAME],
            token_masked=mask(account.token),
            enabled=account.enabled,
            status="disabled" if not account.enabled else "active",
            last_error="This account's details could not be shown; see core's log.",
        )


def account_proto(account: Account) -> admin_pb2.Account:
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
    )
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


def license_proto(lic: License) -> admin_pb2.License:
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
    return out
