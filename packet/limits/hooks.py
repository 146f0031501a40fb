"""The Flask side of the limits: the /v1 views that are not proxied are counted by their
decorator (proxied ones where the pipeline admits them), and both header families go on every
answer to an authenticated caller."""

from __future__ import annotations

import contextlib
import functools
import math
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, ParamSpec, TypeVar

from flask import Blueprint, Response, request

from ..errors import APIError
from ..exchange import Exchange, current
from ..protocol.messages import PATHS as ANTHROPIC_PATHS
from ..runtime import runtime
from .admission import count, refuse_over
from .window import TokenReservation, WindowLimits, tier_figures

if TYPE_CHECKING:
    from ..auth import Principal

P = ParamSpec("P")
R = TypeVar("R")


def duration(seconds: float) -> str:
    """OpenAI's reset format: ``6m0s``, ``1.5s``, ``250ms``."""
    if seconds < 1:
        return f"{max(0, int(seconds * 1000))}ms"
    if seconds < 60:
        return f"{round(seconds, 1):g}s"
    minutes, rest = divmod(math.ceil(seconds), 60)
    return f"{minutes}m{rest}s"


def request_key() -> str:
    """The caller's request counter identity (Flask-Limiter requires a key function)."""
    return f"account:{_principal().account_id}/{runtime().limits.bounds()[0]}"


def admit(estimate: int | None) -> TokenReservation | None:
    """:func:`count` for the current Flask request; the counts are kept on its exchange for
    the headers, which then need no storage read."""
    rt, principal = runtime(), _principal()
    reservation = count(rt, principal, estimate)
    note_admission(reservation)
    refuse_over(rt, principal, reservation)
    return reservation


def note_admission(reservation: TokenReservation | None) -> None:
    """Keep an admission's counts on the exchange for :func:`rate_limit_headers`."""
    exchange = current()
    exchange.counted, exchange.admission = True, reservation
    exchange.requests_counted = None if reservation is None else reservation.requests


def _principal() -> Principal:
    principal = current().principal
    assert principal is not None  # the limited blueprints authenticate first
    return principal


def counted(view: Callable[P, R]) -> Callable[P, R]:
    """Count the caller's request before the view runs (429 over the rpm): for the /v1 views
    that are not proxied. A proxied request is counted where the pipeline admits it, with its
    token estimate, in the same storage call (see :func:`count_unadmitted`)."""

    @functools.wraps(view)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        admit(None)
        return view(*args, **kwargs)

    return wrapper


def count_unadmitted() -> None:
    """Count a proxied request that ended before the pipeline admitted it (a bad body, an
    unknown model, an upload cut short), so every request counts once; it keeps its own error
    (a storage failure here only costs the headers)."""
    if not current().counted:
        with contextlib.suppress(APIError):
            rt, principal = runtime(), _principal()
            note_admission(count(rt, principal, None))


def rate_limit_headers(response: Response) -> Response:
    """Both header families on every /v1 response of an authenticated caller, and Anthropic's
    on its Messages routes (what the Anthropic SDK and Claude Code read).

    The figures come from this request's own admission.
    """
    exchange = current()
    principal = exchange.principal
    if principal is None:
        return response
    rt = runtime()
    limits = rt.limits
    figures = tier_figures(rt.settings, principal.tier)
    now = limits.clock()
    reset_at = limits.bounds(now)[1]
    rpm, tpm = figures["rpm"], figures["tpm"]
    requests_used = exchange.requests_counted or 0  # None: not counted (storage down)
    tokens_used, tokens_reset = _tokens_used(exchange, limits, principal.account_id, reset_at)
    controls, reservation = principal.controls, exchange.admission
    if controls is not None and reservation is not None and reservation.key_token_key:
        rpm, requests_used = _tighter(rpm, requests_used, controls.rpm, reservation.key_requests)
        tpm, tokens_used = _tighter(tpm, tokens_used, controls.tpm, reservation.key_tokens)
    requests_left = str(max(0, rpm - requests_used))
    tokens_left = str(max(0, tpm - tokens_used))
    # None of these is set before, so append (extend): update (replace) would look each up first.
    if request.path.startswith(ANTHROPIC_PATHS):
        response.headers.extend(
            (
                ("anthropic-ratelimit-requests-limit", str(rpm)),
                ("anthropic-ratelimit-requests-remaining", requests_left),
                ("anthropic-ratelimit-requests-reset", _rfc3339(reset_at)),
                ("anthropic-ratelimit-tokens-limit", str(tpm)),
                ("anthropic-ratelimit-tokens-remaining", tokens_left),
                ("anthropic-ratelimit-tokens-reset", _rfc3339(tokens_reset)),
            )
        )
    response.headers.extend(
        (
            ("X-RateLimit-Limit", str(rpm)),
            ("X-RateLimit-Remaining", requests_left),
            ("X-RateLimit-Reset", str(reset_at)),
            ("x-ratelimit-limit-requests", str(rpm)),
            ("x-ratelimit-remaining-requests", requests_left),
            ("x-ratelimit-reset-requests", duration(reset_at - now)),
            ("x-ratelimit-limit-tokens", str(tpm)),
            ("x-ratelimit-remaining-tokens", tokens_left),
            ("x-ratelimit-reset-tokens", duration(tokens_reset - now)),
        )
    )
    return response


def _tighter(limit: int, used: int, key_limit: int | None, key_used: int) -> tuple[int, int]:
    """(limit, used) of whichever of account and key has less left."""
    if key_limit is not None and key_limit - key_used < limit - used:
        return key_limit, key_used
    return limit, used


def _rfc3339(epoch: int) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _tokens_used(
    exchange: Exchange, limits: WindowLimits, account_id: int, reset_at: int
) -> tuple[int, int]:
    """Tokens used in the window, from this request's own admission (a refused one too);
    a request counted without tokens reads the counter."""
    reservation = exchange.admission
    if reservation is not None:
        return reservation.counter, reservation.reset_at
    used = limits.used(account_id)
    return 0 if used is None else used, reset_at


def init_blueprint(bp: Blueprint) -> None:
    """The rate-limit headers on every answer of the blueprint (its views count themselves:
    :func:`counted`, or the pipeline)."""
    bp.after_request(rate_limit_headers)
