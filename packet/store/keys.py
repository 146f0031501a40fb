"""API keys: only digests and display prefixes, looked up on the hot path (cached)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, NamedTuple

from sqlalchemy import case, select, update

from .. import keys
from ..extensions import db
from ..key_controls import MONTH, TOTAL, KeyControls, parse_models, period_of
from ..models import Account, ApiKey, utcnow
from ._db import NotFoundError, StoreError, _page
from .accounts import get_account


class KeyRow(NamedTuple):
    key_id: int
    account_id: int
    account_name: str
    tier: str
    balance_micros: int
    default_model: str | None
    controls: KeyControls | None
    cache_default: bool = False


def find_active_key(digest: str) -> KeyRow | None:
    """The non-revoked key with this digest, joined to its account, with its controls."""
    row = db.session.execute(
        select(
            ApiKey.id,
            Account.id,
            Account.name,
            Account.tier,
            Account.balance_micros,
            Account.default_model,
            Account.cache_default,
            ApiKey.rpm,
            ApiKey.tpm,
            ApiKey.budget_micros,
            ApiKey.budget_period,
            ApiKey.models,
            ApiKey.expires_at,
            ApiKey.spent_micros,
            ApiKey.spent_period,
        )
        .join(Account, ApiKey.account_id == Account.id)
        .where(ApiKey.digest == digest, ApiKey.revoked_at.is_(None))
    ).first()
    db.session.rollback()
    if row is None:
        return None
    (key_id, account_id, name, tier, balance, default_model, cache_default, *controls) = row
    return KeyRow(
        key_id,
        account_id,
        name,
        tier,
        balance,
        default_model,
        _controls(*controls),
        bool(cache_default),
    )


def _controls(
    rpm: int | None,
    tpm: int | None,
    budget: int | None,
    period: str,
    models: str | None,
    expires: datetime | None,
    spent: int,
    spent_period: str | None,
) -> KeyControls | None:
    """The key's controls; None for a key that has none (the common, cheapest case)."""
    if rpm is None and tpm is None and budget is None and not models and expires is None:
        return None
    return KeyControls(
        rpm=rpm,
        tpm=tpm,
        budget_micros=budget,
        budget_period=period or MONTH,
        models=parse_models(models),
        expires_at=None if expires is None else _aware(expires).timestamp(),
        spent_micros=spent or 0,
        spent_period=spent_period,
    )


def _aware(value: datetime) -> datetime:
    """SQLite hands back naive datetimes; every time stored is UTC."""
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def create_key(
    account_name: str, label: str | None = None, controls: dict[str, Any] | None = None
) -> tuple[ApiKey, str]:
    """A new key for the account: the row, and the full key (shown once, never stored).
    ``controls``: see :func:`set_controls`."""
    account = get_account(account_name)
    key = keys.generate_key()
    row = ApiKey(
        account_id=account.id, digest=keys.digest(key), prefix=keys.display_prefix(key), label=label
    )
    _apply(row, controls or {})
    db.session.add(row)
    db.session.commit()
    return row, key


def find_live_key(key_or_prefix: str, account_name: str | None = None) -> ApiKey:
    """A live key by full key or by a display prefix that matches exactly one live key."""
    query = select(ApiKey).where(ApiKey.revoked_at.is_(None))
    if account_name is not None:
        query = query.where(ApiKey.account_id == get_account(account_name).id)
    if keys.is_well_formed(key_or_prefix):
        matches = list(
            db.session.execute(query.where(ApiKey.digest == keys.digest(key_or_prefix))).scalars()
        )
    else:
        matches = (
            [k for k in db.session.execute(query).scalars() if k.prefix.startswith(key_or_prefix)]
            if key_or_prefix
            else []
        )
    if not matches:
        raise NotFoundError("no live key matches that key or prefix")
    if len(matches) > 1:
        raise StoreError("that prefix matches several keys; give the full key")
    return matches[0]


def revoke_key(key_or_prefix: str, account_name: str | None = None) -> ApiKey:
    """Revoke by full key or by a display prefix that matches exactly one live key."""
    key = find_live_key(key_or_prefix, account_name)
    key.revoked_at = utcnow()
    db.session.commit()
    return key


def set_controls(key: ApiKey, changes: dict[str, Any]) -> ApiKey:
    """Change a key's label and controls: ``rpm``, ``tpm``, ``budget_micros``,
    ``budget_period``, ``models`` (a list of ids), ``expires_at``; None clears one. Keys not
    in ``changes`` stay as they are."""
    _apply(key, changes)
    db.session.commit()
    return key


def _apply(key: ApiKey, changes: dict[str, Any]) -> None:
    for name, value in changes.items():
        if name not in _SETTABLE:
            raise StoreError(f"a key has no setting {name!r}")
        if name == "models":
            value = "\n".join(sorted(set(value))) if value else None
        elif name == "budget_period":
            value = value or MONTH
        setattr(key, name, value)


_SETTABLE = ("label", "rpm", "tpm", "budget_micros", "budget_period", "models", "expires_at")


def get_key(key_id: int, account_name: str | None = None) -> ApiKey:
    """A key by id; with ``account_name``, only if it belongs to that account."""
    account_id = get_account(account_name).id if account_name is not None else None
    key = db.session.get(ApiKey, key_id)
    if key is None or (account_id is not None and key.account_id != account_id):
        raise NotFoundError(f"no key with id {key_id}")
    return key


def revoke_key_id(account_name: str, key_id: int) -> ApiKey:
    """Revoke one of the account's keys by id (revoking twice keeps the first time)."""
    key = get_key(key_id, account_name)
    if key.revoked_at is None:
        key.revoked_at = utcnow()
        db.session.commit()
    return key


def list_keys(account_name: str, offset: int = 0, limit: int | None = None) -> list[ApiKey]:
    """The account's keys, revoked ones included, oldest first."""
    account = get_account(account_name)
    return _page(
        select(ApiKey).where(ApiKey.account_id == account.id).order_by(ApiKey.id), offset, limit
    )


def add_spend(records: list[dict[str, Any]], now: float) -> None:
    """Inside a usage batch's transaction: add each key's costs to what it spent this period
    (a new period starts from zero), so a key's spend always equals its usage rows'."""
    costs: dict[int, int] = {}
    for row in records:
        key_id, cost = row.get("key_id"), row.get("cost_micros") or 0
        if key_id is not None and cost > 0:
            costs[key_id] = costs.get(key_id, 0) + cost
    month = period_of(MONTH, now)
    period = case((ApiKey.budget_period == TOTAL, TOTAL), else_=month)
    for key_id, cost in sorted(costs.items()):
        db.session.execute(
            update(ApiKey)
            .where(ApiKey.id == key_id)
            .values(
                spent_micros=case(
                    (ApiKey.spent_period == period, ApiKey.spent_micros + cost), else_=cost
                ),
                spent_period=period,
            )
        )
