"""An account's inference endpoints."""

from __future__ import annotations

from typing import NamedTuple

from sqlalchemy import select

from ..extensions import db
from ..models import Endpoint
from ._db import NotFoundError, _page
from .accounts import get_account


class EndpointRow(NamedTuple):
    id: int | None
    base_url: str
    upstream_key: str | None


def account_endpoints(account_id: int) -> tuple[EndpointRow, ...]:
    """The account's own inference endpoints, oldest first."""
    rows = db.session.execute(
        select(Endpoint.id, Endpoint.base_url, Endpoint.upstream_key)
        .where(Endpoint.account_id == account_id)
        .order_by(Endpoint.id)
    ).all()
    db.session.rollback()
    return tuple(EndpointRow(*row) for row in rows)


def add_endpoint(account_name: str, base_url: str, upstream_key: str | None = None) -> Endpoint:
    account = get_account(account_name)
    endpoint = Endpoint(account_id=account.id, base_url=base_url, upstream_key=upstream_key)
    db.session.add(endpoint)
    db.session.commit()
    return endpoint


def list_endpoints(account_name: str, offset: int = 0, limit: int | None = None) -> list[Endpoint]:
    """The account's endpoints, oldest first."""
    account = get_account(account_name)
    return _page(
        select(Endpoint).where(Endpoint.account_id == account.id).order_by(Endpoint.id),
        offset,
        limit,
    )


def remove_endpoint(account_name: str, endpoint_id: int) -> None:
    account = get_account(account_name)
    endpoint = db.session.get(Endpoint, endpoint_id)
    if endpoint is None or endpoint.account_id != account.id:
        raise NotFoundError(f"account {account_name!r} has no endpoint {endpoint_id}")
    db.session.delete(endpoint)
    db.session.commit()
