"""Tier limits: requests/min through Flask-Limiter, tokens/min through a small token budget.

Both limits count in the same clock-aligned windows (``floor(now / window)``): the window is
part of every key, so a window's reset time is known without asking the storage, both header
families share it, and a token settlement always lands in the window that admitted the request.

Requests are counted per account (fixed window) on Flask-Limiter's storage, under the key its
shared limit would use, by :func:`count_request`: one atomic ``incr`` whose result is both the
admission decision and the figure for the headers. (Flask-Limiter's own decorator resolved and
parsed the tier's limit string on every request, and its yes/no hit left the headers one more
storage read.) Tokens are only known when a request ends, which Flask-Limiter cannot see, so
:class:`TokenBudget` does the part no library does:
reserve an estimate at admission (one atomic ``incr`` on the same ``limits`` storage, shared
through Redis) and settle it to the real usage when the request ends. A request is admitted
while the counter is below the budget, so a concurrent burst overshoots by at most one
reservation, and once every request has settled the counter equals the real usage.

:class:`StorageGuard` applies the policy when the storage (Redis) is unreachable.
"""

from __future__ import annotations

import functools
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from flask import Blueprint, Response, current_app, g
from limits import RateLimitItem, RateLimitItemPerSecond
from limits.storage import Storage

from .config import Settings
from .errors import RateLimitExceeded, ServiceUnavailable

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

    def incr(self, key: str, expiry: int) -> int | None:
        """Count one; None when the storage cannot (fail open), 503 when limits fail closed."""
        if not self.available():
            return self.unavailable()
        try:
            return self.storage.incr(key, expiry)
        except Exception as exc:  # noqa: BLE001 - any storage failure follows the policy
            self.failed(exc)
            return self.unavailable()

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
    """The request counter's identity: the account (auth put it on ``g``) and the window.

    Also Flask-Limiter's key function (it requires one).
    """
    return f"account:{g.principal.account_id}/{_budget().bounds()[0]}"


@functools.cache
def _request_item(rpm: int, window: int) -> RateLimitItem:
    """The tier's request limit, built once per figure rather than parsed per request."""
    return RateLimitItemPerSecond(rpm, window)


def count_request() -> None:
    """Count the caller's request (fixed window, shared by every /v1 route); 429 over the rpm.

    The key is the one Flask-Limiter's ``shared_limit(scope="v1")`` used, so counters carry over
    a deploy. The count is kept on ``g`` for the headers, which then need no storage read.
    """
    settings: Settings = current_app.extensions["packet"].settings
    budget = _budget()
    rpm = tier_figures(settings, g.principal.tier)["rpm"]
    item = _request_item(rpm, budget.window)
    count = budget.guard.incr(item.key_for(budget.prefix, request_key(), "v1"), item.get_expiry())
    g.requests_counted = count
    if count is not None and count > rpm:
        reset_at = budget.bounds()[1]
        wait = reset_at - budget.clock()
        raise RateLimitExceeded(
            f"Rate limit reached for requests per minute: limit {rpm} per {budget.window}s. "
            f"The limit resets in {math.ceil(wait)}s (at Unix time {reset_at}).",
            limit_type="requests",
            headers=retry_headers(wait),
        )


def rate_limit_headers(response: Response) -> Response:
    """Both header families on every /v1 response of an authenticated caller.

    The request count comes from this request's own hit; tokens cost one storage read unless the
    figure is already known (a reservation, a token 429).
    """
    principal = g.get("principal")
    if principal is None:
        return response
    budget = _budget()
    figures = tier_figures(current_app.extensions["packet"].settings, principal.tier)
    now = budget.clock()
    reset_at = budget.bounds(now)[1]
    rpm, tpm = str(figures["rpm"]), figures["tpm"]
    requests_used = g.get("requests_counted") or 0  # None: not counted (storage down)
    requests_left = str(max(0, figures["rpm"] - requests_used))
    tokens_used, tokens_reset = _tokens_used(budget, principal.account_id, tpm, reset_at)
    # None of these is set before: extend (append) costs half of update (replace).
    response.headers.extend(
        (
            ("X-RateLimit-Limit", rpm),
            ("X-RateLimit-Remaining", requests_left),
            ("X-RateLimit-Reset", str(reset_at)),
            ("x-ratelimit-limit-requests", rpm),
            ("x-ratelimit-remaining-requests", requests_left),
            ("x-ratelimit-reset-requests", duration(reset_at - now)),
            ("x-ratelimit-limit-tokens", str(tpm)),
            ("x-ratelimit-remaining-tokens", str(max(0, tpm - tokens_used))),
            ("x-ratelimit-reset-tokens", duration(tokens_reset - now)),
        )
    )
    return response


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
    bp.before_request(count_request)
    bp.after_request(rate_limit_headers)
