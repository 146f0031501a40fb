"""Usage rows: written in batches with the balance settlements they carry, and reported."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any, NamedTuple

from sqlalchemy import BigInteger, Integer, String, case, func, select

from ..extensions import db
from ..models import ApiKey, UsageRecord
from ._db import _page
from .accounts import get_account


@dataclass(frozen=True)
class Settlement:
    """One finished request's effect on its account: reservation released, cost charged."""

    account_id: int
    reserved_micros: int
    cost_micros: int


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
# Columns a row may leave out (a response-cache hit sets them).
_ROW_DEFAULTS = {"cached": False, "saved_tokens": 0}


def fit_usage(row: dict[str, Any]) -> dict[str, Any]:
    """The row with every value inside its column: strings cut to width, integers clamped.

    The gateway's own values always fit; this keeps one odd value (a long label, an absurd
    count) from failing the batch it is written with.
    """
    fitted = _ROW_DEFAULTS | row  # one batch is one statement: every row needs every column
    for name, (kind, bound) in _USAGE_BOUNDS.items():
        value = fitted.get(name)
        if kind is str and isinstance(value, str) and len(value) > bound:
            fitted[name] = value[:bound]
        elif kind is int and type(value) is int and not -bound <= value <= bound:
            fitted[name] = max(-bound, min(bound, value))
    return fitted


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
    cache_hits: int = 0
    saved_tokens: int = 0


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
            func.coalesce(func.sum(case((UsageRecord.cached, 1), else_=0)), 0),
            func.coalesce(func.sum(UsageRecord.saved_tokens), 0),
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
    # PostgreSQL's SUM of an integer column is a Decimal.
    return [
        UsageRow._make(int(v) if isinstance(v, Decimal) else v for v in row)
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
