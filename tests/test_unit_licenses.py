"""License checks (core/licensing/licenses.py): who gets in, for which model, how often and how many at once.

Hashes are written out (sha256 of the literal keys), messages and codes spelled as callers read them.
"""

from __future__ import annotations

import asyncio
import time

import pytest

from core.errors import GatewayError
from core.licensing.licenses import License, LicenseRegistry, key_prefix, seed_license
from cursorgate.v1 import errors_pb2

# sha256("sk-one") and sha256("sk-two"), from `printf sk-one | sha256sum`.
ONE = "sk-one"
ONE_HASH = "456f1612bd25c6c8455039437bf441f43aa3b7d1c0b0047c712d5036dfebef0d"
TWO = "sk-two"

INVALID = "Invalid or missing license. Pass it as 'Authorization: Bearer <license>'."
QUOTA = "This license's request quota is used up."


def code_of(caught: pytest.ExceptionInfo[GatewayError]) -> str:
    return errors_pb2.ErrorCode.Name(caught.value.code)


def registry(**fields: object) -> tuple[LicenseRegistry, License]:
    lic = seed_license(ONE)
    for name, value in fields.items():
        setattr(lic, name, value)
    return LicenseRegistry([lic]), lic


def test_seed_license_is_hashed_and_idempotent() -> None:
    lic = seed_license(ONE)
    assert lic.key_hash == ONE_HASH
    assert lic.id == "env-456f1612bd25"
    assert lic.name == "from CURSORGATE_LICENSES"
    assert lic.key_prefix == "s"  # a quarter of a 6-character key, rounded down
    assert lic.allowed_models is None and lic.expires_at is None and lic.request_quota is None
    assert not lic.revoked and lic.requests_used == 0
    assert seed_license(ONE).id == lic.id


@pytest.mark.parametrize(
    ("key", "prefix"),
    [("", ""), ("abc", ""), ("abcd", "a"), ("abcdefgh", "ab"), ("x" * 40, "x" * 10), ("y" * 100, "y" * 10)],
)
def test_key_prefix(key: str, prefix: str) -> None:
    assert key_prefix(key) == prefix


def test_authenticate_finds_the_license_by_key() -> None:
    reg = LicenseRegistry.from_keys([ONE, TWO])
    assert len(reg) == 2
    assert reg.authenticate(ONE).key_hash == ONE_HASH
    assert reg.authenticate(TWO).id != reg.authenticate(ONE).id


@pytest.mark.parametrize("credential", [None, "", "sk-three", "SK-ONE", ONE + " ", ONE_HASH])
def test_authenticate_refuses_unknown_credentials(credential: str | None) -> None:
    reg = LicenseRegistry.from_keys([ONE])
    with pytest.raises(GatewayError) as caught:
        reg.authenticate(credential)
    assert code_of(caught) == "ERROR_CODE_UNAUTHENTICATED"
    assert caught.value.message == INVALID


def test_a_license_for_the_empty_key_does_not_admit_a_missing_one() -> None:
    reg = LicenseRegistry.from_keys([""])
    with pytest.raises(GatewayError):
        reg.authenticate(None)


def test_revoked_license() -> None:
    reg, _ = registry(revoked=True)
    with pytest.raises(GatewayError) as caught:
        reg.authenticate(ONE)
    assert code_of(caught) == "ERROR_CODE_UNAUTHENTICATED"
    assert caught.value.message == "This license has been revoked."


@pytest.mark.parametrize("offset", [-3600.0, -0.5])
def test_expired_license(offset: float) -> None:
    reg, _ = registry(expires_at=time.time() + offset)
    with pytest.raises(GatewayError) as caught:
        reg.authenticate(ONE)
    assert code_of(caught) == "ERROR_CODE_UNAUTHENTICATED"
    assert caught.value.message == "This license has expired."


def test_license_expiring_later_still_works() -> None:
    reg, lic = registry(expires_at=time.time() + 60)
    assert reg.authenticate(ONE) is lic


