"""Tier limits: requests and tokens per minute, on Flask-Limiter's storage.

Both limits count in the same clock-aligned windows (``floor(now / window)``): the window is
part of every key, so a window's reset time is known without asking the storage, both header
families share it, and a token settlement always lands in the window that admitted the request.

Flask-Limiter supplies the storage (``memory://``, Redis …) from its config; its own per-route
hooks would resolve and parse the tier's limit string on every request and leave the headers
one more read, so :func:`admit` does the per-account work instead. Tokens are only known when a
request ends, which Flask-Limiter cannot see, so :class:`WindowLimits` does the part no library
does: it counts the request and reserves an estimate of its tokens in one storage call
(:mod:`packet.counters`), and settles the reservation to the real usage when the request ends.
A request is admitted while the token counter is below the budget, so a concurrent burst
overshoots by at most one reservation, and once every request has settled the counter equals
the real usage. Completions are counted where their estimate is known (after validation and
routing); every other /v1 request is counted before its view.

:class:`StorageGuard` applies the policy when the storage (Redis) is unreachable.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import gevent
from flask import Blueprint, Response, current_app, g, request
from limits import RateLimitItem, RateLimitItemPerSecond
from limits.storage import Storage

from .config import Settings
from .counters import Ask, Settlement, counters_for, refused_by_storage
from .errors import APIError, RateLimitExceeded, ServiceUnavailable
from .runtime import runtime

if TYPE_CHECKING:
    from .auth import Principal
    from .runtime import Runtime

log = logging.getLogger("packet.limits")

STORAGE_DOWN = "Rate limit storage is unreachable; try again shortly."
STORAGE_REFUSED = "Rate limit storage could not count this request; try again shortly."
# The largest token reservation one request may make: a bound on every number sent to storage.
MAX_ESTIMATE = 2**40


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


@dataclass
class TokenReservation:
    """One admission: the window's counters after it, and the tokens held for the request."""

    key: str
    reserved: int
    reset_at: int
    counter: int
    requests: int = 0
    admitted: bool = True
    settled: bool = False


