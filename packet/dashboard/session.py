"""Who is signed in: Flask-Login over :class:`~packet.models.User`, sessions scoped to
``/dashboard``, and the checks every view makes (signed in, role, CSRF).

A session's id is ``"<user id>:<session stamp>"``; the stamp changes with the password and
when the user is disabled, so every session signed in before that ends at its next request.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar, cast

from flask import Flask, Request, abort, request
from flask.sessions import SecureCookieSession, SecureCookieSessionInterface
from flask_login import LoginManager, UserMixin, current_user
from flask_wtf.csrf import CSRFError, validate_csrf
from wtforms import ValidationError

from .. import store
from ..models import Account, User

F = TypeVar("F", bound=Callable[..., Any])

login_manager = LoginManager()
login_manager.login_view = "dashboard.login"
login_manager.login_message = "Sign in to see that page."
login_manager.login_message_category = "info"


class SignedIn(UserMixin):
    """The signed-in user, as Flask-Login sees it."""

    def __init__(self, user: User) -> None:
        self.user = user

    def get_id(self) -> str:
        return f"{self.user.id}:{self.user.session_stamp}"

    @property
    def account(self) -> Account:
        return self.user.account

    @property
    def is_owner(self) -> bool:
        return self.user.role == "owner"


@login_manager.user_loader
def _load(session_id: str) -> SignedIn | None:
    user_id, _, stamp = session_id.partition(":")
    if not (user_id.isdigit() and stamp.isdigit()):
        return None
    user = store.user_by_id(int(user_id))
    if user is None or user.disabled or user.session_stamp != int(stamp):
        return None
    return SignedIn(user)


def signed_in() -> SignedIn:
    """The current user of a view behind ``login_required``."""
    return cast(SignedIn, current_user._get_current_object())


def owner_required(view: F) -> F:
    """403 for a member: only owners change keys and endpoints."""

    @wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if not signed_in().is_owner:
            abort(403, "Only the account's owners can do this.")
        return view(*args, **kwargs)

    return cast(F, wrapper)


def check_csrf() -> None:
    """Every state-changing request carries the session's CSRF token (form field or header)."""
    if request.method in ("GET", "HEAD", "OPTIONS"):
        return
    token = request.form.get("csrf_token") or request.headers.get("X-CSRFToken")
    try:
        validate_csrf(token)
    except ValidationError as exc:
        raise CSRFError(str(exc.args[0]) if exc.args else "The CSRF token is missing.") from None


class DashboardSessions(SecureCookieSessionInterface):
    """Signed-cookie sessions for ``/dashboard`` only; the API's requests get none."""

    def open_session(self, app: Flask, request: Request) -> SecureCookieSession | None:
        if not request.path.startswith("/dashboard"):
            return None  # Flask then uses a null session, never written
        return super().open_session(app, request)


def init_app(app: Flask) -> None:
    app.session_interface = DashboardSessions()
    login_manager.init_app(app, add_context_processor=False)
