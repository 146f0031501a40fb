"""The persistence layer: every SQL statement the gateway runs lives here.

Balance changes are single atomic ``UPDATE … SET balance = balance ± n`` statements, so
concurrent workers and instances never lose an update.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, NamedTuple

from sqlalchemy import BigInteger, Integer, String, func, select, text, update
from sqlalchemy import exc as sa_exc
from sqlalchemy.exc import IntegrityError

from . import keys
from .extensions import db
from .models import Account, ApiKey, Endpoint, UsageRecord, utcnow


class EndpointRow(NamedTuple):
    id: int | None
    base_url: str
    upstream_key: str | None


class KeyRow(NamedTuple):
    key_id: int
    account_id: int
    account_name: str
    tier: str
    balance_micros: int
    default_model: str | None


class StoreError(ValueError):
    """A request to the store that cannot be carried out (unknown name, duplicate, …)."""


class NotFoundError(StoreError):
    """The named account, key or endpoint does not exist (the admin API answers 404)."""


class ConflictError(StoreError):
    """The change would duplicate something unique (the admin API answers 409)."""


@dataclass(frozen=True)
class Settlement:
    """One finished request's effect on its account: reservation released, cost charged."""

    account_id: int
    reserved_micros: int
    cost_micros: int


# --- hot path ---------------------------------------------------------------------------------


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
        )
        .join(Account, ApiKey.account_id == Account.id)
        .where(ApiKey.digest == digest, ApiKey.revoked_at.is_(None))
    ).first()
    db.session.rollback()
    return KeyRow(*row) if row else None


def account_endpoints(account_id: int) -> tuple[EndpointRow, ...]:
    """The account's own inference endpoints, oldest first."""
    rows = db.session.execute(
        select(Endpoint.id, Endpoint.base_url, Endpoint.upstream_key)
        .where(Endpoint.account_id == account_id)
        .order_by(Endpoint.id)
    ).all()
    db.session.rollback()
    return tuple(EndpointRow(*row) for row in rows)


@contextmanager
def _atomic() -> Iterator[None]:
    """Commit the block, or make sure none of it can ever be committed.

    A failed COMMIT can leave the DBAPI connection inside its transaction while SQLAlchemy
    believes it has ended; the pool would then hand the connection out again with the writes
    still pending, for the next user to commit — a balance change applied twice. Invalidating
    the connection closes it, which aborts that transaction in the database.
    """
    connection = db.session.connection()
    try:
        yield
        db.session.commit()
    except BaseException:
        connection.invalidate()
        db.session.rollback()
        raise


def reserve_balance(account_id: int, amount_micros: int) -> bool:
    """Atomically take ``amount`` from a positive balance; False when the balance is spent."""
    with _atomic():
        result = db.session.execute(
            update(Account)
            .where(Account.id == account_id, Account.balance_micros > 0)
            .values(balance_micros=Account.balance_micros - amount_micros)
        )
    return result.rowcount == 1


def lease_balance(account_id: int, amount_micros: int, floor_micros: int) -> bool:
    """Atomically move ``amount`` to a worker's lease, only while the balance is ≥ ``floor``."""
    with _atomic():
        result = db.session.execute(
            update(Account)
            .where(Account.id == account_id, Account.balance_micros >= floor_micros)
            .values(balance_micros=Account.balance_micros - amount_micros)
        )
    return result.rowcount == 1


def is_outage(exc: BaseException) -> bool:
    """True when ``exc`` says the database could not be reached or used, not that it refused
    the data: the same write may succeed later, so it is kept and retried."""
    if isinstance(exc, sa_exc.DBAPIError) and exc.connection_invalidated:
        return True
    return isinstance(
        exc,
        sa_exc.OperationalError
        | sa_exc.InterfaceError
        | sa_exc.DisconnectionError
        | sa_exc.TimeoutError
        | OSError,
    )


