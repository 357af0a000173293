"""Upstream failures, classified by what they mean for the account and for a retry."""

from __future__ import annotations

import contextlib
import enum

from connectrpc.code import Code as ConnectCode
from connectrpc.errors import ConnectError
from google.protobuf.message import DecodeError

from aiserver.v1 import errors_pb2
from core.errors import Code, GatewayError


class Failure(enum.Enum):
    # The account's token was refused: disable the account, try another.
    AUTH = "auth"
    # Rate limit or usage limit: cool the account down (honouring the hint), try another.
    RATE_LIMITED = "rate_limited"
    USAGE_LIMIT = "usage_limit"
    # Connection refused/reset, 5xx, stalled before the first frame: try another account.
    UNAVAILABLE = "unavailable"
    # Cursor wants a newer client: a configuration problem, retrying elsewhere won't help.
    OUTDATED_CLIENT = "outdated_client"
    BAD_MODEL = "bad_model"
    # The model is served only in Max mode: the caller must ask for it.
    MAX_MODE_REQUIRED = "max_mode_required"
    BAD_REQUEST = "bad_request"
    # This account may not use this model (its region, its plan's model gating): another account
    # may; the account stays healthy for everything else (never a cooldown, never disabled).
    REGION_BLOCKED = "region_blocked"
    MODEL_BLOCKED = "model_blocked"
    # Cursor blocked or closed the account itself: disable it, try another.
    ACCOUNT_BLOCKED = "account_blocked"
    # The request is over what Cursor accepts in one message: the caller's fault, like BAD_REQUEST.
    TOO_LARGE = "too_large"
    TIMEOUT = "timeout"
    # Malformed frames or an answer we cannot read.
    PROTOCOL = "protocol"
    OTHER = "other"


_CODES = {
    Failure.AUTH: Code.ERROR_CODE_UPSTREAM_AUTH,
    Failure.RATE_LIMITED: Code.ERROR_CODE_RATE_LIMITED,
    Failure.USAGE_LIMIT: Code.ERROR_CODE_QUOTA_EXCEEDED,
    Failure.UNAVAILABLE: Code.ERROR_CODE_UPSTREAM_UNAVAILABLE,
    Failure.OUTDATED_CLIENT: Code.ERROR_CODE_UPSTREAM_OUTDATED_CLIENT,
    Failure.BAD_MODEL: Code.ERROR_CODE_MODEL_NOT_FOUND,
    Failure.MAX_MODE_REQUIRED: Code.ERROR_CODE_MAX_MODE_REQUIRED,
    Failure.BAD_REQUEST: Code.ERROR_CODE_INVALID_REQUEST,
    Failure.REGION_BLOCKED: Code.ERROR_CODE_MODEL_NOT_ALLOWED,
    Failure.MODEL_BLOCKED: Code.ERROR_CODE_MODEL_NOT_ALLOWED,
    Failure.ACCOUNT_BLOCKED: Code.ERROR_CODE_UPSTREAM_AUTH,
    Failure.TOO_LARGE: Code.ERROR_CODE_REQUEST_TOO_LARGE,
    Failure.TIMEOUT: Code.ERROR_CODE_UPSTREAM_TIMEOUT,
    Failure.PROTOCOL: Code.ERROR_CODE_UPSTREAM_ERROR,
    Failure.OTHER: Code.ERROR_CODE_UPSTREAM_ERROR,
}

# Worth another account when nothing reached the caller yet.
RETRYABLE = frozenset(
    {
        Failure.AUTH,
        Failure.RATE_LIMITED,
        Failure.USAGE_LIMIT,
        Failure.UNAVAILABLE,
        Failure.REGION_BLOCKED,
        Failure.MODEL_BLOCKED,
        Failure.ACCOUNT_BLOCKED,
    }
)


class UpstreamError(GatewayError):
    def __init__(self, failure: Failure, message: str, *, retry_after_s: float = 0.0) -> None:
        super().__init__(_CODES[failure], message, retry_after_ms=int(retry_after_s * 1000))
        self.failure = failure
        self.retry_after_s = retry_after_s
        if failure in (Failure.BAD_MODEL, Failure.MAX_MODE_REQUIRED):
            self.param = "model"

    @property
    def retryable(self) -> bool:
        return self.failure in RETRYABLE


# --- Classifying what Cursor answered (docs/cursor-protocol.md, "Errors") ---

