"""What every part of the store shares: its errors, transactions, and outage detection."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

from sqlalchemy import exc as sa_exc
from sqlalchemy import text

from ..extensions import db

T = TypeVar("T")


class StoreError(ValueError):
    """A request to the store that cannot be carried out (unknown name, duplicate, …)."""


class NotFoundError(StoreError):
    """The named account, key or endpoint does not exist (the admin API answers 404)."""


class ConflictError(StoreError):
    """The change would duplicate something unique (the admin API answers 409)."""


@contextmanager
def _atomic() -> Iterator[None]:
    """Commit the block, or make sure none of it can ever be committed.

    A failed COMMIT can leave the DBAPI connection inside its transaction while SQLAlchemy
    believes it has ended; the pool would then hand the connection out again with the writes
    still pending, for the next user to commit — a balance change applied twice. Invalidating
    the connection closes it, which aborts that transaction in the database.
    """
    connection = db.session.connection()
    try:
        yield
        db.session.commit()
    except BaseException:
        connection.invalidate()
        db.session.rollback()
        raise


def is_outage(exc: BaseException) -> bool:
    """True when ``exc`` says the database could not be reached or used, not that it refused
    the data: the same write may succeed later, so it is kept and retried."""
    if isinstance(exc, sa_exc.DBAPIError) and exc.connection_invalidated:
        return True
    return isinstance(
        exc,
        sa_exc.OperationalError
        | sa_exc.InterfaceError
        | sa_exc.DisconnectionError
        | sa_exc.TimeoutError
        | OSError,
    )


def ping() -> None:
    """A trivial round trip, for /health."""
    db.session.execute(text("SELECT 1"))
    db.session.rollback()


def _page(query: Any, offset: int, limit: int | None) -> list[Any]:
    query = query.offset(offset)
    if limit is not None:
        query = query.limit(limit)
    return list(db.session.execute(query).scalars())


def _detached(row: T | None) -> T | None:
    """``row`` as loaded, out of the session (the read's transaction ended): its fields stay
    readable without another query."""
    if row is not None:
        db.session.expunge(row)
    db.session.rollback()
    return row
