"""Upstream error classification (core/upstream/errors.py), as tables written out by hand.

Each row is one thing Cursor (or the transport) can answer and what the gateway must make of it:
the failure family, the gateway error code and gRPC status the caller gets, whether another account
is tried, and whether Cursor's own title may reach the caller. None of it is read from the
classifier's tables: deleting or moving an entry there makes a row here fail.
"""

from __future__ import annotations

import grpc
import pytest
from connectrpc.code import Code as ConnectCode
from connectrpc.errors import ConnectError
from protobuf.wkt import Any as ConnectAny

from aiserver.v1 import errors_pb2 as cursor_errors
from core.upstream.errors import (
    USER_ABORTED,
    Failure,
    UpstreamError,
    caller_fault,
    classify,
    error_details,
)
from cursorgate.v1 import errors_pb2

DETAILS_TYPE = "type.googleapis.com/aiserver.v1.ErrorDetails"
TITLE = "Title from Cursor"

# The gateway's own words per family (what callers read), spelled out.
AUTH_TEXT = "Cursor rejected the account's token."
RATE_TEXT = "Cursor rate-limited the request."
USAGE_TEXT = "The Cursor account's usage limit is reached."
UNAVAILABLE_TEXT = "Cursor is unavailable."
OUTDATED_TEXT = "Cursor refused the gateway's client version; raise CURSORGATE_CLIENT_VERSION."
BAD_MODEL_TEXT = "Cursor does not know this model."
MAX_MODE_TEXT = (
    "Cursor serves this model only in Max mode: append '-max' to the model name, "
    'or add "max_mode": true to the request body.'
)
BAD_REQUEST_TEXT = "Cursor refused the request."
REGION_TEXT = "Cursor does not serve this model in the region of the accounts that offer it."
MODEL_BLOCKED_TEXT = "Cursor blocks this model for the accounts that offer it."
ACCOUNT_BLOCKED_TEXT = "Cursor blocked or closed the account."
TOO_LARGE_TEXT = "The request is larger than Cursor accepts; shorten it or send smaller images."
TIMEOUT_TEXT = "Cursor timed out."
PROTOCOL_TEXT = "Cursor's answer could not be read."
OTHER_TEXT = "Cursor failed."

# family -> (gateway code, gRPC status, retried on another account, gateway text, relays Cursor's title)
FAMILY = {
    "auth": ("ERROR_CODE_UPSTREAM_AUTH", grpc.StatusCode.FAILED_PRECONDITION, True, AUTH_TEXT, False),
    "rate": ("ERROR_CODE_RATE_LIMITED", grpc.StatusCode.RESOURCE_EXHAUSTED, True, RATE_TEXT, True),
    "usage": ("ERROR_CODE_QUOTA_EXCEEDED", grpc.StatusCode.RESOURCE_EXHAUSTED, True, USAGE_TEXT, True),
    "unavailable": (
        "ERROR_CODE_UPSTREAM_UNAVAILABLE",
        grpc.StatusCode.UNAVAILABLE,
        True,
        UNAVAILABLE_TEXT,
        True,
    ),
    "outdated": (
        "ERROR_CODE_UPSTREAM_OUTDATED_CLIENT",
        grpc.StatusCode.FAILED_PRECONDITION,
        False,
        OUTDATED_TEXT,
        True,
    ),
    "bad_model": ("ERROR_CODE_MODEL_NOT_FOUND", grpc.StatusCode.NOT_FOUND, False, BAD_MODEL_TEXT, True),
    "max_mode": (
        "ERROR_CODE_MAX_MODE_REQUIRED",
        grpc.StatusCode.FAILED_PRECONDITION,
        False,
        MAX_MODE_TEXT,
        True,
    ),
    "bad_request": (
        "ERROR_CODE_INVALID_REQUEST",
        grpc.StatusCode.INVALID_ARGUMENT,
        False,
        BAD_REQUEST_TEXT,
        True,
    ),
    "region": ("ERROR_CODE_MODEL_NOT_ALLOWED", grpc.StatusCode.PERMISSION_DENIED, True, REGION_TEXT, True),
    "model_blocked": (
        "ERROR_CODE_MODEL_NOT_ALLOWED",
        grpc.StatusCode.PERMISSION_DENIED,
        True,
        MODEL_BLOCKED_TEXT,
        True,
    ),
    "account_blocked": (
        "ERROR_CODE_UPSTREAM_AUTH",
        grpc.StatusCode.FAILED_PRECONDITION,
        True,
        ACCOUNT_BLOCKED_TEXT,
        False,
    ),
    "too_large": (
        "ERROR_CODE_REQUEST_TOO_LARGE",
        grpc.StatusCode.INVALID_ARGUMENT,
        False,
        TOO_LARGE_TEXT,
        True,
    ),
    "timeout": ("ERROR_CODE_UPSTREAM_TIMEOUT", grpc.StatusCode.DEADLINE_EXCEEDED, False, TIMEOUT_TEXT, True),
    "protocol": ("ERROR_CODE_UPSTREAM_ERROR", grpc.StatusCode.INTERNAL, False, PROTOCOL_TEXT, True),
    "other": ("ERROR_CODE_UPSTREAM_ERROR", grpc.StatusCode.INTERNAL, False, OTHER_TEXT, True),
}

