"""Tier limits: requests/min through Flask-Limiter, tokens/min through a small token budget.

Both limits count in the same clock-aligned windows (``floor(now / window)``): the window is
part of every key, so a window's reset time is known without asking the storage, both header
families share it, and a token settlement always lands in the window that admitted the request.

Flask-Limiter counts requests per account (fixed window). Tokens are only known when a request
ends, which Flask-Limiter cannot see, so :class:`TokenBudget` does the part no library does:
reserve an estimate at admission (one atomic ``incr`` on the same ``limits`` storage, shared
through Redis) and settle it to the real usage when the request ends. A request is admitted
while the counter is below the budget, so a concurrent burst overshoots by at most one
reservation, and once every request has settled the counter equals the real usage.

:class:`StorageGuard` applies the policy when the storage (Redis) is unreachable.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from flask import Blueprint, Response, current_app, g
from flask_limiter import RateLimitExceeded as LimiterBreach
from limits.storage import Storage

from .config import Settings
from .errors import APIError, RateLimitExceeded, ServiceUnavailable
from .extensions import limiter

log = logging.getLogger("packet.limits")

STORAGE_DOWN = "Rate limit storage is unreachable; try again shortly."


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


class StorageGuard:
    """The Redis-unreachable policy, and a short memory of the outage.

    After a failed call the storage is left alone for ``pause`` seconds, then one ``check()``
    (a ping) decides whether it is back; so during an outage requests neither wait for a
    timeout each nor fill the log. Admission then fails open (admit, unlimited) or closed (503).
    """

    def __init__(
        self,
        storage: Storage,
        *,
        fail_open: bool,
        on_error: Callable[[], None] = lambda: None,
        pause: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.storage = storage
        self.fail_open = fail_open
        self.on_error = on_error
        self.pause = pause
        self.clock = clock
        self._down_until: float | None = None

    def available(self) -> bool:
        """False while an outage is remembered; after the pause one caller probes."""
        if self._down_until is None:
            return True
        if self.clock() < self._down_until:
            return False
        self._down_until = self.clock() + self.pause  # one probe at a time
        if not self.storage.check():
            return False
        self._down_until = None
        log.warning("limit storage reachable again: limits enforced")
        return True

    def failed(self, exc: BaseException) -> None:
        """Count a failed call and remember the outage (logged once per outage)."""
        self.on_error()
        if self._down_until is None:
            policy = "admitting without limits" if self.fail_open else "refusing with 503"
            log.warning("limit storage unreachable (%s): %s", type(exc).__name__, policy)
        self._down_until = self.clock() + self.pause

    def unavailable(self) -> None:
        """The policy for an admission that cannot be checked: return, or raise 503."""
        if not self.fail_open:
            raise ServiceUnavailable(STORAGE_DOWN)

    def read(self, key: str) -> int | None:
        """A counter, or None when the storage cannot say (never raises: headers use it)."""
        if not self.available():
            return None
        try:
            return self.storage.get(key)
        except Exception as exc:  # noqa: BLE001 - any storage failure follows the policy
            self.failed(exc)
            return None


@dataclass
class TokenReservation:
    """Tokens held for one request in one window, to be settled to the real usage."""

    key: str
    reserved: int
    reset_at: int
    counter: int
    settled: bool = False


class TokenBudget:
    """Clock-aligned windows, and tokens-per-window admission and settlement in them."""

    def __init__(
        self,
        storage: Storage,
        window: int,
        *,
        prefix: str,
        guard: StorageGuard,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.storage = storage
        self.window = window
        self.prefix = prefix
        self.guard = guard
        self.clock = clock

    def bounds(self, now: float | None = None) -> tuple[int, int]:
        """(start, reset) of the current window, in Unix seconds."""
        start = int((self.clock() if now is None else now) // self.window) * self.window
        return start, start + self.window

    def _key(self, account_id: int) -> tuple[str, int]:
        start, reset_at = self.bounds()
        return f"{self.prefix}/tpm/{account_id}/{start}", reset_at

    def admit(self, account_id: int, tpm: int, estimate: int) -> TokenReservation | None:
        """Reserve ``estimate`` tokens, or raise 429 when the window's budget is spent."""
        key, reset_at = self._key(account_id)
        if not self.guard.available():
            return self.guard.unavailable()
        try:
            counter = self.storage.incr(key, self.window + 5, amount=estimate)
            if counter - estimate >= tpm:
                self.storage.incr(key, self.window + 5, amount=-estimate)
        except Exception as exc:  # noqa: BLE001 - any storage failure follows the policy
            self.guard.failed(exc)
            return self.guard.unavailable()
        if counter - estimate >= tpm:
            wait = reset_at - self.clock()
            raise RateLimitExceeded(
                f"Rate limit reached for tokens per minute: limit {tpm} per {self.window}s, "
                f"used {counter - estimate}. The limit resets in {math.ceil(wait)}s (at Unix "
                f"time {reset_at}).",
                limit_type="tokens",
                headers=retry_headers(wait),
            )
        return TokenReservation(key, estimate, reset_at, counter)

    def settle(self, reservation: TokenReservation | None, actual: int) -> None:
        """Replace the reservation by the real usage (once; later calls do nothing)."""
        if reservation is None or reservation.settled:
            return
        reservation.settled = True
        delta = actual - reservation.reserved
        if delta and self.guard.available():
            try:
                reservation.counter = self.storage.incr(
                    reservation.key, self.window + 5, amount=delta
                )
            except Exception as exc:  # noqa: BLE001 - settling never fails a response
                self.guard.failed(exc)

    def used(self, account_id: int) -> int | None:
        """Tokens counted in the account's current window (None when the storage can't say)."""
        return self.guard.read(self._key(account_id)[0])


