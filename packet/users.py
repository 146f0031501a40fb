"""Dashboard users: invites and resets as one-time sign-in links, passwords, sign-in.

The CLI (``users invite|reset``), the admin API and the dashboard all go through here. A link
carries a random token; only its SHA-256 digest is stored, it works once and for
:data:`LINK_TTL`. Passwords are hashed with scrypt (werkzeug). Sign-in answers the same way
for an unknown email, a disabled user and a wrong password, and takes as long.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from datetime import datetime, timedelta
from functools import cache

from werkzeug.security import check_password_hash, generate_password_hash

from . import store
from .models import User, utcnow

ROLES = ("owner", "member")
LINK_TTL = timedelta(hours=24)
LINK_PATH = "/dashboard/welcome/"
MIN_PASSWORD = 10
MAX_PASSWORD = 200
_EMAIL = re.compile(r"^[^@\s]{1,64}@[^@\s]+\.[^@\s]+$")


class UserError(ValueError):
    """A request about users that cannot be carried out (bad email, weak password, …)."""


def check_email(email: str) -> str:
    email = email.strip()
    if len(email) > 254 or not _EMAIL.match(email):
        raise UserError(f"not an email address: {email!r}")
    return email


def check_password(password: str) -> str:
    if len(password) < MIN_PASSWORD:
        raise UserError(f"the password must have at least {MIN_PASSWORD} characters")
    if len(password) > MAX_PASSWORD:
        raise UserError(f"the password must have at most {MAX_PASSWORD} characters")
    return password


def hash_password(password: str) -> str:
    return generate_password_hash(password, method="scrypt")


@cache
def _dummy_hash() -> str:
    """Checked when there is no user, so an unknown email takes as long as a wrong password."""
    return hash_password(secrets.token_urlsafe(16))


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def link(token: str, base_url: str | None) -> str:
    """The sign-in link for ``token``: absolute when the gateway's public URL is known."""
    return f"{base_url or ''}{LINK_PATH}{token}"


def issue_link(user: User, now: datetime | None = None) -> str:
    """A new one-time token for ``user`` (earlier unused ones stop working)."""
    token = secrets.token_urlsafe(32)
    store.add_sign_in_token(user, _digest(token), (now or utcnow()) + LINK_TTL)
    return token


def invite(email: str, account_name: str, role: str = "member") -> tuple[User, str]:
    """A new user of the account and the token of their first sign-in link."""
    if role not in ROLES:
        raise UserError(f"unknown role {role!r}; one of: {', '.join(ROLES)}")
    user = store.create_user(check_email(email), account_name, role)
    return user, issue_link(user)


def reset(email: str) -> tuple[User, str]:
    """A new sign-in link for an existing user (to set a new password)."""
    user = store.get_user(email)
    return user, issue_link(user)


def pending(token: str, now: datetime | None = None) -> User | None:
    """The user a still-usable link belongs to (the link is not spent)."""
    user = store.peek_sign_in_token(_digest(token), now or utcnow())
    return user if user is not None and not user.disabled else None


def redeem(token: str, password: str, now: datetime | None = None) -> User | None:
    """Spend the link and set the user's password; None when the link is unusable."""
    check_password(password)
    user = store.use_sign_in_token(_digest(token), now or utcnow())
    if user is None or user.disabled:
        return None
    return store.set_password(user, hash_password(password))


def authenticate(email: str, password: str, now: datetime | None = None) -> User | None:
    """The user these credentials sign in, or None — whatever was wrong with them."""
    user = store.find_user(email)
    if user is None or user.password_hash is None or user.disabled:
        check_password_hash(_dummy_hash(), password)
        return None
    if not check_password_hash(user.password_hash, password):
        return None
    store.note_sign_in(user, now or utcnow())
    return user


def change_password(user: User, current: str, new: str) -> User | None:
    """Set a new password when ``current`` is right (every other session ends)."""
    check_password(new)
    if user.password_hash is None or not check_password_hash(user.password_hash, current):
        return None
    return store.set_password(user, hash_password(new))


def set_disabled(email: str, disabled: bool) -> User:
    """Disable (or enable) a user: a disabled user's sessions end at their next request."""
    return store.set_disabled(store.get_user(email), disabled)