# ErrorDetails.Error (by name, as docs/cursor-protocol.md lists them) -> family. Sent with an
# UNKNOWN Connect code, so only the enum can decide.
BY_DETAIL = [
    ("ERROR_BAD_API_KEY", "auth"),
    ("ERROR_NOT_LOGGED_IN", "auth"),
    ("ERROR_INVALID_AUTH_ID", "auth"),
    ("ERROR_AUTH_TOKEN_NOT_FOUND", "auth"),
    ("ERROR_AUTH_TOKEN_EXPIRED", "auth"),
    ("ERROR_UNAUTHORIZED", "auth"),
    ("ERROR_BAD_USER_API_KEY", "auth"),
    ("ERROR_USER_NOT_FOUND", "auth"),
    ("ERROR_AGENT_REQUIRES_LOGIN", "auth"),
    ("ERROR_FREE_USER_RATE_LIMIT_EXCEEDED", "rate"),
    ("ERROR_PRO_USER_RATE_LIMIT_EXCEEDED", "rate"),
    ("ERROR_OPENAI_RATE_LIMIT_EXCEEDED", "rate"),
    ("ERROR_GENERIC_RATE_LIMIT_EXCEEDED", "rate"),
    ("ERROR_GPT_4_VISION_PREVIEW_RATE_LIMIT", "rate"),
    ("ERROR_API_KEY_RATE_LIMIT", "rate"),
    ("ERROR_RATE_LIMITED", "rate"),
    ("ERROR_RATE_LIMITED_CHANGEABLE", "rate"),
    ("ERROR_DEBOUNCED", "rate"),
    ("ERROR_SLOW_POOL", "usage"),
    ("ERROR_FREE_USER_USAGE_LIMIT", "usage"),
    ("ERROR_PRO_USER_USAGE_LIMIT", "usage"),
    ("ERROR_RESOURCE_EXHAUSTED", "usage"),
    ("ERROR_USAGE_PRICING_REQUIRED", "usage"),
    ("ERROR_USAGE_PRICING_REQUIRED_CHANGEABLE", "usage"),
    ("ERROR_OPENAI_ACCOUNT_LIMIT_EXCEEDED", "usage"),
    ("ERROR_NOT_HIGH_ENOUGH_PERMISSIONS", "usage"),
    ("ERROR_PRO_USER_ONLY", "usage"),
    ("ERROR_PROVIDER_ERROR", "unavailable"),
    ("ERROR_INTERNAL", "unavailable"),
    ("ERROR_MAX_MODE_REQUIRED", "max_mode"),
    ("ERROR_MODEL_NO_LONGER_SUPPORTED", "bad_model"),
    ("ERROR_BAD_MODEL_NAME", "bad_model"),
    ("ERROR_MODEL_BLOCKED", "model_blocked"),
    ("ERROR_UNSUPPORTED_REGION", "region"),
    ("ERROR_SUSPICIOUS_USAGE_BLOCKED", "account_blocked"),
    ("ERROR_ACCOUNT_CLOSED", "account_blocked"),
    ("ERROR_OUTDATED_CLIENT", "outdated"),
    ("ERROR_DEPRECATED", "outdated"),
    ("ERROR_CONVERSATION_TOO_LONG", "bad_request"),
    ("ERROR_MAX_TOKENS", "bad_request"),
    ("ERROR_CLAUDE_IMAGE_TOO_LARGE", "bad_request"),
    ("ERROR_FILE_UNSUPPORTED", "bad_request"),
    ("ERROR_BAD_REQUEST", "bad_request"),
    ("ERROR_TIMEOUT", "timeout"),
    # Enum values the gateway has no rule for: the Connect code decides (UNKNOWN -> other).
    ("ERROR_UNSPECIFIED", "other"),
    ("ERROR_CUSTOM", "other"),
]

