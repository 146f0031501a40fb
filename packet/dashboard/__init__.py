"""The self-service dashboard under ``/dashboard``: an account's own people sign in to manage
keys and endpoints and to watch usage and balance.

Served only when ``SECRET_KEY`` is set (it signs the session cookie). Server-rendered Jinja
pages on the same services as the CLI and the admin API; the assets (a classless stylesheet,
htmx, Chart.js) are vendored under ``static/vendor`` and served by the gateway itself. Sessions
live in a cookie scoped to ``/dashboard``, so the API's requests never open one.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from flask import Blueprint

if TYPE_CHECKING:
    from flask import Flask

    from ..config import Settings

bp = Blueprint(
    "dashboard",
    __name__,
    url_prefix="/dashboard",
    template_folder="templates",
    static_folder="static",
)

__all__ = ["bp", "init_app"]


def init_app(app: Flask, settings: Settings) -> None:
    """Configure sessions, sign-in and its throttle, then register the pages."""
    from . import session, throttle, views  # noqa: F401 (importing views declares the pages)

    app.config.update(
        SECRET_KEY=settings.secret_key,
        SESSION_COOKIE_NAME="packet_dashboard",
        SESSION_COOKIE_PATH="/dashboard",
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=not settings.dashboard_insecure_cookies,
        WTF_CSRF_TIME_LIMIT=None,  # a token lives as long as its session
    )
    session.init_app(app)
    throttle.init_app(app)
    app.register_blueprint(bp)
