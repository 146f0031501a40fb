"""The Flask side of the limits: every /v1 request counted (completions where the pipeline
admits them), and both header families on every answer to an authenticated caller."""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from flask import Blueprint, Response, current_app, request

from ..errors import APIError
from ..exchange import Exchange, current
from ..protocol.messages import PATHS as ANTHROPIC_PATHS
from ..runtime import runtime
from .admission import count, refuse_over
from .window import TokenReservation, WindowLimits, tier_figures

if TYPE_CHECKING:
    from ..auth import Principal


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
    """Both header families on every /v1 response of an authenticated caller, and Anthropic's
    on its Messages routes (what the Anthropic SDK and Claude Code read).

    The figures come from this request's own admission; a request that ended before it (bad
    body, unknown model) is counted here, and a storage failure then only costs the headers.
    """
    exchange = current()
    principal = exchange.principal
    if principal is None:
        return response
    if not exchange.counted:
        with contextlib.suppress(APIError):
            admit(None)
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
    """Apply the tier limits (one request counter shared by every route) and the headers."""
    bp.before_request(count_request)
    bp.after_request(rate_limit_headers)
