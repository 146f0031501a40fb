"""A key's own controls: its rpm and tpm, a spend budget, the models it may use, an expiry.

All optional; a key without any has ``controls = None`` on its principal, so the request path
of a plain key does no more work than before. The tighter of key and account applies. The
controls travel with the cached principal (re-read every ``PACKET_AUTH_CACHE_TTL``); the
budget is enforced on the limit storage (:mod:`packet.counters`): the request's maximum cost is
reserved at admission and settled to its real cost, like tokens. The key's spend is written to
the database with the usage rows (same transaction), which seeds the counter when the storage
does not have it (a new window, a restarted Redis).
"""

from __future__ import annotations

import calendar
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from .errors import InsufficientQuota, InvalidAPIKey, ModelNotAllowed
from .money import MICROS_PER_DOLLAR, dollars_to_micros

MONTH, TOTAL = "month", "total"
PERIODS = (MONTH, TOTAL)
# How long a total budget's counter lives in the limit storage before it is seeded again.
_TOTAL_TTL = 30 * 24 * 3600


@dataclass(frozen=True)
class KeyControls:
    """What a key adds to its account's limits (None: the account's own figure applies)."""

    rpm: int | None = None
    tpm: int | None = None
    budget_micros: int | None = None
    budget_period: str = MONTH
    models: frozenset[str] | None = None
    expires_at: float | None = None  # Unix seconds
    spent_micros: int = 0  # in ``spent_period``, as of the last database read
    spent_period: str | None = None

    @property
    def limits_traffic(self) -> bool:
        """Whether the key has counters of its own in the limit storage."""
        return self.rpm is not None or self.tpm is not None or self.budget_micros is not None

    def spent_in(self, period: str) -> int:
        """What the database says the key spent in ``period``."""
        return self.spent_micros if self.spent_period == period else 0


def period_of(budget_period: str, now: float) -> str:
    """The budget period a moment falls in: ``"2026-12"`` (calendar month, UTC) or ``"total"``."""
    if budget_period == TOTAL:
        return TOTAL
    return datetime.fromtimestamp(now, UTC).strftime("%Y-%m")


def period_end(budget_period: str, now: float) -> int:
    """When the period of ``now`` ends (Unix seconds); a total budget's counter is kept for a
    while and then seeded again from the database."""
    if budget_period == TOTAL:
        return int(now) + _TOTAL_TTL
    moment = datetime.fromtimestamp(now, UTC)
    last_day = calendar.monthrange(moment.year, moment.month)[1]
    start = datetime(moment.year, moment.month, 1, tzinfo=UTC)
    return int(start.timestamp()) + last_day * 86400


def parse_models(text: str | None) -> frozenset[str] | None:
    """The allow-list as stored (one id per line) or typed (comma-separated)."""
    if not text:
        return None
    found = frozenset(m.strip() for m in text.replace(",", "\n").splitlines() if m.strip())
    return found or None


def check_expiry(controls: KeyControls, now: float, prefix: str) -> None:
    """401 for a key past its expiry."""
    if controls.expires_at is not None and now >= controls.expires_at:
        when = datetime.fromtimestamp(controls.expires_at, UTC).strftime("%Y-%m-%d %H:%M UTC")
        raise InvalidAPIKey(
            f"API key {prefix}… expired at {when}. Create a new key in your dashboard or ask "
            "your administrator to extend it."
        )


def check_model(controls: KeyControls | None, model: str | None) -> None:
    """403 ``model_not_allowed`` for a model outside the key's allow-list."""
    if controls is None or controls.models is None or model is None:
        return
    if model not in controls.models:
        raise ModelNotAllowed(
            f"This API key may not use the model '{model}'. Models allowed for this key: "
            f"{', '.join(sorted(controls.models))}.",
            param="model",
        )


def over_budget(controls: KeyControls, spent: int) -> InsufficientQuota:
    """The 403 for a key whose budget is spent."""
    budget = controls.budget_micros or 0
    per = "this month" if controls.budget_period == MONTH else "in total"
    return InsufficientQuota(
        f"This API key has reached its budget of ${budget / MICROS_PER_DOLLAR:.2f} {per} "
        f"(spent ${spent / MICROS_PER_DOLLAR:.2f}). Raise the key's budget or use another key."
    )


def parse_expiry(text: str) -> datetime:
    """An expiry as typed: a date means the end of that day (UTC), a time is taken as is (UTC
    when it has no zone)."""
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"not an ISO date or time: {text!r} (e.g. 2027-01-31)") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    if re.fullmatch(r"\d{4}-\d{2}-\d{2}", text.strip()):
        moment += timedelta(days=1)
    return moment


def check_tier_bounds(figures: dict[str, int], changes: dict[str, Any]) -> None:
    """A key's rpm and tpm may not exceed its account's tier (ValueError naming which)."""
    for name in ("rpm", "tpm"):
        value = changes.get(name)
        if value is not None and value > figures[name]:
            raise ValueError(
                f"{name} {value} is above the account's tier ({figures[name]}); a key can only "
                "be tighter than its account"
            )


class ControlError(ValueError):
    """A control typed as text that cannot be read: which one, and why."""

    def __init__(self, name: str, message: str) -> None:
        super().__init__(f"{name}: {message}")
        self.name, self.message = name, message


_COLUMNS = {"budget": "budget_micros", "expires": "expires_at"}


def read_controls(given: Mapping[str, str | None], *, clear: str | None = None) -> dict[str, Any]:
    """Controls typed as text (``rpm``, ``tpm``, ``budget`` in dollars, ``budget_period``,
    ``models`` comma-separated, ``expires``; ``label`` passes through) as the key's columns.
    Absent or empty ones are left out; the word ``clear`` (the CLI's "none") clears one."""
    changes: dict[str, Any] = {}
    for name, raw in given.items():
        text = (raw or "").strip()
        if not text:
            continue
        column = _COLUMNS.get(name, name)
        if clear is not None and text.lower() == clear and name != "budget_period":
            changes[column] = None
            continue
        try:
            changes[column] = _read(name, text)
        except ValueError as exc:
            raise ControlError(name, str(exc)) from None
    return changes


def _read(name: str, text: str) -> Any:
    if name in ("rpm", "tpm"):
        value = int(text)
        if value < 1:
            raise ValueError(f"{name} must be at least 1")
        return value
    if name == "budget":
        micros = dollars_to_micros(text)
        if micros < 0:
            raise ValueError("a budget cannot be negative")
        return micros
    if name == "budget_period":
        if text not in PERIODS:
            raise ValueError(f"one of {', '.join(PERIODS)}")
        return text
    if name == "models":
        return sorted(parse_models(text) or ())
    if name == "expires":
        return parse_expiry(text)
    return text