_E = errors_pb2.ErrorDetails.Error
_BY_DETAIL: dict[int, Failure] = {
    **dict.fromkeys(
        (
            _E.ERROR_BAD_API_KEY,
            _E.ERROR_NOT_LOGGED_IN,
            _E.ERROR_INVALID_AUTH_ID,
            _E.ERROR_AUTH_TOKEN_NOT_FOUND,
            _E.ERROR_AUTH_TOKEN_EXPIRED,
            _E.ERROR_UNAUTHORIZED,
            _E.ERROR_BAD_USER_API_KEY,
            _E.ERROR_USER_NOT_FOUND,
            _E.ERROR_AGENT_REQUIRES_LOGIN,
        ),
        Failure.AUTH,
    ),
    **dict.fromkeys(
        (
            _E.ERROR_FREE_USER_RATE_LIMIT_EXCEEDED,
            _E.ERROR_PRO_USER_RATE_LIMIT_EXCEEDED,
            _E.ERROR_OPENAI_RATE_LIMIT_EXCEEDED,
            _E.ERROR_GENERIC_RATE_LIMIT_EXCEEDED,
            _E.ERROR_GPT_4_VISION_PREVIEW_RATE_LIMIT,
            _E.ERROR_API_KEY_RATE_LIMIT,
            _E.ERROR_RATE_LIMITED,
            _E.ERROR_RATE_LIMITED_CHANGEABLE,
            _E.ERROR_DEBOUNCED,
        ),
        Failure.RATE_LIMITED,
    ),
    _E.ERROR_SLOW_POOL: Failure.USAGE_LIMIT,
    _E.ERROR_PROVIDER_ERROR: Failure.UNAVAILABLE,
    _E.ERROR_INTERNAL: Failure.UNAVAILABLE,
    _E.ERROR_MAX_MODE_REQUIRED: Failure.MAX_MODE_REQUIRED,
    _E.ERROR_MODEL_NO_LONGER_SUPPORTED: Failure.BAD_MODEL,
    _E.ERROR_MODEL_BLOCKED: Failure.MODEL_BLOCKED,
    _E.ERROR_UNSUPPORTED_REGION: Failure.REGION_BLOCKED,
    _E.ERROR_SUSPICIOUS_USAGE_BLOCKED: Failure.ACCOUNT_BLOCKED,
    _E.ERROR_ACCOUNT_CLOSED: Failure.ACCOUNT_BLOCKED,
    **dict.fromkeys(
        (
            _E.ERROR_FREE_USER_USAGE_LIMIT,
            _E.ERROR_PRO_USER_USAGE_LIMIT,
            _E.ERROR_RESOURCE_EXHAUSTED,
            _E.ERROR_USAGE_PRICING_REQUIRED,
            _E.ERROR_USAGE_PRICING_REQUIRED_CHANGEABLE,
            _E.ERROR_OPENAI_ACCOUNT_LIMIT_EXCEEDED,
            _E.ERROR_NOT_HIGH_ENOUGH_PERMISSIONS,
            _E.ERROR_PRO_USER_ONLY,
        ),
        Failure.USAGE_LIMIT,
    ),
    _E.ERROR_OUTDATED_CLIENT: Failure.OUTDATED_CLIENT,
    _E.ERROR_DEPRECATED: Failure.OUTDATED_CLIENT,
    _E.ERROR_BAD_MODEL_NAME: Failure.BAD_MODEL,
    **dict.fromkeys(
        (
            _E.ERROR_CONVERSATION_TOO_LONG,
            _E.ERROR_MAX_TOKENS,
            _E.ERROR_CLAUDE_IMAGE_TOO_LARGE,
            _E.ERROR_FILE_UNSUPPORTED,
            _E.ERROR_BAD_REQUEST,
        ),
        Failure.BAD_REQUEST,
    ),
    _E.ERROR_TIMEOUT: Failure.TIMEOUT,
}

_BY_CODE: dict[ConnectCode, Failure] = {
    ConnectCode.UNAUTHENTICATED: Failure.AUTH,
    ConnectCode.PERMISSION_DENIED: Failure.AUTH,
    ConnectCode.RESOURCE_EXHAUSTED: Failure.RATE_LIMITED,
    ConnectCode.UNAVAILABLE: Failure.UNAVAILABLE,
    ConnectCode.DEADLINE_EXCEEDED: Failure.TIMEOUT,
    ConnectCode.INVALID_ARGUMENT: Failure.BAD_REQUEST,
    ConnectCode.FAILED_PRECONDITION: Failure.BAD_REQUEST,
    ConnectCode.OUT_OF_RANGE: Failure.BAD_REQUEST,
    ConnectCode.NOT_FOUND: Failure.BAD_MODEL,
    ConnectCode.INTERNAL: Failure.PROTOCOL,
    ConnectCode.UNKNOWN: Failure.OTHER,
}

