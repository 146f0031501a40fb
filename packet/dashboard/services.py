"""What the dashboard's pages show, from the same store and runtime as the CLI and admin API
(the views hold no SQL and no business rules)."""

from __future__ import annotations

import csv
import io
import logging
import time
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

from .. import store
from ..gateway.targets import endpoints_or_pool
from ..limits import tier_figures
from ..models import Account, User, utcnow
from ..reports import dollars
from ..runtime import runtime
from ..upstream.discovery import HEALTHY

PLAYGROUND_LABEL = "playground"
PLAYGROUND_KEY_LIFE = timedelta(hours=12)
audit_log = logging.getLogger("packet.audit")
USAGE_DAYS = 30


def audit(action: str, user: User | str, **fields: object) -> None:
    """One line per change made from the dashboard: who, which account, what (never a key,
    a password or a token)."""
    email = user if isinstance(user, str) else user.email
    account = "" if isinstance(user, str) else f" account={user.account.name}"
    details = "".join(f" {name}={value}" for name, value in fields.items())
    audit_log.info("dashboard %s user=%s%s%s", action, email, account, details)


@dataclass(frozen=True)
class EndpointView:
    id: int | None
    label: str
    status: str
    models: list[str]


def endpoint_states(account: Account) -> list[EndpointView]:
    """The account's endpoints (or the shared pool it uses) with their live state."""
    rt = runtime()
    rows = store.account_endpoints(account.id)
    described = endpoints_or_pool(rt.settings, rows)
    ids = [e.id for e in rows] or [None] * len(described)
    now = time.monotonic()
    return [
        EndpointView(
            ident,
            label,
            "cooling off" if state.cooling_off(now) else state.status,
            sorted(state.models) if state.status == HEALTHY else [],
        )
        for ident, (_, _, label, _), state in zip(
            ids, described, rt.discovery.states(described), strict=True
        )
    ]


def overview(account: Account) -> dict[str, Any]:
    """Balance, tier figures and what the current window has used, endpoints, models."""
    rt = runtime()
    figures = tier_figures(rt.settings, account.tier)
    endpoints = endpoint_states(account)
    _, reset_at = rt.limits.bounds()
    return {
        "balance": dollars(account.balance_micros),
        "tier": account.tier,
        "rpm": figures["rpm"],
        "tpm": figures["tpm"],
        "requests_used": rt.limits.requests_counted(account.id, figures["rpm"]),
        "tokens_used": rt.limits.used(account.id),
        "window_resets_in": max(0, int(reset_at - time.time())),
        "endpoints": endpoints,
        "models": sorted({m for e in endpoints for m in e.models}),
    }


def served_models(account: Account) -> list[str]:
    return sorted({m for e in endpoint_states(account) for m in e.models})


def usage_range(first: date | None, last: date | None) -> tuple[date, date]:
    """The range asked for, by default the last 30 days (today included), oldest first."""
    last = last or store.today()
    first = first or last - timedelta(days=USAGE_DAYS - 1)
    return (first, last) if first <= last else (last, first)


def usage(account: Account, first: date, last: date) -> dict[str, Any]:
    """The chart's series (per day and model) and the tables per model and per key."""
    daily = store.daily_usage(account.id, first, last)
    days = [first + timedelta(days=i) for i in range((last - first).days + 1)]
    index = {day: i for i, day in enumerate(days)}
    series: dict[str, dict[str, list[float]]] = {}
    for row in daily:
        model = series.setdefault(
            row.model or "(none)",
            {k: [0] * len(days) for k in ("requests", "tokens", "cost")},
        )
        i = index[row.day]
        model["requests"][i] += row.requests
        model["tokens"][i] += row.total_tokens
        model["cost"][i] += row.cost_micros / 1_000_000
    by_model = store.usage_by(account.id, first, last, "model")
    by_key = store.usage_by(account.id, first, last, "key")
    return {
        "days": [d.isoformat() for d in days],
        "series": series,
        "by_model": by_model,
        "by_key": by_key,
        "total_requests": sum(r.requests for r in by_model),
        "total_tokens": sum(r.total_tokens for r in by_model),
        "total_cost": dollars(sum(r.cost_micros for r in by_model)),
    }


def usage_csv(account: Account, first: date, last: date) -> str:
    """One line per day, model and key (the roll-up as it is), for a spreadsheet."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["day", "model", "key", "requests", "tokens", "cost_usd"])
    for row in store.daily_usage_by_key(account.id, first, last):
        writer.writerow(
            [
                row.day.isoformat(),
                row.model,
                row.key_prefix,
                row.requests,
                row.total_tokens,
                dollars(row.cost_micros),
            ]
        )
    return out.getvalue()


def visible_keys(account: Account) -> list[Any]:
    """The account's keys, newest first; spent playground keys are not worth a row."""
    keys = store.list_keys(account.name)
    return [
        k
        for k in reversed(keys)
        if not (k.revoked_at and k.label and k.label.startswith(PLAYGROUND_LABEL))
    ]


def playground_key(user: User, previous: int | None) -> tuple[int, str]:
    """A key for one Playground session (its id, the key); the previous one is revoked."""
    account = user.account
    if previous is not None:
        revoke_playground_key(account, previous)
    label = f"{PLAYGROUND_LABEL} · {user.email}"[:100]
    expiry = {"expires_at": utcnow() + PLAYGROUND_KEY_LIFE}  # revoked at sign-out anyway
    row, key = store.create_key(account.name, label, expiry)
    runtime().keys.invalidate()
    audit("playground.key", user, key=f"{row.prefix}…")
    return row.id, key


def revoke_playground_key(account: Account, key_id: int) -> None:
    try:
        key = store.get_key(key_id, account.name)
    except store.NotFoundError:
        return
    if key.label and key.label.startswith(PLAYGROUND_LABEL):
        store.revoke_key_id(account.name, key_id)
        runtime().keys.invalidate()