def _column_bounds() -> dict[str, tuple[type, int]]:
    """Per usage column: (str, width) or (int, largest value), from the table itself."""
    bounds: dict[str, tuple[type, int]] = {}
    for column in UsageRecord.__table__.columns:
        kind = column.type
        if isinstance(kind, String) and kind.length:
            bounds[column.name] = (str, kind.length)
        elif isinstance(kind, BigInteger):
            bounds[column.name] = (int, 2**63 - 1)
        elif isinstance(kind, Integer):
            bounds[column.name] = (int, 2**31 - 1)
    return bounds


_USAGE_BOUNDS = _column_bounds()


def fit_usage(row: dict[str, Any]) -> dict[str, Any]:
    """The row with every value inside its column: strings cut to width, integers clamped.

    The gateway's own values always fit; this keeps one odd value (a long label, an absurd
    count) from failing the batch it is written with.
    """
    fitted = dict(row)
    for name, (kind, bound) in _USAGE_BOUNDS.items():
        value = fitted.get(name)
        if kind is str and isinstance(value, str) and len(value) > bound:
            fitted[name] = value[:bound]
        elif kind is int and type(value) is int and not -bound <= value <= bound:
            fitted[name] = max(-bound, min(bound, value))
    return fitted


def write_usage(
    records: Sequence[dict[str, Any]],
    settlements: Iterable[Settlement],
    touched_keys: dict[int, float],
) -> None:
    """Insert usage rows and settle balances in one transaction (all or nothing)."""
    net: dict[int, int] = {}
    for s in settlements:
        net[s.account_id] = net.get(s.account_id, 0) + s.reserved_micros - s.cost_micros
    with _atomic():
        if records:
            db.session.execute(UsageRecord.__table__.insert(), [fit_usage(r) for r in records])
        for account_id, delta in sorted(net.items()):
            if delta:
                db.session.execute(
                    update(Account)
                    .where(Account.id == account_id)
                    .values(balance_micros=Account.balance_micros + delta)
                )
        for key_id, used_at in sorted(touched_keys.items()):
            db.session.execute(
                update(ApiKey)
                .where(ApiKey.id == key_id)
                .values(last_used_at=datetime.fromtimestamp(used_at, UTC))
            )


def ping() -> None:
    """A trivial round trip, for /health."""
    db.session.execute(text("SELECT 1"))
    db.session.rollback()


# --- administration ---------------------------------------------------------------------------


def get_account(name: str) -> Account:
    if "\x00" in name:  # no account can have it (PostgreSQL refuses NUL in text)
        raise NotFoundError(f"no account named {name!r}")
    account = db.session.execute(select(Account).where(Account.name == name)).scalar_one_or_none()
    if account is None:
        raise NotFoundError(f"no account named {name!r}")
    return account


def create_account(
    name: str, tier: str, balance_micros: int, default_model: str | None = None
) -> Account:
    duplicate = ConflictError(f"an account named {name!r} already exists")
    if db.session.execute(select(Account.id).where(Account.name == name)).first():
        raise duplicate
    account = Account(
        name=name, tier=tier, balance_micros=balance_micros, default_model=default_model
    )
    db.session.add(account)
    try:
        db.session.commit()
    except IntegrityError:  # a concurrent create won the race
        db.session.rollback()
        raise duplicate from None
    return account


def _page(query: Any, offset: int, limit: int | None) -> list[Any]:
    query = query.offset(offset)
    if limit is not None:
        query = query.limit(limit)
    return list(db.session.execute(query).scalars())


def list_accounts(offset: int = 0, limit: int | None = None) -> list[Account]:
    """Accounts, oldest first; ``offset``/``limit`` page through them."""
    return _page(select(Account).order_by(Account.id), offset, limit)


def credit_account(name: str, amount_micros: int) -> Account:
    """Add (or, when negative, remove) balance atomically."""
    account = get_account(name)
    with _atomic():
        db.session.execute(
            update(Account)
            .where(Account.id == account.id)
            .values(balance_micros=Account.balance_micros + amount_micros)
        )
    db.session.refresh(account)
    return account


