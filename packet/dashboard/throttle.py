"""Failed sign-ins, limited per email and per client address with Flask-Limiter.

A limiter of its own, apart from the tier limits' storage user (:mod:`packet.limits`): its
decorators run inside the views they wrap, so it needs none of Flask-Limiter's app-wide
request hooks and the API's requests never pass through it. Each failure is a hit on both
counters (:func:`count_failure`); every attempt is checked first at no cost (:func:`guarded`),
so once a budget is spent even the right password waits for the window to end.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar, cast

from flask import Flask, request
from flask_limiter import Limiter

from ..runtime import runtime

F = TypeVar("F", bound=Callable[..., Any])

PER_EMAIL = "5 per minute"
PER_ADDRESS = "20 per minute"


def _address() -> str:
    rt = runtime()  # the gateway's key prefix keeps gateways sharing one Redis apart
    return f"{rt.settings.limit_key_prefix}/addr:{rt.auth_throttle.address(request.environ)}"


def _email() -> str:
    email = (request.form.get("email") or "").strip().lower()[:254]
    return f"{runtime().settings.limit_key_prefix}/email:{email}"


# With the storage down, sign-in goes on unthrottled (logged) rather than locking everyone out.
limiter = Limiter(
    key_func=_address, key_prefix="dashboard-signin", strategy="fixed-window", swallow_errors=True
)


def _limited(fn: F, cost: int) -> F:
    """``fn`` under both limits (a shared scope each, so every decorated function counts
    against the same two counters), charging ``cost`` per call. The cost is given as a
    callable: Flask-Limiter reads a plain ``0`` as its default of 1."""
    for amount, scope, key in ((PER_EMAIL, "email", _email), (PER_ADDRESS, "address", _address)):
        limit = limiter.shared_limit(
            amount, scope=f"signin-{scope}", key_func=key, cost=lambda: cost
        )
        fn = cast(F, limit(fn))
    return fn


def guarded(view: F) -> F:
    """Refuse (429) an attempt from an email or address whose failure budget is spent."""
    return _limited(view, 0)


def counting(fn: F) -> F:
    """Count a call of ``fn`` (a failed sign-in) against both budgets; 429 once over."""
    return _limited(fn, 1)


def init_app(app: Flask) -> None:
    """Bind to the app's limit storage without Flask-Limiter's per-request hooks."""
    app.extensions.setdefault("limiter", set()).add(limiter)
    limiter.init_app(app)