def retry_headers(wait: float) -> dict[str, str]:
    """Retry-After in whole seconds (rounded up) and, more precisely, retry-after-ms."""
    wait = max(wait, 0.001)
    return {"Retry-After": str(math.ceil(wait)), "retry-after-ms": str(math.ceil(wait * 1000))}


def _budget() -> TokenBudget:
    return current_app.extensions["packet"].tokens


def request_key() -> str:
    """Flask-Limiter's key: the account (auth put it on ``g``) and the current window."""
    return f"account:{g.principal.account_id}/{_budget().bounds()[0]}"


def request_limit() -> str:
    """Flask-Limiter's dynamic limit: the caller's tier rpm over the configured window."""
    settings: Settings = current_app.extensions["packet"].settings
    rpm = tier_figures(settings, g.principal.tier)["rpm"]
    return f"{rpm} per {settings.limit_window_seconds} second"


def skip_request_limit() -> bool:
    """While the storage is known to be down: exempt (fail open) or 503 (fail closed).

    Flask-Limiter asks this for every route; only limited ones (a caller on ``g``) are concerned.
    """
    guard = _budget().guard
    if g.get("principal") is None or guard.available():
        return False
    guard.unavailable()
    return True


def breach_error(exc: LimiterBreach) -> RateLimitExceeded:
    """Flask-Limiter's breach as our 429 envelope, with Retry-After from the real reset."""
    budget = _budget()
    reset_at = budget.bounds()[1]
    wait = reset_at - budget.clock()
    return RateLimitExceeded(
        f"Rate limit reached for requests per minute: limit {exc.limit.limit.amount} per "
        f"{budget.window}s. The limit resets in {math.ceil(wait)}s (at Unix time {reset_at}).",
        limit_type="requests",
        headers=retry_headers(wait),
    )


def storage_error(exc: Exception) -> APIError:
    """A storage failure that escaped Flask-Limiter (fail closed): 503, counted and logged."""
    _budget().guard.failed(exc)
    return ServiceUnavailable(STORAGE_DOWN)


def rate_limit_headers(response: Response) -> Response:
    """Both header families on every /v1 response of an authenticated caller.

    Costs at most one storage read per family, and none where the figure is already known
    (a reservation, a breach, a token 429).
    """
    principal = g.get("principal")
    if principal is None:
        return response
    budget = _budget()
    figures = tier_figures(current_app.extensions["packet"].settings, principal.tier)
    now = budget.clock()
    reset_at = budget.bounds(now)[1]
    rpm, tpm = figures["rpm"], figures["tpm"]
    requests_used = _requests_used(budget.guard, rpm)
    tokens_used, tokens_reset = _tokens_used(budget, principal.account_id, tpm, reset_at)
    response.headers.update(
        {
            "X-RateLimit-Limit": str(rpm),
            "X-RateLimit-Remaining": str(max(0, rpm - requests_used)),
            "X-RateLimit-Reset": str(reset_at),
            "x-ratelimit-limit-requests": str(rpm),
            "x-ratelimit-remaining-requests": str(max(0, rpm - requests_used)),
            "x-ratelimit-reset-requests": duration(reset_at - now),
            "x-ratelimit-limit-tokens": str(tpm),
            "x-ratelimit-remaining-tokens": str(max(0, tpm - tokens_used)),
            "x-ratelimit-reset-tokens": duration(tokens_reset - now),
        }
    )
    return response


def _requests_used(guard: StorageGuard, rpm: int) -> int:
    current = limiter.current_limit
    if current is None:  # not counted: the storage is down and limits fail open
        return 0
    if current.breached:
        return rpm
    count = guard.read(current.key)
    return 0 if count is None else count


def _tokens_used(budget: TokenBudget, account_id: int, tpm: int, reset_at: int) -> tuple[int, int]:
    reservation: TokenReservation | None = g.get("token_reservation")
    if reservation is not None:
        return reservation.counter, reservation.reset_at
    error: Any = g.get("error")
    if isinstance(error, RateLimitExceeded) and error.type == "tokens":
        return tpm, reset_at
    used = budget.used(account_id)
    return 0 if used is None else used, reset_at


def init_blueprint(bp: Blueprint) -> None:
    """Apply the tier request limit (one counter shared by every route) and the headers."""
    limiter.shared_limit(request_limit, scope="v1")(bp)
    limiter.request_filter(skip_request_limit)
    bp.after_request(rate_limit_headers)