class WindowLimits:
    """Requests and tokens per clock-aligned window: admission, settlement, figures.

    A request is counted and its tokens reserved in one storage call (:mod:`packet.counters`).
    On Redis, settlements wait in a per-worker queue and ride along with the worker's next
    admission — so the next request of the same caller through this worker always sees them —
    or are written by a timer ``flush_delay`` later when no request comes.
    """

    def __init__(
        self,
        storage: Storage,
        window: int,
        *,
        prefix: str,
        guard: StorageGuard,
        clock: Callable[[], float] = time.time,
        flush_delay: float = 0.05,
    ) -> None:
        self.storage = storage
        self.counters = counters_for(storage)
        self.window = window
        self.prefix = prefix
        self.guard = guard
        self.clock = clock
        self.flush_delay = flush_delay
        self._queue: dict[str, list[int]] = {}  # token key → [delta, window reset]
        self._flusher: gevent.Greenlet | None = None

    def bounds(self, now: float | None = None) -> tuple[int, int]:
        """(start, reset) of the current window, in Unix seconds."""
        start = int((self.clock() if now is None else now) // self.window) * self.window
        return start, start + self.window

    def _token_key(self, account_id: int, start: int) -> str:
        return f"{self.prefix}/tpm/{account_id}/{start}"

    def _request_key(self, account_id: int, rpm: int, start: int) -> str:
        """The key Flask-Limiter's ``shared_limit(scope="v1")`` used, so counts survive a deploy."""
        item = _request_item(rpm, self.window)
        return item.key_for(self.prefix, f"account:{account_id}/{start}", "v1")

    def admit(
        self, account_id: int, *, rpm: int, tpm: int, estimate: int | None
    ) -> TokenReservation | None:
        """Count one request and reserve ``estimate`` tokens (None: count only).

        The result says whether the request is admitted (see :meth:`refusal`); None when the
        storage is down and limits fail open (503 when they fail closed).
        """
        start, reset_at = self.bounds()
        key = self._token_key(account_id, start)
        if estimate is not None:
            estimate = max(0, min(estimate, MAX_ESTIMATE))
        if not self.guard.available():
            return self.guard.unavailable()
        ask = Ask(
            self._request_key(account_id, rpm, start),
            key,
            rpm,
            tpm,
            estimate,
            (self.window, self.window + 5),
        )
        taken = self._take(_CARRIED)
        try:
            result = self.counters.admit(ask, _pairs(taken))
        except Exception as exc:  # noqa: BLE001 - any storage failure follows the policy
            self._put_back(taken)
            if refused_by_storage(exc):
                # The storage is up and said no to this call: that fails this request only.
                log.error("limit storage refused an admission: %s", exc)
                raise ServiceUnavailable(STORAGE_REFUSED) from None
            self.guard.failed(exc)
            return self.guard.unavailable()
        held = (estimate or 0) if result.admitted else 0
        return TokenReservation(
            key, held, reset_at, result.tokens, result.requests, result.admitted, not held
        )

    def refusal(self, reservation: TokenReservation, rpm: int, tpm: int) -> RateLimitExceeded:
        """The 429 for a refused admission: which limit, and when it resets."""
        wait = reservation.reset_at - self.clock()
        if reservation.requests > rpm:
            return RateLimitExceeded(
                f"Rate limit reached for requests per minute: limit {rpm} per {self.window}s. "
                f"The limit resets in {math.ceil(wait)}s (at Unix time {reservation.reset_at}).",
                limit_type="requests",
                headers=retry_headers(wait),
            )
        return RateLimitExceeded(
            f"Rate limit reached for tokens per minute: limit {tpm} per {self.window}s, "
            f"used {reservation.counter}. The limit resets in {math.ceil(wait)}s (at Unix "
            f"time {reservation.reset_at}).",
            limit_type="tokens",
            headers=retry_headers(wait),
        )

    def settle(self, reservation: TokenReservation | None, actual: int) -> None:
        """Replace the reservation by the real usage (once; later calls do nothing)."""
        if reservation is None or reservation.settled:
            return
        reservation.settled = True
        delta = actual - reservation.reserved
        if not delta:
            return
        reservation.counter += delta
        if self.counters.batches_settlements:
            queued = self._queue.setdefault(reservation.key, [0, reservation.reset_at])
            queued[0] += delta
            self._schedule(self.flush_delay)
        elif self.guard.available():
            try:
                self.counters.settle([(reservation.key, delta)], self.window + 5)
            except Exception as exc:  # noqa: BLE001 - settling never fails a response
                self.guard.failed(exc)

    def flush(self) -> None:
        """Write every queued settlement now (the timer, and a worker's shutdown)."""
        self._flusher = None
        taken = self._take(None)
        if not taken:
            return
        if not self.guard.available():
            self._put_back(taken)
            self._schedule(self.guard.pause)
            return
        try:
            self.counters.settle(_pairs(taken), self.window + 5)
        except Exception as exc:  # noqa: BLE001 - kept for the next try
            self._put_back(taken)
            self.guard.failed(exc)
            self._schedule(self.guard.pause)

    def _schedule(self, delay: float) -> None:
        if self._flusher is None:
            self._flusher = gevent.spawn_later(delay, self.flush)

    def _take(self, limit: int | None) -> dict[str, list[int]]:
        """Up to ``limit`` queued settlements (key → [delta, window reset]); those whose window
        has ended are dropped (their key has expired), so an outage cannot grow the queue."""
        if not self._queue:
            return {}
        now = self.clock()
        taken = {}
        for key in list(self._queue)[:limit]:
            entry = self._queue.pop(key)
            if entry[0] and entry[1] + 5 > now:
                taken[key] = entry
        return taken

    def _put_back(self, taken: dict[str, list[int]]) -> None:
        for key, (delta, reset_at) in taken.items():
            self._queue.setdefault(key, [0, reset_at])[0] += delta

    def used(self, account_id: int) -> int | None:
        """Tokens counted in the account's current window (None when the storage can't say)."""
        key = self._token_key(account_id, self.bounds()[0])
        if not self.guard.available():
            return None
        try:
            stored = self.counters.get(key)
        except Exception as exc:  # noqa: BLE001 - any storage failure follows the policy
            self.guard.failed(exc)
            return None
        return stored + self._queue.get(key, (0,))[0]


_CARRIED = 64  # settlements carried by one admission at most


def _pairs(taken: dict[str, list[int]]) -> list[Settlement]:
    return [(key, delta) for key, (delta, _) in taken.items()]


def retry_headers(wait: float) -> dict[str, str]:
    """Retry-After in whole seconds (rounded up) and, more precisely, retry-after-ms."""
    wait = max(wait, 0.001)
    return {"Retry-After": str(math.ceil(wait)), "retry-after-ms": str(math.ceil(wait * 1000))}


def request_key() -> str:
    """The caller's request counter identity (Flask-Limiter requires a key function)."""
    return f"account:{g.principal.account_id}/{runtime().limits.bounds()[0]}"


@functools.cache
def _request_item(rpm: int, window: int) -> RateLimitItem:
    """The tier's request limit, built once per figure rather than parsed per request."""
    return RateLimitItemPerSecond(rpm, window)


def count(rt: Runtime, principal: Principal, estimate: int | None) -> TokenReservation | None:
    """Count the caller's request and reserve ``estimate`` tokens (None: storage down)."""
    figures = tier_figures(rt.settings, principal.tier)
    return rt.limits.admit(
        principal.account_id, rpm=figures["rpm"], tpm=figures["tpm"], estimate=estimate
    )


def refuse_over(rt: Runtime, principal: Principal, reservation: TokenReservation | None) -> None:
    """The 429 when the counted request went over either limit."""
    if reservation is not None and not reservation.admitted:
        figures = tier_figures(rt.settings, principal.tier)
        raise rt.limits.refusal(reservation, figures["rpm"], figures["tpm"])


def admit(estimate: int | None) -> TokenReservation | None:
    """:func:`count` for the current Flask request; the counts are kept on ``g`` for the
    headers, which then need no storage read."""
    rt = runtime()
    reservation = count(rt, g.principal, estimate)
    note_admission(reservation)
    refuse_over(rt, g.principal, reservation)
    return reservation


def note_admission(reservation: TokenReservation | None) -> None:
    """Keep an admission's counts on ``g`` for :func:`rate_limit_headers`."""
    g.token_reservation = reservation
    g.requests_counted = None if reservation is None else reservation.requests


def counted_at_admission(view: Callable[..., Any]) -> Callable[..., Any]:
    """Mark a view that calls :func:`admit` itself, with its token estimate, once it has one.

    Counting the request there too makes one storage call of the two; a request that fails
    before it gets there is counted with the headers.
    """
    view.counted_at_admission = True  # type: ignore[attr-defined]
    return view


def count_request() -> None:
    """Count the caller's request (one counter shared by every /v1 route); 429 over the rpm."""
    view = current_app.view_functions.get(request.endpoint or "")
    if not getattr(view, "counted_at_admission", False):
        admit(None)


def rate_limit_headers(response: Response) -> Response:
    """Both header families on every /v1 response of an authenticated caller.

    The figures come from this request's own admission; a request that ended before it (bad
    body, unknown model) is counted here, and a storage failure then only costs the headers.
    """
    principal = g.get("principal")
    if principal is None:
        return response
    if "requests_counted" not in g:
        with contextlib.suppress(APIError):
            admit(None)
    rt = runtime()
    limits = rt.limits
    figures = tier_figures(rt.settings, principal.tier)
    now = limits.clock()
    reset_at = limits.bounds(now)[1]
    rpm, tpm = str(figures["rpm"]), figures["tpm"]
    requests_used = g.get("requests_counted") or 0  # None: not counted (storage down)
    requests_left = str(max(0, figures["rpm"] - requests_used))
    tokens_used, tokens_reset = _tokens_used(limits, principal.account_id, tpm, reset_at)
    # None of these is set before, so append (extend): update (replace) would look each up first.
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


def _tokens_used(limits: WindowLimits, account_id: int, tpm: int, reset_at: int) -> tuple[int, int]:
    reservation: TokenReservation | None = g.get("token_reservation")
    if reservation is not None:
        return reservation.counter, reservation.reset_at
    error: Any = g.get("error")
    if isinstance(error, RateLimitExceeded) and error.type == "tokens":
        return tpm, reset_at
    used = limits.used(account_id)
    return 0 if used is None else used, reset_at


def init_blueprint(bp: Blueprint) -> None:
    """Apply the tier limits (one request counter shared by every route) and the headers."""
    bp.before_request(count_request)
    bp.after_request(rate_limit_headers)