@pytest.mark.parametrize(
    ("allowed", "model", "via", "admitted"),
    [
        (None, "gpt-5.2", (), True),
        (frozenset({"gpt-5.2"}), "gpt-5.2", (), True),
        (frozenset({"gpt-5.2"}), "claude-4.5-sonnet", (), False),
        # An alias the operator listed opens the model it leads to ...
        (frozenset({"sonnet"}), "claude-4.5-sonnet", ("sonnet",), True),
        (frozenset({"sonnet"}), "claude-4.5-sonnet", ("other", "sonnet"), True),
        # ... an alias never opens a model the list does not name.
        (frozenset({"gpt-5.2"}), "claude-4.5-sonnet", ("sonnet",), False),
        (frozenset(), "gpt-5.2", (), False),
    ],
)
def test_allow_list(allowed: frozenset[str] | None, model: str, via: tuple[str, ...], admitted: bool) -> None:
    reg, lic = registry(allowed_models=allowed)
    assert lic.admits(model, via) is admitted
    assert lic.allows(model) is (allowed is None or model in allowed)
    if admitted:
        reg.authorize(lic, model, via)
        return
    with pytest.raises(GatewayError) as caught:
        reg.authorize(lic, model, via)
    assert code_of(caught) == "ERROR_CODE_MODEL_NOT_ALLOWED"
    assert caught.value.param == "model"
    expected = f"'{via[0]}' (served by '{model}')" if via else f"'{model}'"
    assert caught.value.message == f"This license may not use the model {expected}."


def test_refusal_names_the_alias_the_caller_used() -> None:
    reg, lic = registry(allowed_models=frozenset({"gpt-5.2"}))
    with pytest.raises(GatewayError) as caught:
        reg.authorize(lic, "claude-4.5-sonnet", ("sonnet", "claude-sonnet"))
    assert (
        caught.value.message == "This license may not use the model 'sonnet' (served by 'claude-4.5-sonnet')."
    )


@pytest.mark.parametrize(
    ("used", "quota", "admitted"), [(0, 1, True), (2, 3, True), (3, 3, False), (4, 3, False)]
)
def test_quota(used: int, quota: int, admitted: bool) -> None:
    reg, lic = registry(request_quota=quota, requests_used=used)
    if admitted:
        reg.authorize(lic, "gpt-5.2")
        return
    with pytest.raises(GatewayError) as caught:
        reg.authorize(lic, "gpt-5.2")
    assert code_of(caught) == "ERROR_CODE_QUOTA_EXCEEDED"
    assert caught.value.message == QUOTA


def test_zero_quota_admits_nothing() -> None:
    reg, lic = registry(request_quota=0)
    with pytest.raises(GatewayError):
        reg.authorize(lic, "gpt-5.2")


def test_concurrency_slots() -> None:
    lic = seed_license(ONE)
    reg = LicenseRegistry([lic], max_concurrent=2)
    with reg.slot(lic), reg.slot(lic):
        assert reg._in_flight == {lic.id: 2}
        with pytest.raises(GatewayError) as caught, reg.slot(lic):
            pass
        assert code_of(caught) == "ERROR_CODE_RATE_LIMITED"
        assert caught.value.message == "Too many concurrent requests for this license (at most 2)."
        assert caught.value.retry_after_ms == 1000
        assert reg._in_flight == {lic.id: 2}  # the refused request held nothing
    assert reg._in_flight == {}
    with reg.slot(lic):
        assert reg._in_flight == {lic.id: 1}


def test_slots_are_released_when_the_request_fails() -> None:
    lic = seed_license(ONE)
    reg = LicenseRegistry([lic], max_concurrent=1)
    with pytest.raises(RuntimeError), reg.slot(lic):
        raise RuntimeError("request failed")
    assert reg._in_flight == {}


def test_no_concurrency_limit_by_default() -> None:
    lic = seed_license(ONE)
    reg = LicenseRegistry([lic])
    with reg.slot(lic), reg.slot(lic), reg.slot(lic):
        assert reg._in_flight == {lic.id: 3}


