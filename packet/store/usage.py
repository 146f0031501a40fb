"""Usage rows: written in batches with the balance settlements they carry, and reported."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any, NamedTuple, TypeVar

from sqlalchemy import BigInteger, Integer, Select, String, case, func, select

from ..extensions import db
from ..models import ApiKey, UsageDaily, UsageRecord
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
    """Per model and key: requests, tokens and cost in ``[since, until)``.

    Whole UTC days come from the daily roll-up (kept with the rows, in their transaction), only
    the partial days at either end from the rows themselves: so the report costs the same with
    ten thousand rows or ten million (see ``make bench-scale``).
    """
    account = get_account(account_name)
    since, until = _utc(since), _utc(until)
    first = None if since is None else _ceil_day(since)
    last = None if until is None else until.date()  # with no until, the roll-up serves today
    totals: dict[tuple[str | None, int | None], list[int]] = {}
    if first is not None and last is not None and first >= last:  # within one day
        _add(totals, _recorded(account.id, since, until, model, key_id))
    else:
        _add(totals, _daily(account.id, first, last, model, key_id))
        if since is not None and first is not None and since < _midnight(first):
            _add(totals, _recorded(account.id, since, _midnight(first), model, key_id))
        if until is not None and last is not None and _midnight(last) < until:
            _add(totals, _recorded(account.id, _midnight(last), until, model, key_id))
    prefixes = _prefixes({k for _, k in totals if k is not None})
    return [
        UsageRow(m, k, None if k is None else prefixes.get(k), *sums)
        for (m, k), sums in sorted(
            totals.items(), key=lambda item: (item[0][0] or "", item[0][1] or 0)
        )
    ]


_REPORTED = 7  # requests, prompt, completion, total tokens, cost, cache hits, saved tokens


def _utc(moment: datetime | None) -> datetime | None:
    if moment is None:
        return None
    return moment.astimezone(UTC) if moment.tzinfo else moment.replace(tzinfo=UTC)


def _ceil_day(moment: datetime) -> date:
    """The first UTC midnight at or after ``moment``, as a day."""
    day = moment.date()
    return day if moment == _midnight(day) else day + timedelta(days=1)


def _midnight(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=UTC)


def _daily(
    account_id: int, first: date | None, last: date | None, model: str | None, key_id: int | None
) -> list[tuple[Any, ...]]:
    d = UsageDaily
    query = select(
        d.model,
        d.key_id,
        func.sum(d.requests),
        func.sum(d.prompt_tokens),
        func.sum(d.completion_tokens),
        func.sum(d.total_tokens),
        func.sum(d.cost_micros),
        func.sum(d.cache_hits),
        func.sum(d.saved_tokens),
    ).where(d.account_id == account_id)
    if first is not None:
        query = query.where(d.day >= first)
    if last is not None:
        query = query.where(d.day < last)
    query = _narrowed(query, d.model, d.key_id, model, key_id)
    rows = db.session.execute(query.group_by(d.model, d.key_id)).all()
    # The roll-up's "no model" is '' and "no key" is 0.
    return [(m or None, k or None, *sums) for m, k, *sums in rows]


def _recorded(
    account_id: int,
    low: datetime | None,
    high: datetime | None,
    model: str | None,
    key_id: int | None,
) -> list[tuple[Any, ...]]:
    r = UsageRecord
    query = select(
        r.model,
        r.key_id,
        func.count(),
        func.sum(r.prompt_tokens),
        func.sum(r.completion_tokens),
        func.sum(r.total_tokens),
        func.sum(r.cost_micros),
        func.sum(case((r.cached, 1), else_=0)),
        func.sum(r.saved_tokens),
    ).where(r.account_id == account_id)
    if low is not None:
        query = query.where(r.created_at >= low)
    if high is not None:
        query = query.where(r.created_at < high)
    query = _narrowed(query, r.model, r.key_id, model, key_id)
    return list(db.session.execute(query.group_by(r.model, r.key_id)).all())


Q = TypeVar("Q", bound=Select[*tuple[Any, ...]])


def _narrowed(
    query: Q, model_column: Any, key_column: Any, model: str | None, key_id: int | None
) -> Q:
    """The report's filters, on either table."""
    if model is not None:
        query = query.where(model_column == model)
    if key_id is not None:
        query = query.where(key_column == key_id)
    return query


def _add(
    totals: dict[tuple[str | None, int | None], list[int]], rows: list[tuple[Any, ...]]
) -> None:
    """Sum rows of (model, key, sums…) into ``totals``; PostgreSQL's SUM is a Decimal."""
    for model, key, *sums in rows:
        found = totals.setdefault((model, key), [0] * _REPORTED)
        for i, value in enumerate(sums[:_REPORTED]):
            found[i] += int(value or 0)


def _prefixes(key_ids: set[int]) -> dict[int, str]:
    if not key_ids:
        return {}
    rows = db.session.execute(select(ApiKey.id, ApiKey.prefix).where(ApiKey.id.in_(key_ids)))
    return {key: prefix for key, prefix in rows.all()}


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
