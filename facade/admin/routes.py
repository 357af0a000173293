"""REST <-> AdminService: JSON bodies become request messages (proto3 JSON mapping), answers
become JSON, gRPC statuses become OpenAI-style errors. The admin key is forwarded untouched."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from importlib import resources
from typing import Any, TypeVar

import grpc
from fastapi import APIRouter
from google.protobuf.json_format import MessageToDict, ParseDict, ParseError
from google.protobuf.message import Message
from starlette.requests import Request
from starlette.responses import Response

from cursorgate.v1 import admin_pb2, admin_pb2_grpc
from facade.core_client import CoreClient, call_metadata, request_id_from
from facade.errors import CORE_RETRY_AFTER_S, INVALID_REQUEST, SERVER_ERROR, OpenAIError
from facade.responses import OrjsonResponse

# AddAccount and RefreshAccount wait for Cursor's account endpoints.
ADMIN_TIMEOUT = 90.0
PAGE_HEADERS = {
    # The page loads only its own script and talks only to this origin.
    "content-security-policy": "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
    "img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "cache-control": "no-store",
}

# Status -> (HTTP status, type, code). Core's messages for these are written for callers.
STATUS_TABLE: dict[grpc.StatusCode, tuple[int, str, str | None]] = {
    grpc.StatusCode.INVALID_ARGUMENT: (400, INVALID_REQUEST, None),
    grpc.StatusCode.UNAUTHENTICATED: (401, INVALID_REQUEST, "invalid_admin_key"),
    grpc.StatusCode.PERMISSION_DENIED: (403, INVALID_REQUEST, "admin_api_disabled"),
    grpc.StatusCode.NOT_FOUND: (404, INVALID_REQUEST, "not_found"),
    grpc.StatusCode.ALREADY_EXISTS: (409, INVALID_REQUEST, "already_exists"),
    grpc.StatusCode.RESOURCE_EXHAUSTED: (429, INVALID_REQUEST, "too_many_logins"),
}

Req = TypeVar("Req", bound=Message)
Resp = TypeVar("Resp", bound=Message)

router = APIRouter(prefix="/cursor/admin", include_in_schema=False)


def _grpc_error(error: grpc.aio.AioRpcError) -> OpenAIError:
    known = STATUS_TABLE.get(error.code())
    if known is not None:
        status, kind, code = known
        return OpenAIError(status, error.details() or "Request failed.", type=kind, code=code)
    if error.code() == grpc.StatusCode.UNAVAILABLE:
        return OpenAIError(
            503,
            "The gateway core is unavailable; try again shortly.",
            SERVER_ERROR,
            None,
            "core_unavailable",
            {"Retry-After": str(CORE_RETRY_AFTER_S)},
        )
    return OpenAIError(500, "The admin request failed in core.", SERVER_ERROR)


async def _body(request: Request) -> dict[str, Any]:
    raw = await request.body()
    if not raw.strip():
        return {}
    try:
        data = await request.json()
    except ValueError:
        raise OpenAIError(400, "The body must be JSON.") from None
    if not isinstance(data, dict):
        raise OpenAIError(400, "The body must be a JSON object.")
    return data


def _parse(data: dict[str, Any], message: Req) -> Req:
    try:
        return ParseDict(data, message)
    except ParseError as err:
        # ParseDict names the field; values are not echoed back beyond what it says.
        raise OpenAIError(400, f"Invalid request body: {str(err)[:300]}") from None


async def _call(
    request: Request,
    method: Callable[..., Awaitable[Resp]],
    message: Message,
    status: int = 200,
    shape: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
) -> Response:
    request_id = request_id_from(request.headers.get("x-request-id"), f"admin-{uuid.uuid4().hex}")
    metadata = call_metadata(request.headers.get("authorization"), request_id)
    core: CoreClient = request.app.state.core
    await core.connected()
    try:
        answer = await method(message, metadata=metadata, timeout=ADMIN_TIMEOUT)
    except grpc.aio.AioRpcError as error:
        raise _grpc_error(error) from None
    body = MessageToDict(answer, preserving_proto_field_name=True, always_print_fields_with_no_presence=True)
    if shape is not None:
        body = shape(body)
    return OrjsonResponse(
        body, status_code=status, headers={"x-request-id": request_id, "cache-control": "no-store"}
    )


def _stub(request: Request) -> admin_pb2_grpc.AdminServiceStub:
    core: CoreClient = request.app.state.core
    return admin_pb2_grpc.AdminServiceStub(core.channel)


# --- accounts ---


@router.get("/api/accounts")
async def list_accounts(request: Request) -> Response:
    return await _call(request, _stub(request).ListAccounts, admin_pb2.ListAccountsRequest())


@router.post("/api/accounts")
async def add_account(request: Request) -> Response:
    message = _parse(await _body(request), admin_pb2.AddAccountRequest())
    return await _call(request, _stub(request).AddAccount, message, status=201)


@router.post("/api/accounts/login")
async def start_account_login(request: Request) -> Response:
    """Starts "Add by login": `{"login_id","url","expires_at",...}`; poll the GET below."""
    message = _parse(await _body(request), admin_pb2.StartAccountLoginRequest())
    return await _call(request, _stub(request).StartAccountLogin, message, status=201, shape=_login_shape)


@router.get("/api/accounts/login/{login_id}")
async def get_account_login(login_id: str, request: Request) -> Response:
    message = admin_pb2.GetAccountLoginRequest(login_id=login_id)
    return await _call(request, _stub(request).GetAccountLogin, message, shape=_login_shape)


def _login_shape(body: dict[str, Any]) -> dict[str, Any]:
    # `account` is null until the login is done (proto JSON would leave the key out).
    return {**body, "account": body.get("account")}


@router.post("/api/accounts/import")
async def import_accounts(request: Request) -> Response:
    """`{"tokens": "one per line", "label_prefix": "..."}` -> `{"added": [...], "failed": [...]}`."""
    message = _parse(await _body(request), admin_pb2.ImportAccountsRequest())
    return await _call(request, _stub(request).ImportAccounts, message)


@router.get("/api/accounts/{account_id}")
async def get_account(account_id: str, request: Request) -> Response:
    return await _call(request, _stub(request).GetAccount, admin_pb2.GetAccountRequest(id=account_id))


@router.patch("/api/accounts/{account_id}")
async def update_account(account_id: str, request: Request) -> Response:
    message = _parse({**await _body(request), "id": account_id}, admin_pb2.UpdateAccountRequest())
    return await _call(request, _stub(request).UpdateAccount, message)


@router.delete("/api/accounts/{account_id}")
async def remove_account(account_id: str, request: Request) -> Response:
    return await _call(request, _stub(request).RemoveAccount, admin_pb2.RemoveAccountRequest(id=account_id))


@router.post("/api/accounts/{account_id}/refresh")
async def refresh_account(account_id: str, request: Request) -> Response:
    return await _call(request, _stub(request).RefreshAccount, admin_pb2.RefreshAccountRequest(id=account_id))


@router.post("/api/accounts/{account_id}/probe")
async def probe_account(account_id: str, request: Request) -> Response:
    return await _call(request, _stub(request).ProbeAccount, admin_pb2.ProbeAccountRequest(id=account_id))


# --- licenses ---


@router.get("/api/licenses")
async def list_licenses(request: Request) -> Response:
    return await _call(request, _stub(request).ListLicenses, admin_pb2.ListLicensesRequest())


@router.post("/api/licenses")
async def create_license(request: Request) -> Response:
    message = _parse(await _body(request), admin_pb2.CreateLicenseRequest())
    return await _call(request, _stub(request).CreateLicense, message, status=201)


@router.patch("/api/licenses/{license_id}")
async def update_license(license_id: str, request: Request) -> Response:
    """JSON in REST's terms -> UpdateLicenseRequest: `null` clears the allow-list, quota, expiry
    or a limit (rpm_limit, tpm_limit, token_budget)."""
    body = await _body(request)
    message = admin_pb2.UpdateLicenseRequest(id=license_id)
    if "allowed_models" in body:
        models = body.pop("allowed_models")
        if models is not None and not (isinstance(models, list) and all(isinstance(m, str) for m in models)):
            raise OpenAIError(400, "allowed_models: expected a list of model ids, or null for every model.")
        message.allowed_models.SetInParent()
        message.allowed_models.models.extend(models or [])
    for field in ("request_quota", "expires_at", "rpm_limit", "tpm_limit", "token_budget"):
        if field in body and body[field] is None:
            body.pop(field)
            setattr(message, f"clear_{field}", True)
    return await _call(request, _stub(request).UpdateLicense, _parse({**body, "id": license_id}, message))


@router.post("/api/licenses/{license_id}/revoke")
async def revoke_license(license_id: str, request: Request) -> Response:
    return await _call(request, _stub(request).RevokeLicense, admin_pb2.RevokeLicenseRequest(id=license_id))


# --- request log ---


def _iso_time(name: str, value: str) -> str:
    """An ISO 8601 time from a query string as RFC 3339 for the JSON mapping (no zone: UTC)."""
    try:
        parsed = datetime.fromisoformat(value.strip())
    except ValueError:
        raise OpenAIError(
            400, f"{name}: expected an ISO 8601 time such as 2026-11-26T08:00:00Z.", param=name
        ) from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    if not 1970 <= parsed.astimezone(UTC).year <= 9999:
        raise OpenAIError(400, f"{name}: must be between 1970 and 9999.", param=name)
    return parsed.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _query(request: Request, message: Req, names: dict[str, str], times: tuple[str, ...] = ()) -> Req:
    """Query parameters -> a request message: `names` maps each accepted parameter to its field;
    `times` are ISO 8601 parameters. Unknown parameters are an error, not silently ignored."""
    data: dict[str, Any] = {}
    for key, value in request.query_params.items():
        field = names.get(key)
        if field is None:
            raise OpenAIError(
                400,
                f"Unknown query parameter '{key[:40]}'; expected one of {', '.join(names)}.",
                param=key[:40],
            )
        data[field] = _iso_time(key, value) if key in times else value
    try:
        return ParseDict(data, message)
    except ParseError as err:
        raise OpenAIError(400, f"Invalid query parameter: {str(err)[:300]}") from None


REQUEST_FILTERS = {
    "limit": "limit",
    "license": "license_id",
    "model": "model",
    "account": "account_id",
    "outcome": "outcome",
    "since": "since",
    "until": "until",
    "before_id": "before_id",
}
USAGE_PARAMS = {"group_by": "group_by", "bucket": "bucket", "since": "since", "until": "until"}


@router.get("/api/requests")
async def list_requests(request: Request) -> Response:
    """`?license=&model=&account=&outcome=&since=&until=&limit=&before_id=`; the answer's
    `next_before_id` is the next page's `before_id` ("0": no older page)."""
    message = _query(request, admin_pb2.ListRequestsRequest(), REQUEST_FILTERS, ("since", "until"))
    return await _call(request, _stub(request).ListRequests, message)


