"""API keys: only digests and display prefixes, looked up on the hot path (cached)."""

from __future__ import annotations

from typing import NamedTuple

from sqlalchemy import select

from .. import keys
from ..extensions import db
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
    cache_default: bool = False


def find_active_key(digest: str) -> KeyRow | None:
    """The non-revoked key with this digest, joined to its account."""
    row = db.session.execute(
        select(
            ApiKey.id,
            Account.id,
            Account.name,
            Account.tier,
            Account.balance_micros,
            Account.default_model,
            Account.cache_default,
        )
        .join(Account, ApiKey.account_id == Account.id)
        .where(ApiKey.digest == digest, ApiKey.revoked_at.is_(None))
    ).first()
    db.session.rollback()
    return KeyRow(*row) if row else None


def create_key(account_name: str, label: str | None = None) -> tuple[ApiKey, str]:
    """A new key for the account: the row, and the full key (shown once, never stored)."""
    account = get_account(account_name)
    key = keys.generate_key()
    row = ApiKey(
        account_id=account.id, digest=keys.digest(key), prefix=keys.display_prefix(key), label=label
    )
    db.session.add(row)
    db.session.commit()
    return row, key


def revoke_key(key_or_prefix: str, account_name: str | None = None) -> ApiKey:
    """Revoke by full key or by a display prefix that matches exactly one live key."""
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
    matches[0].revoked_at = utcnow()
    db.session.commit()
    return matches[0]


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