async def test_use_counts_in_memory_and_tells_the_journal() -> None:
    told: list[str] = []
    lic = seed_license(ONE)
    reg = LicenseRegistry([lic], on_use=lambda used: told.append(used.id))
    await reg.use(lic)
    await reg.use(lic)
    assert lic.requests_used == 2 and told == [lic.id, lic.id]


async def test_use_without_a_journal_still_counts() -> None:
    lic = seed_license(ONE)
    await LicenseRegistry([lic]).use(lic)
    assert lic.requests_used == 1


async def test_quota_licenses_are_charged_durably_not_in_memory() -> None:
    charged: list[str] = []
    told: list[str] = []

    async def charge(lic: License) -> bool:
        charged.append(lic.id)
        return len(charged) <= 1

    lic = seed_license(ONE)
    lic.request_quota = 5
    reg = LicenseRegistry([lic], on_use=lambda used: told.append(used.id), charge=charge)
    await reg.use(lic)
    assert charged == [lic.id] and told == [] and lic.requests_used == 0
    with pytest.raises(GatewayError) as caught:
        await reg.use(lic)
    assert code_of(caught) == "ERROR_CODE_QUOTA_EXCEEDED" and caught.value.message == QUOTA


async def test_licenses_without_quota_are_not_charged() -> None:
    charged: list[str] = []

    async def charge(lic: License) -> bool:
        charged.append(lic.id)
        return True

    lic = seed_license(ONE)
    await LicenseRegistry([lic], charge=charge).use(lic)
    assert charged == [] and lic.requests_used == 1


def test_registry_lookups() -> None:
    first = License(id="l1", key_hash="h1", created_at=200.0)
    second = License(id="l2", key_hash="h2", created_at=100.0)
    reg = LicenseRegistry([first, second])
    assert [lic.id for lic in reg.all()] == ["l2", "l1"]  # oldest first
    assert reg.get("l1") is first and reg.get("nope") is None
    third = License(id="l3", key_hash="h3", created_at=300.0)
    reg.put(third)
    assert len(reg) == 3
    reg.replace_all([third])
    assert [lic.id for lic in reg.all()] == ["l3"] and reg.get("l1") is None


def test_a_license_expiring_this_very_second_is_expired(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("core.licensing.licenses.time.time", lambda: 1_800_000_000.0)
    reg, _ = registry(expires_at=1_800_000_000.0)
    with pytest.raises(GatewayError) as caught:
        reg.authenticate(ONE)
    assert caught.value.message == "This license has expired."


def test_an_empty_credential_matches_no_license() -> None:
    reg = LicenseRegistry.from_keys(["XXXX", ONE])
    with pytest.raises(GatewayError) as caught:
        reg.authenticate("")
    assert caught.value.message == INVALID


class _HeldStore:
    """charge_license answers what the test says, when the test says."""

    def __init__(self) -> None:
        self.answers: list[tuple[asyncio.Event, int | None]] = []

    async def charge_license(self, license_id: str, pending: int) -> int | None:
        release, stored = self.answers.pop(0)
        await release.wait()
        return stored


class _NoPending:
    def pending_usage(self, license_id: str) -> int:
        return 0


async def test_out_of_order_charges_count_each_use_once() -> None:
    """The last admitted use is answered after a refusal: the in-memory count stays the store's."""
    from core.store.quota import QuotaLedger

    store = _HeldStore()
    admitted, refused = asyncio.Event(), asyncio.Event()
    store.answers = [(admitted, 2), (refused, None)]
    ledger = QuotaLedger(store, _NoPending())  # type: ignore[arg-type]
    lic = License(id="lic_q", key_hash="h" * 64, request_quota=2, requests_used=1)
    first = asyncio.create_task(ledger.charge(lic))
    second = asyncio.create_task(ledger.charge(lic))
    await asyncio.sleep(0)
    refused.set()
    assert await second is False
    assert lic.requests_used == 2
    admitted.set()
    assert await first is True
    assert lic.requests_used == 2  # not 3: the store's 2 already counts this use
