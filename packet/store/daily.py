"""The daily usage roll-up (``usage_daily``): kept by the usage flush, read by the dashboard.

Each flush adds its rows' sums with one upsert per (account, UTC day, model, key), in the
flush's own transaction, so the roll-up and the usage rows never disagree.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date
from decimal import Decimal
from typing import Any, NamedTuple

from sqlalchemy import func, literal, select
from sqlalchemy.dialects import postgresql, sqlite

from ..extensions import db
from ..models import ApiKey, UsageDaily, utcnow

_SUMS = ("prompt_tokens", "completion_tokens", "total_tokens", "cost_micros", "saved_tokens")


def roll_up(rows: Iterable[dict[str, Any]]) -> None:
    """Add usage rows (as inserted, with ``created_at``) to the roll-up; caller commits."""
    groups: dict[tuple[int, date, str, int], list[int]] = {}
    for row in rows:
        when = row.get("created_at") or utcnow()
        ident = (row["account_id"], when.date(), row.get("model") or "", row.get("key_id") or 0)
        sums = groups.setdefault(ident, [0] * (2 + len(_SUMS)))
        sums[0] += 1
        sums[1] += 1 if row.get("cached") else 0
        for i, name in enumerate(_SUMS, 2):
            sums[i] += int(row.get(name) or 0)
    if not groups:
        return
    values = [
        {"account_id": a, "day": d, "model": m, "key_id": k, "requests": s[0], "cache_hits": s[1]}
        | dict(zip(_SUMS, s[2:], strict=True))
        for (a, d, m, k), s in sorted(groups.items())  # one lock order across workers
    ]
    dialect = postgresql if db.session.get_bind().dialect.name == "postgresql" else sqlite
    stmt = dialect.insert(UsageDaily)
    table = UsageDaily.__table__
    summed = ("requests", "cache_hits", *_SUMS)
    stmt = stmt.on_conflict_do_update(
        index_elements=["account_id", "day", "model", "key_id"],
        set_={name: table.c[name] + stmt.excluded[name] for name in summed},
    )
    db.session.execute(stmt, values)


class DailyRow(NamedTuple):
    day: date
    model: str
    requests: int
    total_tokens: int
    cost_micros: int


class GroupRow(NamedTuple):
    """Totals of one model or one key over a range (``label``: the model, or the key's
    display prefix; ``note``: the key's own label)."""

    ident: str
    label: str
    requests: int
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    cost_micros: int
    note: str = ""


def _ints(row: Any) -> list[Any]:
    # PostgreSQL's SUM of a bigint column is a Decimal.
    return [int(v) if isinstance(v, Decimal) else v for v in row]


def daily_usage(account_id: int, first: date, last: date) -> list[DailyRow]:
    """Per day and model, ``first`` to ``last`` inclusive, oldest first."""
    d = UsageDaily
    query = (
        select(
            d.day, d.model, func.sum(d.requests), func.sum(d.total_tokens), func.sum(d.cost_micros)
        )
        .where(d.account_id == account_id, d.day >= first, d.day <= last)
        .group_by(d.day, d.model)
        .order_by(d.day, d.model)
    )
    return [DailyRow(*_ints(row)) for row in db.session.execute(query).all()]


class KeyDayRow(NamedTuple):
    day: date
    model: str
    key_prefix: str
    requests: int
    total_tokens: int
    cost_micros: int


def daily_usage_by_key(account_id: int, first: date, last: date) -> list[KeyDayRow]:
    """The roll-up's rows as they are (per day, model and key), oldest first."""
    d = UsageDaily
    query = (
        select(
            d.day,
            d.model,
            func.coalesce(ApiKey.prefix, ""),
            d.requests,
            d.total_tokens,
            d.cost_micros,
        )
        .outerjoin(ApiKey, ApiKey.id == d.key_id)
        .where(d.account_id == account_id, d.day >= first, d.day <= last)
        .order_by(d.day, d.model, d.key_id)
    )
    return [KeyDayRow(*row) for row in db.session.execute(query).all()]


def usage_by(account_id: int, first: date, last: date, by: str) -> list[GroupRow]:
    """Totals per ``"model"`` or per ``"key"`` over ``first`` to ``last`` inclusive."""
    d = UsageDaily
    sums = (
        func.sum(d.requests),
        func.sum(d.prompt_tokens),
        func.sum(d.completion_tokens),
        func.sum(d.total_tokens),
        func.sum(d.cost_micros),
    )
    where = (d.account_id == account_id, d.day >= first, d.day <= last)
    query: Any
    if by == "model":
        query = select(d.model, d.model, *sums, literal("")).where(*where).group_by(d.model)
        query = query.order_by(d.model)
    else:
        query = (
            select(
                d.key_id,
                func.coalesce(ApiKey.prefix, ""),
                *sums,
                func.coalesce(ApiKey.label, ""),
            )
            .outerjoin(ApiKey, ApiKey.id == d.key_id)
            .where(*where)
            .group_by(d.key_id, ApiKey.prefix, ApiKey.label)
            .order_by(d.key_id)
        )
    return [
        GroupRow._make([str(row[0]), row[1], *_ints(row[2:7]), row[7]])
        for row in db.session.execute(query).all()
    ]


def today() -> date:
    return utcnow().date()
