"""Requests and tokens per clock-aligned window, on Flask-Limiter's storage: admission in
one storage call, settlement to the real usage, and the policy when the storage is down.
No Flask here (:mod:`packet.limits.hooks` is the request side)."""

from __future__ import annotations

import functools
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import gevent
from limits import RateLimitItem, RateLimitItemPerSecond
from limits.storage import Storage

from ..config import Settings
from ..counters import (
    ACCOUNT_RPM,
    KEY_BUDGET,
    KEY_RPM,
    KEY_TPM,
    UNLIMITED,
    Ask,
    KeyAsk,
    Settlement,
    counters_for,
    refused_by_storage,
)
from ..errors import APIError, RateLimitExceeded, ServiceUnavailable
from ..key_controls import KeyControls, over_budget, period_end, period_of
from .guard import StorageGuard

log = logging.getLogger("packet.limits")

STORAGE_REFUSED = "Rate limit storage could not count this request; try again shortly."
# The largest token reservation one request may make: a bound on every number sent to storage.
MAX_ESTIMATE = 2**40


def tier_figures(settings: Settings, tier: str) -> dict[str, int]:
    """rpm and tpm of a tier (an account on a tier removed from config gets the default's)."""
    return settings.tiers.get(tier) or settings.tiers[settings.default_tier]


@functools.cache
def _request_item(rpm: int, window: int) -> RateLimitItem:
    """The tier's request limit, built once per figure rather than parsed per request."""
    return RateLimitItemPerSecond(rpm, window)


@dataclass
class TokenReservation:
    """One admission: the window's counters after it, and the tokens held for the request;
    for a key with controls, its own counters too, and the money held on its budget."""

    key: str
    reserved: int
    reset_at: int
    counter: int
    requests: int = 0
    admitted: bool = True
    settled: bool = False
    refused: int = 0
    key_token_key: str | None = None
    key_requests: int = 0
    key_tokens: int = 0
    spend_key: str | None = None
    spend_reset: int = 0
    spend_held: int = 0
    spent: int = 0