# Connect code, no details -> family.
BY_CODE = [
    (ConnectCode.UNAUTHENTICATED, "auth"),
    (ConnectCode.PERMISSION_DENIED, "auth"),
    (ConnectCode.RESOURCE_EXHAUSTED, "rate"),
    (ConnectCode.UNAVAILABLE, "unavailable"),
    (ConnectCode.DEADLINE_EXCEEDED, "timeout"),
    (ConnectCode.INVALID_ARGUMENT, "bad_request"),
    (ConnectCode.FAILED_PRECONDITION, "bad_request"),
    (ConnectCode.OUT_OF_RANGE, "bad_request"),
    (ConnectCode.NOT_FOUND, "bad_model"),
    (ConnectCode.INTERNAL, "protocol"),
    (ConnectCode.UNKNOWN, "other"),
    (ConnectCode.ABORTED, "other"),
    (ConnectCode.CANCELED, "other"),
]


def with_details(
    code: ConnectCode,
    error: str | int,
    *,
    title: str = TITLE,
    detail: str = "",
    message: str = "m",
    extra: dict[str, str] | None = None,
) -> ConnectError:
    value = cursor_errors.ErrorDetails.Error.Value(error) if isinstance(error, str) else error
    details = cursor_errors.ErrorDetails(
        error=value,  # type: ignore[arg-type]
        details=cursor_errors.CustomErrorDetails(title=title, detail=detail),
    )
    for key, item in (extra or {}).items():
        details.details.additional_info[key] = item
    packed = ConnectAny(type_url=DETAILS_TYPE, value=details.SerializeToString())
    return ConnectError(code, message, details=[packed])


def assert_family(err: UpstreamError, family: str, *, title: str | None = None) -> None:
    code, status, retryable, text, relays = FAMILY[family]
    assert errors_pb2.ErrorCode.Name(err.code) == code
    assert err.status_code == status
    assert err.retryable is retryable
    if title and relays:
        assert err.message == f"{text} Cursor says: {title}"
    else:
        assert err.message == text
    assert err.param == ("model" if family in ("bad_model", "max_mode") else "")


@pytest.mark.parametrize(("error", "family"), BY_DETAIL)
def test_every_error_detail(error: str, family: str) -> None:
    err = classify(with_details(ConnectCode.UNKNOWN, error))
    assert_family(err, family, title=TITLE)


@pytest.mark.parametrize(("code", "family"), BY_CODE)
def test_every_connect_code_without_details(code: ConnectCode, family: str) -> None:
    err = classify(ConnectError(code, "something went wrong"))
    assert_family(err, family)
    assert err.retry_after_s == 0.0 and err.retry_after_ms == 0


