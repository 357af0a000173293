"""Rows <-> the in-memory objects core works with."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from core.chat.catalog import ModelInfo
from core.licensing.licenses import License
from core.licensing.secrets import hash_key
from core.pool.accounts import Account
from core.store.tables import AccountRow, LicenseRow


def license_from_row(row: LicenseRow) -> License:
    return License(
        id=row.id,
        key_hash=row.key_hash,
        name=row.name,
        allowed_models=frozenset(row.allowed_models) if row.allowed_models is not None else None,
        expires_at=row.expires_at,
        revoked=row.revoked_at is not None,
        revoked_at=row.revoked_at,
        request_quota=row.request_quota,
        requests_used=row.requests_used,
        created_at=row.created_at,
        key_prefix=row.key_prefix,
        rpm_limit=row.rpm_limit,
        tpm_limit=row.tpm_limit,
        token_budget=row.token_budget,
        budget_period=row.budget_period or "",
        budget_used=row.budget_used or 0,
        budget_period_start=row.budget_period_start or 0.0,
    )


def license_to_row(lic: License) -> LicenseRow:
    return LicenseRow(
        id=lic.id,
        name=lic.name,
        key_hash=lic.key_hash,
        key_prefix=lic.key_prefix,
        created_at=lic.created_at,
        expires_at=lic.expires_at,
        revoked_at=lic.revoked_at,
        allowed_models=sorted(lic.allowed_models) if lic.allowed_models is not None else None,
        request_quota=lic.request_quota,
        requests_used=lic.requests_used,
        rpm_limit=lic.rpm_limit,
        tpm_limit=lic.tpm_limit,
        token_budget=lic.token_budget,
        budget_period=lic.budget_period,
        budget_used=lic.budget_used,
        budget_period_start=lic.budget_period_start,
    )


def models_to_json(models: dict[str, ModelInfo] | None) -> dict[str, Any] | None:
    return None if models is None else {name: asdict(info) for name, info in models.items()}


def models_from_json(data: dict[str, Any] | None) -> dict[str, ModelInfo] | None:
    if data is None:
        return None
    known = set(ModelInfo.__dataclass_fields__)
    return {name: ModelInfo(**{k: v for k, v in info.items() if k in known}) for name, info in data.items()}


# Columns that hold secrets: sealed at rest by the store when a secret key is configured.
SECRET_COLUMNS = ("token", "refresh_token", "api_key", "proxy")


def account_state(account: Account) -> dict[str, Any]:
    """The columns that change while core runs (persisted by the journal)."""
    return {
        "label": account.label,
        "enabled": account.enabled,
        "disabled_reason": account.disabled_reason,
        "client_version": account.client_version,
        "models": models_to_json(account.models),
        "details": dict(account.details),
        "last_error": account.last_error,
        "last_refreshed_at": account.last_refreshed_at,
        "cooldown_until": account.cooldown_until,
        "dialect": account.dialect,
        "dialect_state": dict(account.dialect_state),
        "auth_state": dict(account.auth_state),
        # Credentials change when a token is renewed; the store seals them (SECRET_COLUMNS).
        "token": account.token,
        "token_hash": hash_key(account.token),
        "refresh_token": account.refresh_token,
        "api_key": account.api_key,
        "proxy": account.proxy,
    }


def account_from_row(row: AccountRow) -> Account:
    return Account(
        id=row.id,
        token=row.token,
        label=row.label,
        enabled=row.enabled,
        client_version=row.client_version,
        models=models_from_json(row.models),
        cooldown_until=row.cooldown_until,
        disabled_reason=row.disabled_reason,
        last_error=row.last_error,
        details=dict(row.details or {}),
        created_at=row.created_at,
        last_refreshed_at=row.last_refreshed_at,
        dialect=row.dialect or "auto",
        dialect_state=dict(row.dialect_state or {}),
        refresh_token=row.refresh_token or "",
        api_key=row.api_key or "",
        auth_state=dict(row.auth_state or {}),
        proxy=row.proxy or "",
    )
