"""What one HTTP request carries from hook to hook, as one typed value.

Facts about a request are learnt in different places — its id and start (observability), the
caller (auth), what admission counted (limits), whether the pipeline metered it (the view),
the error it ended with (errors) — and read in others (the headers, the log line, /metrics).
They live in one :class:`Exchange` on ``flask.g``, declared here, rather than as loose ``g``
attributes each module has to know the spelling of. The pipeline itself never sees it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from flask import g

if TYPE_CHECKING:
    from .auth import Principal
    from .errors import APIError
    from .limits import TokenReservation
    from .outcome import Outcome


@dataclass
class Exchange:
    """One request's facts. ``counted``: its request was counted against requests/min (with
    ``requests_counted`` the count after it, None when the storage was down); ``metered``: the
    pipeline wrote its usage row; ``outcome``: what the pipeline learnt of a proxied request
    (model, endpoint, tokens, upstream times), read by the log line and the metrics."""

    request_id: str = ""
    started: float = 0.0
    principal: Principal | None = None
    error: APIError | None = None
    counted: bool = False
    requests_counted: int | None = None
    admission: TokenReservation | None = None
    metered: bool = False
    outcome: Outcome | None = None
    method: str = ""
    trace_id: str | None = None


def begin(request_id: str) -> Exchange:
    """The current request's exchange, started now."""
    g.exchange = exchange = Exchange(request_id, time.perf_counter())
    return exchange


def current() -> Exchange:
    """The current request's exchange (an empty one if the request never began: a hook that
    ran before :func:`begin` failed)."""
    exchange: Exchange | None = g.get("exchange")
    if exchange is None:
        g.exchange = exchange = Exchange(started=time.perf_counter())
    return exchange