@pytest.mark.parametrize(
    ("words", "family"),
    [
        ("Update Required", "outdated"),
        ("Your version no longer supports this", "outdated"),
        ("outdated client", "outdated"),
        ("Please update Cursor to continue", "outdated"),
        ("Not supported in your region", "region"),
        ("unsupported region", "region"),
        ("reason=unsupported_region", "region"),
        ("Max Mode Required", "max_mode"),
        ("This model requires Max Mode", "max_mode"),
        ("model_blocked", "model_blocked"),
        ("Model blocked", "model_blocked"),
        ("This model is blocked for this account", "model_blocked"),
    ],
)
def test_cursors_words_outrank_the_enum_and_the_code(words: str, family: str) -> None:
    """Wherever the words are (title, detail, message), they beat a rate-limit enum and code."""
    rate = "ERROR_RATE_LIMITED"
    assert_family(
        classify(with_details(ConnectCode.RESOURCE_EXHAUSTED, rate, title=words)), family, title=words
    )
    in_detail = classify(with_details(ConnectCode.RESOURCE_EXHAUSTED, rate, title="", detail=words))
    assert_family(in_detail, family)
    in_message = classify(with_details(ConnectCode.RESOURCE_EXHAUSTED, rate, title="", message=words))
    assert_family(in_message, family)
    assert_family(classify(ConnectError(ConnectCode.RESOURCE_EXHAUSTED, words)), family)


def test_words_of_an_unavailable_transport_are_not_read() -> None:
    """Without details, UNAVAILABLE is the connection's failure whatever its text says."""
    err = classify(ConnectError(ConnectCode.UNAVAILABLE, "update required by proxy"))
    assert_family(err, "unavailable")


@pytest.mark.parametrize(
    "message",
    ["message is larger than configured max 4194304", "Request entity TOO LARGE", "image too large"],
)
def test_too_large_is_the_callers_fault_whatever_the_code(message: str) -> None:
    assert caller_fault(ConnectError(ConnectCode.RESOURCE_EXHAUSTED, message)) is Failure.TOO_LARGE
    assert_family(classify(ConnectError(ConnectCode.RESOURCE_EXHAUSTED, message)), "too_large")
    assert_family(classify(ConnectError(ConnectCode.UNAVAILABLE, message)), "too_large")
    # With details too: the words outrank a rate-limit enum (no cooldown for everyone).
    detailed = with_details(ConnectCode.RESOURCE_EXHAUSTED, "ERROR_RATE_LIMITED", message=message)
    assert_family(classify(detailed), "too_large", title=TITLE)


def test_caller_fault_is_none_for_other_texts() -> None:
    assert caller_fault(ConnectError(ConnectCode.RESOURCE_EXHAUSTED, "slow down")) is None


@pytest.mark.parametrize(
    "message",
    ["unmarshal message: bad wire type", "protocol error: short frame", "corrupt response body"],
)
def test_local_protocol_failures(message: str) -> None:
    """connectrpc's own reading failures carry invalid_argument; they are not Cursor refusing us."""
    assert_family(classify(ConnectError(ConnectCode.INVALID_ARGUMENT, message)), "protocol")
    assert_family(classify(ConnectError(ConnectCode.UNAVAILABLE, message)), "protocol")


def test_a_protocol_phrase_later_in_the_text_is_not_local() -> None:
    err = classify(ConnectError(ConnectCode.INVALID_ARGUMENT, "bad input: protocol error"))
    assert_family(err, "bad_request")


def test_a_detail_with_an_unknown_enum_falls_back_to_words_then_code() -> None:
    unknown = with_details(ConnectCode.INVALID_ARGUMENT, "ERROR_CUSTOM", message="unmarshal message: x")
    assert_family(classify(unknown), "protocol", title=TITLE)
    too_large = with_details(ConnectCode.UNAVAILABLE, "ERROR_CUSTOM", message="too large")
    assert_family(classify(too_large), "too_large", title=TITLE)
    plain = with_details(ConnectCode.NOT_FOUND, "ERROR_CUSTOM")
    assert_family(classify(plain), "bad_model", title=TITLE)


