"""Accounts and their balances: created, credited, reserved from (atomic SQL only)."""

from __future__ import annotations

from sqlalchemy import select, update
from sqlalchemy.exc import IntegrityError

from ..extensions import db
from ..models import Account
from ._db import ConflictError, NotFoundError, _atomic, _page
from .ledger import add_balance_event


def get_account(name: str) -> Account:
    if "\x00" in name:  # no account can have it (PostgreSQL refuses NUL in text)
        raise NotFoundError(f"no account named {name!r}")
    account = db.session.execute(select(Account).where(Account.name == name)).scalar_one_or_none()
    if account is None:
        raise NotFoundError(f"no account named {name!r}")
    return account


def create_account(
    name: str,
    tier: str,
    balance_micros: int,
    default_model: str | None = None,
    actor: str = "operator",
) -> Account:
    duplicate = ConflictError(f"an account named {name!r} already exists")
    if db.session.execute(select(Account.id).where(Account.name == name)).first():
        raise duplicate
    account = Account(
        name=name, tier=tier, balance_micros=balance_micros, default_model=default_model
    )
    db.session.add(account)
    try:
        if balance_micros:
            db.session.flush()
            add_balance_event(account.id, balance_micros, "opening balance", actor)
        db.session.commit()
    except IntegrityError:  # a concurrent create won the race
        db.session.rollback()
        raise duplicate from None
    return account


def list_accounts(offset: int = 0, limit: int | None = None) -> list[Account]:
    """Accounts, oldest first; ``offset``/``limit`` page through them."""
    return _page(select(Account).order_by(Account.id), offset, limit)


def credit_account(
    name: str, amount_micros: int, reason: str = "credit", actor: str = "operator"
) -> Account:
    """Add (or, when negative, remove) balance atomically, with its ledger row."""
    account = get_account(name)
    with _atomic():
        db.session.execute(
            update(Account)
            .where(Account.id == account.id)
            .values(balance_micros=Account.balance_micros + amount_micros)
        )
        add_balance_event(account.id, amount_micros, reason, actor)
    db.session.refresh(account)
    return account


def update_account(
    name: str,
    *,
    tier: str | None = None,
    default_model: str | None = None,
    clear_default_model: bool = False,
    cache_default: bool | None = None,
) -> Account:
    account = get_account(name)
    if cache_default is not None:
        account.cache_default = cache_default
    if tier is not None:
        account.tier = tier
    if default_model is not None:
        account.default_model = default_model
    if clear_default_model:
        account.default_model = None
    db.session.commit()
    return account
