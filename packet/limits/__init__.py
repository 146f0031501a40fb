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
routing); every other /v1 view is counted before it runs (``@counted``).

:class:`StorageGuard` applies the policy when the storage (Redis) is unreachable.
"""

from .admission import count, refuse_over
from .guard import STORAGE_DOWN, StorageGuard
from .hooks import (
    admit,
    count_unadmitted,
    counted,
    duration,
    init_blueprint,
    note_admission,
    request_key,
)
from .window import (
    MAX_ESTIMATE,
    STORAGE_REFUSED,
    TokenReservation,
    WindowLimits,
    retry_headers,
    tier_figures,
)

__all__ = [
    "MAX_ESTIMATE",
    "STORAGE_DOWN",
    "STORAGE_REFUSED",
    "StorageGuard",
    "TokenReservation",
    "WindowLimits",
    "admit",
    "count",
    "count_unadmitted",
    "counted",
    "duration",
    "init_blueprint",
    "note_admission",
    "refuse_over",
    "request_key",
    "retry_headers",
    "tier_figures",
]