@pytest.mark.parametrize("error", ["ERROR_NOT_LOGGED_IN", "ERROR_AUTH_TOKEN_EXPIRED", "ERROR_ACCOUNT_CLOSED"])
def test_cursors_words_never_reach_the_caller_on_account_failures(error: str) -> None:
    secretish = "token eyJhbGciOi... of user@example.com is invalid"
    err = classify(
        with_details(ConnectCode.UNAUTHENTICATED, error, title=secretish, detail=secretish, message=secretish)
    )
    assert "Cursor says" not in err.message and "eyJ" not in err.message and "example.com" not in err.message
    assert err.message in (AUTH_TEXT, ACCOUNT_BLOCKED_TEXT)


def test_an_empty_title_adds_nothing() -> None:
    err = classify(with_details(ConnectCode.RESOURCE_EXHAUSTED, "ERROR_PRO_USER_USAGE_LIMIT", title=""))
    assert err.message == USAGE_TEXT


@pytest.mark.parametrize(
    ("hint", "seconds", "ms"),
    [("12", 12.0, 12_000), ("0.25", 0.25, 250), ("soon", 0.0, 0), ("", 0.0, 0)],
)
def test_retry_after_hint(hint: str, seconds: float, ms: int) -> None:
    extra = {"retry_after_seconds": hint}
    err = classify(with_details(ConnectCode.RESOURCE_EXHAUSTED, "ERROR_RATE_LIMITED", extra=extra))
    assert (err.retry_after_s, err.retry_after_ms) == (seconds, ms)
    assert err.to_info().retry_after_ms == ms


def test_no_retry_hint_means_zero() -> None:
    err = classify(with_details(ConnectCode.RESOURCE_EXHAUSTED, "ERROR_RATE_LIMITED", extra={"other": "5"}))
    assert (err.retry_after_s, err.retry_after_ms) == (0.0, 0)


def test_error_details_reads_only_cursors_type() -> None:
    good = with_details(ConnectCode.UNKNOWN, "ERROR_TIMEOUT")
    found = error_details(good)
    assert found is not None and found.error == 25 and found.details.title == TITLE
    foreign = ConnectAny(type_url="type.googleapis.com/other.Detail", value=b"\x08\x19")
    assert error_details(ConnectError(ConnectCode.UNKNOWN, "x", details=[foreign])) is None
    garbled = ConnectAny(type_url=DETAILS_TYPE, value=b"\xff\xff")
    assert error_details(ConnectError(ConnectCode.UNKNOWN, "x", details=[garbled])) is None
    # Cursor's detail after a foreign one is still found.
    both = ConnectError(ConnectCode.UNKNOWN, "x", details=[foreign, *good.details])
    second = error_details(both)
    assert second is not None and second.error == 25


def test_user_aborted_is_enum_21() -> None:
    assert USER_ABORTED == 21


@pytest.mark.parametrize(
    ("failure", "param"),
    [
        (Failure.BAD_MODEL, "model"),
        (Failure.MAX_MODE_REQUIRED, "model"),
        (Failure.BAD_REQUEST, ""),
        (Failure.AUTH, ""),
    ],
)
def test_upstream_error_param_and_retry_conversion(failure: Failure, param: str) -> None:
    err = UpstreamError(failure, "words", retry_after_s=1.5)
    assert err.param == param and err.retry_after_ms == 1500 and err.retry_after_s == 1.5
    assert err.failure is failure and err.message == "words"


def test_an_upstream_error_without_a_hint_asks_for_no_wait() -> None:
    err = UpstreamError(Failure.RATE_LIMITED, "words")
    assert (err.retry_after_s, err.retry_after_ms) == (0.0, 0)


def test_words_split_between_title_and_detail_are_read_as_one_text() -> None:
    """Title, detail and message are read joined by a space, so a phrase Cursor splits between
    its title and its detail is still recognised."""
    err = classify(
        with_details(ConnectCode.RESOURCE_EXHAUSTED, "ERROR_RATE_LIMITED", title="Update", detail="required")
    )
    assert err.failure is Failure.OUTDATED_CLIENT
