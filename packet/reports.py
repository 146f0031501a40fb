"""Plain-data views of accounts, keys, endpoints and usage.

The CLI's ``--json`` output and the admin API's bodies both come from here, so the two cannot
drift apart. Money is shown twice: exact integer micro-dollars and a dollar string.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

from . import store
from .key_controls import MONTH, parse_models, period_of
from .models import Account, ApiKey, Endpoint, UsageRecord
from .money import MICROS_PER_DOLLAR
from .store import UsageRow

_TOTALS = (
    "requests",
    "prompt_tokens",
    "completion_tokens",
    "total_tokens",
    "cost_micros",
    "cache_hits",
    "saved_tokens",
)


def dollars(micros: int) -> str:
    """Micro-dollars as a dollar string: 25000000 → '25.00', 1234 → '0.001234'."""
    sign = "-" if micros < 0 else ""
    whole, frac = divmod(abs(micros), MICROS_PER_DOLLAR)
    text = f"{frac:06d}".rstrip("0").ljust(2, "0")
    return f"{sign}{whole}.{text}"


def parse_time(text: str | None) -> datetime | None:
    """An ISO 8601 date or time for a usage range; without a zone it is UTC."""
    if not text:
        return None
    try:
        value = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"not an ISO date or time: {text!r} (e.g. 2026-11-01)") from None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def iso(value: datetime | None) -> str | None:
    """ISO 8601 with its zone: every time stored is UTC (SQLite hands them back naive)."""
    if value is None:
        return None
    return (value if value.tzinfo else value.replace(tzinfo=UTC)).isoformat(timespec="seconds")


def account_view(account: Account) -> dict[str, Any]:
    return {
        "object": "account",
        "name": account.name,
        "tier": account.tier,
        "balance_micros": account.balance_micros,
        "balance": dollars(account.balance_micros),
        "default_model": account.default_model,
        "cache_default": account.cache_default,
        "created_at": iso(account.created_at),
    }


def key_view(key: ApiKey) -> dict[str, Any]:
    """A key as it may be shown: display prefix only, never the key or its digest; its
    controls, and what it spent in its current budget period (as of the last usage flush)."""
    period = period_of(key.budget_period or MONTH, time.time())
    spent = key.spent_micros if key.spent_period == period else 0
    return {
        "object": "api_key",
        "id": key.id,
        "prefix": key.prefix,
        "label": key.label,
        "created_at": iso(key.created_at),
        "last_used_at": iso(key.last_used_at),
        "revoked_at": iso(key.revoked_at),
        "rpm": key.rpm,
        "tpm": key.tpm,
        "budget_micros": key.budget_micros,
        "budget": None if key.budget_micros is None else dollars(key.budget_micros),
        "budget_period": key.budget_period or MONTH,
        "models": sorted(parse_models(key.models) or ()) or None,
        "expires_at": iso(key.expires_at),
        "spent_period": period,
        "spent_micros": spent or 0,
        "spent": dollars(spent or 0),
    }


def endpoint_view(endpoint: Endpoint) -> dict[str, Any]:
    """An endpoint without its upstream key (only whether one is set)."""
    return {
        "object": "endpoint",
        "id": endpoint.id,
        "url": endpoint.base_url,
        "upstream_key_set": bool(endpoint.upstream_key),
        "created_at": iso(endpoint.created_at),
    }


def usage_record_view(record: UsageRecord) -> dict[str, Any]:
    return {
        "object": "usage_record",
        "id": record.id,
        "request_id": record.request_id,
        "key_id": record.key_id,
        "endpoint": record.endpoint_url,
        "model": record.model,
        "route": record.route,
        "stream": record.stream,
        "status": record.status,
        "prompt_tokens": record.prompt_tokens,
        "completion_tokens": record.completion_tokens,
        "total_tokens": record.total_tokens,
        "cost_micros": record.cost_micros,
        "ttft_ms": record.ttft_ms,
        "latency_ms": record.latency_ms,
        "client_disconnected": record.client_disconnected,
        "cached": record.cached,
        "saved_tokens": record.saved_tokens,
        "created_at": iso(record.created_at),
    }


def usage_report(rows: Iterable[UsageRow]) -> dict[str, Any]:
    """Totals, and the breakdown per model and per key, from :func:`store.usage_rows`."""
    breakdown = [row._asdict() | {"cost": dollars(row.cost_micros)} for row in rows]
    total: dict[str, Any] = {name: sum(r[name] for r in breakdown) for name in _TOTALS}
    total["cost"] = dollars(total["cost_micros"])
    return {
        "total": total,
        "by_model": _group(breakdown, "model"),
        "by_key": _group(breakdown, "key_id", "key_prefix"),
        "breakdown": breakdown,
    }


def _group(rows: list[dict[str, Any]], *by: str) -> list[dict[str, Any]]:
    groups: dict[tuple[Any, ...], dict[str, Any]] = {}
    for row in rows:
        ident = tuple(row[name] for name in by)
        group = groups.setdefault(
            ident, dict(zip(by, ident, strict=True)) | dict.fromkeys(_TOTALS, 0)
        )
        for name in _TOTALS:
            group[name] += row[name]
    for group in groups.values():
        group["cost"] = dollars(group["cost_micros"])
    return list(groups.values())


def account_usage(
    name: str,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    model: str | None = None,
    key_id: int | None = None,
) -> dict[str, Any]:
    """The usage report of one account: what ``usage --json`` prints and the API answers."""
    rows = store.usage_rows(name, since=since, until=until, model=model, key_id=key_id)
    head = {"object": "usage", "account": name, "since": iso(since), "until": iso(until)}
    return head | {"model": model, "key_id": key_id} | usage_report(rows)