@dataclass(frozen=True)
class KeyLimit:
    """What admission needs of a key with controls: its id, controls, the request's maximum
    cost (held on the budget)."""

    key_id: int
    controls: KeyControls
    hold: int = 0


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
        self._periods: dict[str, tuple[str, int]] = {}  # budget period → (current, its end)
        self._flusher: gevent.Greenlet[[], None] | None = None

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

    def _period(self, budget_period: str, now: float) -> tuple[str, int]:
        """The budget period ``now`` falls in and its end, worked out once per period."""
        known = self._periods.get(budget_period)
        if known is None or now >= known[1]:
            known = self._periods[budget_period] = (
                period_of(budget_period, now),
                period_end(budget_period, now),
            )
        return known

    def _key_ask(self, limit: KeyLimit, start: int, now: float) -> tuple[KeyAsk, int]:
        """The key's counters for this window and budget period, and when the period ends."""
        controls, key_id = limit.controls, limit.key_id
        period, budget_reset = self._period(controls.budget_period, now)
        ask = KeyAsk(
            f"{self.prefix}/key-rpm/{key_id}/{start}",
            f"{self.prefix}/key-tpm/{key_id}/{start}",
            UNLIMITED if controls.rpm is None else controls.rpm,
            UNLIMITED if controls.tpm is None else controls.tpm,
            f"{self.prefix}/key-spend/{key_id}/{period}",
            controls.budget_micros,
            max(0, min(limit.hold, MAX_ESTIMATE)),
            controls.spent_in(period),
            max(1, budget_reset - int(now)),
        )
        return ask, budget_reset

    def admit(
        self,
        account_id: int,
        *,
        rpm: int,
        tpm: int,
        estimate: int | None,
        key: KeyLimit | None = None,
    ) -> TokenReservation | None:
        """Count one request and reserve ``estimate`` tokens (None: count only); for a key
        with controls, on its own counters too, and its maximum cost on the key's budget.

        The result says whether the request is admitted (see :meth:`refusal`); None when the
        storage is down and limits fail open (503 when they fail closed).
        """
        now = self.clock()
        start, reset_at = self.bounds(now)
        token_key = self._token_key(account_id, start)
        if estimate is not None:
            estimate = max(0, min(estimate, MAX_ESTIMATE))
        if not self.guard.available():
            self.guard.unavailable()
            return None
        key_ask, budget_reset = self._key_ask(key, start, now) if key is not None else (None, 0)
        ask = Ask(
            self._request_key(account_id, rpm, start),
            token_key,
            rpm,
            tpm,
            estimate,
            (self.window, self.window + 5),
            key_ask,
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
            self.guard.unavailable()
            return None
        held = (estimate or 0) if result.admitted else 0
        reservation = TokenReservation(
            token_key,
            held,
            reset_at,
            result.tokens,
            result.requests,
            result.admitted,
            not held,
            result.refused,
        )
        if key_ask is not None:
            reservation.key_token_key = key_ask.token_key
            reservation.key_requests, reservation.key_tokens = (
                result.key_requests,
                result.key_tokens,
            )
            reservation.spent = result.spent
            if key_ask.budget is not None and result.admitted and estimate is not None:
                reservation.spend_key, reservation.spend_reset = key_ask.spend_key, budget_reset
                reservation.spend_held = key_ask.hold
                reservation.settled = False
        return reservation

    def refusal(
        self,
        reservation: TokenReservation,
        rpm: int,
        tpm: int,
        controls: KeyControls | None = None,
    ) -> APIError:
        """The error for a refused admission: which limit (the key's or the account's), and
        when it resets; a key's spent budget is a 403."""
        refused = reservation.refused
        if refused == KEY_BUDGET and controls is not None:
            return over_budget(controls, reservation.spent)
        wait = reservation.reset_at - self.clock()
        on_key = refused in (KEY_RPM, KEY_TPM) and controls is not None
        # A key with limits of its own is told whose limit it hit; plain keys read as always.
        whose = "" if controls is None else " on this API key" if on_key else " on your account"
        resets = f"The limit resets in {math.ceil(wait)}s (at Unix time {reservation.reset_at})."
        if refused in (ACCOUNT_RPM, KEY_RPM):
            limit = controls.rpm if on_key and controls is not None else rpm
            return RateLimitExceeded(
                f"Rate limit reached for requests per minute{whose}: limit {limit} per "
                f"{self.window}s. {resets}",
                limit_type="requests",
                headers=retry_headers(wait),
            )
        limit, used = tpm, reservation.counter
        if on_key and controls is not None:
            limit, used = controls.tpm or 0, reservation.key_tokens
        return RateLimitExceeded(
            f"Rate limit reached for tokens per minute{whose}: limit {limit} per "
            f"{self.window}s, used {used}. {resets}",
            limit_type="tokens",
            headers=retry_headers(wait),
        )

    def settle(
        self, reservation: TokenReservation | None, actual: int, cost: int | None = None
    ) -> None:
        """Replace the reservation by the real usage, and the money held on a key's budget by
        the real ``cost`` (once; later calls do nothing)."""
        if reservation is None or reservation.settled:
            return
        reservation.settled = True
        changes: list[tuple[str, int, int]] = []  # key, delta, when the counter ends
        delta = actual - reservation.reserved
        if delta:
            reservation.counter += delta
            changes.append((reservation.key, delta, reservation.reset_at))
            if reservation.key_token_key is not None:
                reservation.key_tokens += delta
                changes.append((reservation.key_token_key, delta, reservation.reset_at))
        if reservation.spend_key is not None:
            spend = (cost or 0) - reservation.spend_held
            if spend:
                reservation.spent += spend
                changes.append((reservation.spend_key, spend, reservation.spend_reset))
        if not changes:
            return
        if self.counters.batches_settlements:
            for key, change, reset in changes:
                self._queue.setdefault(key, [0, reset])[0] += change
            self._schedule(self.flush_delay)
        elif self.guard.available():
            try:
                now = int(self.clock())
                for key, change, reset in changes:
                    self.counters.settle([(key, change)], max(1, reset - now + 5))
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

    def requests_counted(self, account_id: int, rpm: int) -> int | None:
        """Requests counted in the account's current window (None when the storage can't say)."""
        if not self.guard.available():
            return None
        try:
            return self.counters.get(self._request_key(account_id, rpm, self.bounds()[0]))
        except Exception as exc:  # noqa: BLE001 - any storage failure follows the policy
            self.guard.failed(exc)
            return None


_CARRIED = 64  # settlements carried by one admission at most


def _pairs(taken: dict[str, list[int]]) -> list[Settlement]:
    return [(key, delta) for key, (delta, _) in taken.items()]


def retry_headers(wait: float) -> dict[str, str]:
    """Retry-After in whole seconds (rounded up) and, more precisely, retry-after-ms."""
    wait = max(wait, 0.001)
    return {"Retry-After": str(math.ceil(wait)), "retry-after-ms": str(math.ceil(wait * 1000))}