_MESSAGES = {
    Failure.AUTH: "Cursor rejected the account's token.",
    Failure.RATE_LIMITED: "Cursor rate-limited the request.",
    Failure.USAGE_LIMIT: "The Cursor account's usage limit is reached.",
    Failure.UNAVAILABLE: "Cursor is unavailable.",
    Failure.OUTDATED_CLIENT: "Cursor refused the gateway's client version; raise CURSORGATE_CLIENT_VERSION.",
    Failure.BAD_MODEL: "Cursor does not know this model.",
    Failure.MAX_MODE_REQUIRED: (
        "Cursor serves this model only in Max mode: append '-max' to the model name, "
        'or add "max_mode": true to the request body.'
    ),
    Failure.BAD_REQUEST: "Cursor refused the request.",
    Failure.REGION_BLOCKED: "Cursor does not serve this model in the region of the accounts that offer it.",
    Failure.MODEL_BLOCKED: "Cursor blocks this model for the accounts that offer it.",
    Failure.ACCOUNT_BLOCKED: "Cursor blocked or closed the account.",
    Failure.TOO_LARGE: "The request is larger than Cursor accepts; shorten it or send smaller images.",
    Failure.TIMEOUT: "Cursor timed out.",
    Failure.PROTOCOL: "Cursor's answer could not be read.",
    Failure.OTHER: "Cursor failed.",
}

USER_ABORTED = _E.ERROR_USER_ABORTED_REQUEST


def error_details(err: ConnectError) -> errors_pb2.ErrorDetails | None:
    for detail in err.details:
        if detail.type_name == "aiserver.v1.ErrorDetails":
            try:
                return errors_pb2.ErrorDetails.FromString(detail.message_bytes)
            except DecodeError:
                return None
    return None


# Messages connectrpc gives failures it detects itself while reading the answer (corrupt frames,
# truncated envelopes); the codes it picks for them (invalid_argument) would read as Cursor's own.
_LOCAL_PROTOCOL_FAILURES = ("unmarshal message", "protocol error", "corrupt response")


# What Cursor's words say, which outranks the enum: the legacy RPC answers current clients with
# enum values that read as rate limits (28) but titles such as "Update Required" (issue 9; NIX's
# STATUS.md quotes "Your version of Cursor no longer supports this action.").
_BY_TEXT: tuple[tuple[tuple[str, ...], Failure], ...] = (
    (
        ("update required", "no longer supports", "outdated client", "please update cursor"),
        Failure.OUTDATED_CLIENT,
    ),
    (("not supported in your region", "unsupported region", "unsupported_region"), Failure.REGION_BLOCKED),
    (("max mode required", "requires max mode"), Failure.MAX_MODE_REQUIRED),
    (("model_blocked", "model blocked", "blocked for this account"), Failure.MODEL_BLOCKED),
)


def _by_text(*texts: str) -> Failure | None:
    joined = " ".join(texts).lower()
    for needles, failure in _BY_TEXT:
        if any(n in joined for n in needles):
            return failure
    return None


# What Cursor (and connect servers) say when the request itself is the problem, whatever code
# they pick: resource_exhausted "message is larger than configured max" reads like a rate limit,
# but cooling accounts down for it would let one request take every account out for everyone.
_TOO_LARGE_TEXTS = ("larger than configured max", "too large")


def caller_fault(err: ConnectError) -> Failure | None:
    """TOO_LARGE when the error says the request was too big (the caller's fault: no cooldown,
    no failover), else None."""
    text = err.message.lower()
    if any(phrase in text for phrase in _TOO_LARGE_TEXTS):
        return Failure.TOO_LARGE
    return None


def classify(err: ConnectError) -> UpstreamError:
    """A Connect error from Cursor (or from the transport) as a typed upstream failure."""
    details = error_details(err)
    failure = None
    if details is not None:
        failure = _by_text(details.details.title, details.details.detail, err.message)
        if failure is None:
            failure = caller_fault(err) or _BY_DETAIL.get(details.error)
    elif err.code != ConnectCode.UNAVAILABLE:
        failure = _by_text(err.message)
    if failure is None and err.message.startswith(_LOCAL_PROTOCOL_FAILURES):
        failure = Failure.PROTOCOL
    if failure is None:
        failure = caller_fault(err)
    if failure is None:
        failure = _BY_CODE.get(err.code, Failure.OTHER)
    retry_after = 0.0
    text = _MESSAGES[failure]
    if details is not None:
        info = details.details
        with contextlib.suppress(ValueError):
            retry_after = float(info.additional_info.get("retry_after_seconds", "0"))
        # Cursor's own titles are safe to relay; they help users ("Usage limit reached").
        if info.title and failure not in (Failure.AUTH, Failure.ACCOUNT_BLOCKED):
            text = f"{text} Cursor says: {info.title}"
    return UpstreamError(failure, text, retry_after_s=retry_after)
