"""How secrets are shown, hashed and compared."""

from __future__ import annotations

from core.licensing.licenses import key_prefix
from core.licensing.secrets import bearer, hash_key, mask, new_license


def test_license_display_prefix_never_reveals_much() -> None:
    generated = new_license()
    assert key_prefix(generated) == generated[:10]
    assert key_prefix("sk-test-license") == "sk-"
    assert key_prefix("sk-x") == "s"


def test_mask_keeps_only_the_ends() -> None:
    token = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl"
    assert mask(token) == "eyJh…dXJl"
    assert mask("short") == "…"


def test_licenses_are_stored_as_sha256() -> None:
    assert hash_key("sk-x") == "9df37f5e7cbc3c391d872742b5f286c242e733a09add9eeaa4d26a599bd90b20"
    assert hash_key("sk-x") != hash_key("sk-y")


def test_bearer_parsing() -> None:
    assert bearer("Bearer abc") == "abc"
    assert bearer("bearer  abc ") == "abc"
    assert bearer("Basic abc") is None
    assert bearer("Bearer ") is None
    assert bearer(None) is None
