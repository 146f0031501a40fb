"""Dashboard users and their one-time sign-in links (only token digests are stored)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import func, select, update

from ..extensions import db
from ..models import SignInToken, User, utcnow
from ._db import ConflictError, NotFoundError, _atomic
from .accounts import get_account


def find_user(email: str) -> User | None:
    """The user with this email (compared case-insensitively), or None."""
    return db.session.execute(
        select(User).where(func.lower(User.email) == email.strip().lower())
    ).scalar_one_or_none()


def get_user(email: str) -> User:
    user = find_user(email)
    if user is None:
        raise NotFoundError(f"no user with email {email!r}")
    return user


def user_by_id(user_id: int) -> User | None:
    return db.session.get(User, user_id)


def create_user(email: str, account_name: str, role: str) -> User:
    """A new user of the account, without a password until a sign-in link is used."""
    account = get_account(account_name)
    if find_user(email) is not None:
        raise ConflictError(f"a user with email {email!r} already exists")
    user = User(email=email.strip(), account_id=account.id, role=role)
    db.session.add(user)
    db.session.commit()
    return user


def list_users(account_name: str) -> list[User]:
    account = get_account(account_name)
    return list(
        db.session.execute(
            select(User).where(User.account_id == account.id).order_by(User.id)
        ).scalars()
    )


def add_sign_in_token(user: User, digest: str, expires_at: datetime) -> SignInToken:
    """Store a new link's digest; the user's earlier unused links stop working."""
    with _atomic():
        db.session.execute(
            update(SignInToken)
            .where(SignInToken.user_id == user.id, SignInToken.used_at.is_(None))
            .values(used_at=utcnow())
        )
        token = SignInToken(user_id=user.id, digest=digest, expires_at=expires_at)
        db.session.add(token)
    return token


def use_sign_in_token(digest: str, now: datetime) -> User | None:
    """Spend the link with this digest (once, before it expires): its user, or None.

    The conditional UPDATE is the claim, so two concurrent uses of one link cannot both win.
    """
    with _atomic():
        user_id = db.session.execute(
            update(SignInToken)
            .where(
                SignInToken.digest == digest,
                SignInToken.used_at.is_(None),
                SignInToken.expires_at > now,
            )
            .values(used_at=now)
            .returning(SignInToken.user_id)
        ).scalar_one_or_none()
    return user_by_id(user_id) if user_id is not None else None


def peek_sign_in_token(digest: str, now: datetime) -> User | None:
    """The user of a link that is still usable, without spending it (to show the form)."""
    token = db.session.execute(
        select(SignInToken).where(
            SignInToken.digest == digest,
            SignInToken.used_at.is_(None),
            SignInToken.expires_at > now,
        )
    ).scalar_one_or_none()
    return user_by_id(token.user_id) if token is not None else None


def set_password(user: User, password_hash: str) -> User:
    """A new password; the stamp bump ends every session signed in with the old one."""
    user.password_hash = password_hash
    user.session_stamp += 1
    db.session.commit()
    return user


def set_disabled(user: User, disabled: bool) -> User:
    user.disabled = disabled
    user.session_stamp += 1
    db.session.commit()
    return user


def note_sign_in(user: User, when: datetime) -> None:
    user.last_sign_in_at = when
    db.session.commit()
