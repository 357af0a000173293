"""Issue 14, findings 4, 8 and 10: hostile values through the admin API, the REST API and gRPC.

Each answer must be a clear 400/401/404 (INVALID_ARGUMENT in gRPC) in our words: no 500, no
UNKNOWN or INTERNAL carrying a Python exception's text, no 429 from an overflowing trailer.
"""

from __future__ import annotations

import base64
import json
import math
from collections.abc import Iterator

import grpc
import httpx
import pytest
from grpc_status import rpc_status

from core.api.admin_service import safe_account_proto
from core.errors import error_info_from_status
from core.pool.accounts import Account
from cursorgate.v1 import admin_pb2, admin_pb2_grpc, chat_pb2, chat_pb2_grpc, errors_pb2
from tests.procs import Stack, start_stack
from tests.store_backends import ADMIN_KEY


def jwt_with_payload(payload: str) -> str:
    """A JWT-shaped token whose payload is `payload` verbatim (JSON may spell 1e20, NaN...)."""

    def part(raw: bytes) -> str:
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()

    header = part(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    return f"{header}.{part(payload.encode())}.{part(payload.encode()[-12:] + b'-signature')}"


# The seeded account's token carries an exp no Timestamp can hold: stored before this fix (or
# put in the database by hand), it must not break the listing.
BAD_SEED = jwt_with_payload('{"sub": "auth0|user_bad_exp", "exp": 1e20}')


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    env = {"CURSORGATE_ADMIN_KEY": ADMIN_KEY, "CURSOR_TOKEN": BAD_SEED, "CURSORGATE_REQUEST_TIMEOUT": "600"}
    stack = start_stack(tmp_path_factory.mktemp("hostile"), env)
    yield stack
    stack.stop()


def license_md(stack: Stack) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {stack.license}"),)


ADMIN_MD = (("authorization", f"Bearer {ADMIN_KEY}"),)


def hello(model: str = "gpt-5.2") -> chat_pb2.ChatRequest:
    request = chat_pb2.ChatRequest(model=model)
    request.messages.add(role=chat_pb2.ROLE_USER).content.add(text="hello")
    return request


def assert_invalid_argument(
    error: grpc.aio.AioRpcError, *, param: str | None = None
) -> errors_pb2.ErrorInfo | None:
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, (error.code(), error.details())
    details = error.details() or ""
    for leak in ("Traceback", "Error(", "Exception", "DecodeError", "ValueError", "Unexpected"):
        assert leak not in details, details
    info = error_info_from_status(rpc_status.from_call(error))
    if param is not None:
        assert info is not None and info.param == param
    return info


# --- finding 4: a crafted token must not break the accounts listing ------------------------


@pytest.mark.parametrize(
    "payload",
    [
        '{"sub": "auth0|x", "exp": 1e20}',
        '{"sub": "auth0|x", "exp": NaN}',
        '{"sub": "auth0|x", "exp": Infinity}',
        '{"sub": "auth0|x", "exp": -5}',
        '{"sub": "auth0|x", "exp": "tomorrow"}',
        '{"sub": ["auth0|x"], "exp": 4102444800}',
    ],
)
def test_account_with_insane_claims_is_400(gateway: Stack, payload: str) -> None:
    response = gateway.admin("POST", "/accounts", {"token": jwt_with_payload(payload)})
    assert response.status_code == 400, response.text
    assert "claim" in response.json()["error"]["message"]


def test_one_bad_row_never_hides_the_others(gateway: Stack) -> None:
    good = gateway.admin(
        "POST", "/accounts", {"token": jwt_with_payload('{"sub": "auth0|good"}'), "label": "good"}
    )
    assert good.status_code == 201, good.text
    listed = gateway.admin("GET", "/accounts")
    assert listed.status_code == 200, listed.text
    accounts = listed.json()["accounts"]
    labels = {a["label"] for a in accounts}
    assert {"CURSOR_TOKEN", "good"} <= labels
    seeded = next(a for a in accounts if a["label"] == "CURSOR_TOKEN")
    assert seeded["subject"] == "auth0|user_bad_exp"
    assert "token_expires_at" not in seeded or not seeded["token_expires_at"]
    one = gateway.admin("GET", f"/accounts/{seeded['id']}")
    assert one.status_code == 200, one.text


def test_a_row_that_cannot_render_still_lists() -> None:
    """Whatever else a stored row holds that cannot be shown, the listing keeps the row."""
    broken = Account(
        id="acc_broken", token=jwt_with_payload('{"sub": "x"}'), label="broken", created_at=math.nan
    )
    out = safe_account_proto(broken)
    assert out.id == "acc_broken" and out.label == "broken" and "could not be shown" in out.last_error


# --- finding 8: long values are bounded early, never a 429 ---------------------------------


def test_huge_model_id_is_400_not_429(gateway: Stack) -> None:
    response = httpx.post(
        f"{gateway.base_url}/chat/completions",
        json={"model": "m" * 16_500, "messages": [{"role": "user", "content": "hi"}]},
        headers={"Authorization": f"Bearer {gateway.license}"},
        timeout=30,
    )
    assert response.status_code == 400, response.text[:300]
    assert response.json()["error"]["param"] == "model"
    assert len(response.text) < 2000


def test_huge_authorization_is_401_not_429(gateway: Stack) -> None:
    for path in ("/models", "/chat/completions"):
        response = httpx.request(
            "POST" if path.startswith("/chat") else "GET",
            f"{gateway.base_url}{path}",
            json={"model": "gpt-5.2", "messages": [{"role": "user", "content": "hi"}]},
            headers={"Authorization": "Bearer " + "k" * 17_500},
            timeout=30,
        )
        assert response.status_code == 401, (path, response.status_code, response.text[:300])


def test_huge_model_id_in_the_models_path_is_404_and_short(gateway: Stack) -> None:
    response = httpx.get(
        f"{gateway.base_url}/models/{'m' * 5000}",
        headers={"Authorization": f"Bearer {gateway.license}"},
        timeout=30,
    )
    assert response.status_code == 404
    assert len(response.json()["error"]["message"]) < 300


# --- finding 10: the gRPC API --------------------------------------------------------------


async def call_chat(stack: Stack, request: chat_pb2.ChatRequest) -> grpc.aio.AioRpcError:
    async with grpc.aio.insecure_channel(stack.grpc_target) as channel:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await chat_pb2_grpc.ChatServiceStub(channel).Chat(request, metadata=license_md(stack), timeout=30)
    return caught.value


async def create_license(
    stack: Stack, request: admin_pb2.CreateLicenseRequest
) -> admin_pb2.CreateLicenseResponse:
    async with grpc.aio.insecure_channel(stack.grpc_target) as channel:
        return await admin_pb2_grpc.AdminServiceStub(channel).CreateLicense(
            request, metadata=ADMIN_MD, timeout=30
        )


async def test_unknown_enum_value_is_invalid_argument(gateway: Stack) -> None:
    effort = hello()
    effort.reasoning_effort = 99  # type: ignore[assignment]
    assert_invalid_argument(await call_chat(gateway, effort), param="reasoning_effort")
    mode = hello()
    mode.tools.add(name="f")
    mode.tool_choice.mode = 42  # type: ignore[assignment]
    assert_invalid_argument(await call_chat(gateway, mode), param="tool_choice")


async def test_unknown_role_is_refused(gateway: Stack) -> None:
    request = hello()
    request.messages.add(role=17).content.add(text="who am I?")
    assert_invalid_argument(await call_chat(gateway, request), param="messages[1].role")


def _identity(data: bytes) -> bytes:
    return data


@pytest.mark.parametrize(
    "method",
    [
        "/cursorgate.v1.ChatService/Chat",
        "/cursorgate.v1.ChatService/StreamChat",
        "/cursorgate.v1.AdminService/CreateLicense",
    ],
)
async def test_malformed_bytes_are_invalid_argument(gateway: Stack, method: str) -> None:
    garbage = b"\x0a\xff\xff\xff\xff\x0f"  # field 1, a length running past the end
    metadata = ADMIN_MD if "Admin" in method else license_md(gateway)
    async with grpc.aio.insecure_channel(gateway.grpc_target) as channel:
        if "Stream" in method:
            stream = channel.unary_stream(
                method, request_serializer=_identity, response_deserializer=_identity
            )
            call = stream(garbage, metadata=metadata, timeout=30)
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await call.read()
        else:
            unary = channel.unary_unary(method, request_serializer=_identity, response_deserializer=_identity)
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await unary(garbage, metadata=metadata, timeout=30)
    assert_invalid_argument(caught.value)


async def test_expires_at_beyond_year_9999_is_invalid_argument(gateway: Stack) -> None:
    request = admin_pb2.CreateLicenseRequest(name="far future")
    request.expires_at.seconds = 400_000_000_000
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await create_license(gateway, request)
    assert_invalid_argument(caught.value)
    assert "expires_at" in (caught.value.details() or "")


async def test_allowed_models_is_capped(gateway: Stack) -> None:
    many = admin_pb2.CreateLicenseRequest(name="many", allowed_models=[f"m{i}" for i in range(5000)])
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await create_license(gateway, many)
    assert_invalid_argument(caught.value)
    some = admin_pb2.CreateLicenseRequest(name="some", allowed_models=[f"m{i}" for i in range(50)])
    assert (await create_license(gateway, some)).key


async def test_deadline_is_clamped_to_the_request_timeout(gateway: Stack) -> None:
    gateway.sim_control("reset", {})
    async with grpc.aio.insecure_channel(gateway.grpc_target) as channel:
        answer = await chat_pb2_grpc.ChatServiceStub(channel).Chat(
            hello(), metadata=license_md(gateway), timeout=1e8
        )
    assert answer.content
    [sent] = gateway.chat_requests()
    assert 0 < int(sent["headers"]["connect-timeout-ms"]) <= 600_000


def test_no_tracebacks_logged(gateway: Stack) -> None:
    assert "Traceback" not in gateway.logs()
