"""Tier limits: requests/min through Flask-Limiter, tokens/min through a small token budget.

Flask-Limiter counts requests per account (fixed window). Tokens are only known when a
request ends, which Flask-Limiter cannot see, so :class:`TokenBudget` does the part no library
does: reserve an estimate at admission (atomic ``incr`` on the same ``limits`` storage, so it
is shared through Redis), and settle it to the real usage when the request ends. Token windows
are aligned to the clock (``floor(now / window)``), so a settlement always lands in the window
that admitted the request and the counter ends equal to the real usage.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass

from flask import Blueprint, Response, current_app, g
from flask_limiter import RateLimitExceeded as LimiterBreach
from limits.storage import Storage

from .config import Settings
from .errors import RateLimitExceeded, ServiceUnavailable
from .extensions import limiter

log = logging.getLogger("packet.limits")


def tier_figures(settings: Settings, tier: str) -> dict[str, int]:
    """rpm and tpm of a tier (an account on a tier removed from config gets the default's)."""
    return settings.tiers.get(tier) or settings.tiers[settings.default_tier]


def duration(seconds: float) -> str:
    """OpenAI's reset format: ``6m0s``, ``1.5s``, ``250ms``."""
    if seconds < 1:
        return f"{max(0, int(seconds * 1000))}ms"
    if seconds < 60:
        return f"{round(seconds, 1):g}s"
    minutes, rest = divmod(math.ceil(seconds), 60)
    return f"{minutes}m{rest}s"


@dataclass
class TokenReservation:
    """Tokens held for one request in one window, to be settled to the real usage."""

    key: str
    reserved: int
    reset_at: float
    counter: int
    settled: bool = False


class TokenBudget:
    """Tokens-per-window admission and settlement on a ``limits`` storage."""

    def __init__(
        self,
        storage: Storage,
        window: int,
        *,
        prefix: str,
        fail_open: bool,
        clock: Callable[[], float] = time.time,
        on_storage_error: Callable[[], None] = lambda: None,
    ) -> None:
        self.storage = storage
        self.window = window
        self.prefix = prefix
        self.fail_open = fail_open
        self.clock = clock
        self.on_storage_error = on_storage_error

    def _key(self, account_id: int, now: float) -> tuple[str, float]:
        start = int(now // self.window) * self.window
        return f"{self.prefix}/tpm/{account_id}/{start}", start + self.window

    def admit(self, account_id: int, tpm: int, estimate: int) -> TokenReservation | None:
        """Reserve ``estimate`` tokens, or raise 429 when the window's budget is spent."""
        key, reset_at = self._key(account_id, self.clock())
        try:
            counter = self.storage.incr(key, self.window + 5, amount=estimate)
            if counter - estimate >= tpm:
                self.storage.incr(key, self.window + 5, amount=-estimate)
        except Exception as exc:  # noqa: BLE001 - any storage failure follows the policy
            return self._storage_failed(exc)
        if counter - estimate >= tpm:
            wait = max(1, math.ceil(reset_at - self.clock()))
            raise RateLimitExceeded(
                f"Rate limit reached for tokens per minute: limit {tpm}, used "
                f"{counter - estimate}. Please try again in {wait}s.",
                limit_type="tokens",
                headers=_retry_headers(wait),
            )
        return TokenReservation(key, estimate, reset_at, counter)

    def settle(self, reservation: TokenReservation | None, actual: int) -> None:
        """Replace the reservation by the real usage (once; later calls do nothing)."""
        if reservation is None or reservation.settled:
            return
        reservation.settled = True
        delta = actual - reservation.reserved
        if delta:
            try:
                self.storage.incr(reservation.key, self.window + 5, amount=delta)
            except Exception as exc:  # noqa: BLE001
                self._storage_failed(exc)

    def used(self, account_id: int) -> tuple[int, float]:
        """(tokens counted, reset time) of the account's current window."""
        key, reset_at = self._key(account_id, self.clock())
        try:
            return self.storage.get(key), reset_at
        except Exception as exc:  # noqa: BLE001
            self._storage_failed(exc)
            return 0, reset_at

    def _storage_failed(self, exc: Exception) -> None:
        self.on_storage_error()
        if self.fail_open:
            log.warning("limit storage unreachable, admitting (fail open): %s", type(exc).__name__)
            return None
        raise ServiceUnavailable("Rate limit storage is unreachable; try again shortly.") from exc


def _retry_headers(wait: int) -> dict[str, str]:
    return {"Retry-After": str(wait), "retry-after-ms": str(wait * 1000)}


def request_limit() -> str:
    """Flask-Limiter's dynamic limit: the caller's tier rpm over the configured window."""
    settings: Settings = current_app.extensions["packet"].settings
    rpm = tier_figures(settings, g.principal.tier)["rpm"]
    return f"{rpm} per {settings.limit_window_seconds} second"


def breach_error(exc: LimiterBreach) -> RateLimitExceeded:
    """Flask-Limiter's breach as our 429 envelope, with Retry-After from the real reset."""
    current = limiter.current_limit
    reset_at = current.reset_at if current else time.time() + 1
    wait = max(1, math.ceil(reset_at - time.time()))
    return RateLimitExceeded(
        f"Rate limit reached for requests: {exc.limit.limit.amount} per "
        f"{current_app.extensions['packet'].settings.limit_window_seconds}s. "
        f"Please try again in {wait}s.",
        limit_type="requests",
        headers=_retry_headers(wait),
    )


def rate_limit_headers(response: Response) -> Response:
    """Both header families on every /v1 response of an authenticated caller."""
    principal = g.get("principal")
    if principal is None:
        return response
    runtime = current_app.extensions["packet"]
    figures = tier_figures(runtime.settings, principal.tier)
    now = time.time()
    headers = response.headers
    current = limiter.current_limit
    if current is not None:
        try:
            remaining, reset_at = current.remaining, current.reset_at
        except Exception:  # noqa: BLE001 - headers never fail a response
            remaining, reset_at = figures["rpm"], now + runtime.settings.limit_window_seconds
        headers["X-RateLimit-Limit"] = str(figures["rpm"])
        headers["X-RateLimit-Remaining"] = str(remaining)
        headers["X-RateLimit-Reset"] = str(int(reset_at))
        headers["x-ratelimit-limit-requests"] = str(figures["rpm"])
        headers["x-ratelimit-remaining-requests"] = str(remaining)
        headers["x-ratelimit-reset-requests"] = duration(reset_at - now)
    reservation: TokenReservation | None = g.get("token_reservation")
    if reservation is not None:
        used, reset_at = reservation.counter, reservation.reset_at
    else:
        used, reset_at = runtime.tokens.used(principal.account_id)
    headers["x-ratelimit-limit-tokens"] = str(figures["tpm"])
    headers["x-ratelimit-remaining-tokens"] = str(max(0, figures["tpm"] - used))
    headers["x-ratelimit-reset-tokens"] = duration(reset_at - now)
    return response


def init_blueprint(bp: Blueprint) -> None:
    """Apply the tier request limit and the headers to every route of ``bp``."""
    limiter.limit(request_limit, per_method=False)(bp)
    bp.after_request(rate_limit_headers)