def update_account(
    name: str,
    *,
    tier: str | None = None,
    default_model: str | None = None,
    clear_default_model: bool = False,
) -> Account:
    account = get_account(name)
    if tier is not None:
        account.tier = tier
    if default_model is not None:
        account.default_model = default_model
    if clear_default_model:
        account.default_model = None
    db.session.commit()
    return account


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


def add_endpoint(account_name: str, base_url: str, upstream_key: str | None = None) -> Endpoint:
    account = get_account(account_name)
    endpoint = Endpoint(account_id=account.id, base_url=base_url, upstream_key=upstream_key)
    db.session.add(endpoint)
    db.session.commit()
    return endpoint


def list_endpoints(account_name: str, offset: int = 0, limit: int | None = None) -> list[Endpoint]:
    """The account's endpoints, oldest first."""
    account = get_account(account_name)
    return _page(
        select(Endpoint).where(Endpoint.account_id == account.id).order_by(Endpoint.id),
        offset,
        limit,
    )


def remove_endpoint(account_name: str, endpoint_id: int) -> None:
    account = get_account(account_name)
    endpoint = db.session.get(Endpoint, endpoint_id)
    if endpoint is None or endpoint.account_id != account.id:
        raise NotFoundError(f"account {account_name!r} has no endpoint {endpoint_id}")
    db.session.delete(endpoint)
    db.session.commit()


class UsageRow(NamedTuple):
    """Usage of one (model, key) pair over a time range."""

    model: str | None
    key_id: int | None
    key_prefix: str | None
    requests: int
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    cost_micros: int


def usage_rows(
    account_name: str,
    since: datetime | None = None,
    until: datetime | None = None,
    model: str | None = None,
    key_id: int | None = None,
) -> list[UsageRow]:
    """Per model and key: requests, tokens and cost in ``[since, until)`` (index-backed)."""
    account = get_account(account_name)
    query = (
        select(
            UsageRecord.model,
            UsageRecord.key_id,
            ApiKey.prefix,
            func.count(),
            func.coalesce(func.sum(UsageRecord.prompt_tokens), 0),
            func.coalesce(func.sum(UsageRecord.completion_tokens), 0),
            func.coalesce(func.sum(UsageRecord.total_tokens), 0),
            func.coalesce(func.sum(UsageRecord.cost_micros), 0),
        )
        .outerjoin(ApiKey, ApiKey.id == UsageRecord.key_id)
        .where(UsageRecord.account_id == account.id)
    )
    if since is not None:
        query = query.where(UsageRecord.created_at >= since)
    if until is not None:
        query = query.where(UsageRecord.created_at < until)
    if model is not None:
        query = query.where(UsageRecord.model == model)
    if key_id is not None:
        query = query.where(UsageRecord.key_id == key_id)
    query = query.group_by(UsageRecord.model, UsageRecord.key_id, ApiKey.prefix).order_by(
        UsageRecord.model, UsageRecord.key_id
    )
    return [
        UsageRow(*(int(v) if isinstance(v, Decimal) else v for v in row))
        for row in db.session.execute(query).all()
    ]


def usage_records(
    account_name: str,
    since: datetime | None = None,
    until: datetime | None = None,
    after_id: int = 0,
    limit: int | None = None,
) -> list[UsageRecord]:
    """An account's usage rows, oldest first; ``after_id`` is the cursor for the next page."""
    account = get_account(account_name)
    query = select(UsageRecord).where(
        UsageRecord.account_id == account.id, UsageRecord.id > after_id
    )
    if since is not None:
        query = query.where(UsageRecord.created_at >= since)
    if until is not None:
        query = query.where(UsageRecord.created_at < until)
    return _page(query.order_by(UsageRecord.id), 0, limit)