@router.get("/api/usage")
async def usage_series(request: Request) -> Response:
    """`?group_by=model|license|account&bucket=minute|hour|day&since=ISO&until=ISO`."""
    message = _query(request, admin_pb2.GetUsageSeriesRequest(), USAGE_PARAMS, ("since", "until"))
    return await _call(request, _stub(request).GetUsageSeries, message)


# --- model aliases ---


@router.get("/api/aliases")
async def list_aliases(request: Request) -> Response:
    return await _call(request, _stub(request).ListAliases, admin_pb2.ListAliasesRequest())


@router.put("/api/aliases/{name:path}")
async def set_alias(name: str, request: Request) -> Response:
    """Body `{"targets": ["model", "fallback"]}` (a single string is accepted too)."""
    body = await _body(request)
    if isinstance(body.get("targets"), str):
        body["targets"] = [body["targets"]]
    message = _parse({**body, "name": name}, admin_pb2.SetAliasRequest())
    return await _call(request, _stub(request).SetAlias, message)


@router.delete("/api/aliases/{name:path}")
async def delete_alias(name: str, request: Request) -> Response:
    return await _call(request, _stub(request).DeleteAlias, admin_pb2.DeleteAliasRequest(name=name))


# --- the page ---


def _static(name: str) -> bytes:
    return resources.files("facade.admin").joinpath("static", name).read_bytes()


@router.get("")
async def page(request: Request) -> Response:
    return Response(_static("admin.html"), media_type="text/html; charset=utf-8", headers=PAGE_HEADERS)


@router.get("/admin.js")
async def script(request: Request) -> Response:
    return Response(_static("admin.js"), media_type="text/javascript; charset=utf-8", headers=PAGE_HEADERS)


# The chart library, as npm publishes it (`make vendor`; version and license beside it).
VENDOR_FILES = {
    "uPlot.iife.min.js": "text/javascript; charset=utf-8",
    "uPlot.min.css": "text/css; charset=utf-8",
    "uPlot.LICENSE": "text/plain; charset=utf-8",
}


@router.get("/vendor/{name}")
async def vendor(name: str, request: Request) -> Response:
    media_type = VENDOR_FILES.get(name)
    if media_type is None:
        raise OpenAIError(404, "No such file.", code="not_found")
    return Response(_static(f"vendor/{name}"), media_type=media_type, headers=PAGE_HEADERS)


@router.get("/admin.css")
async def style(request: Request) -> Response:
    return Response(_static("admin.css"), media_type="text/css; charset=utf-8", headers=PAGE_HEADERS)
