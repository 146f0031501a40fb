"""Stored responses' owners: the account and the endpoint that made each (see
packet/gateway/owners.py)."""

from __future__ import annotations

from sqlalchemy import select

from ..extensions import db
from ..models import StoredResponse


def remember_response(response_id: str, account_id: int, endpoint_url: str, model: str) -> None:
    """Note who made a response and where; a response id seen again keeps its first owner."""
    if db.session.get(StoredResponse, response_id) is None:
        db.session.add(
            StoredResponse(
                id=response_id, account_id=account_id, endpoint_url=endpoint_url, model=model
            )
        )
    db.session.commit()


def response_owner(response_id: str) -> tuple[int, str, str] | None:
    """(account id, endpoint URL, model) of a stored response, or None."""
    row = db.session.execute(
        select(StoredResponse.account_id, StoredResponse.endpoint_url, StoredResponse.model).where(
            StoredResponse.id == response_id
        )
    ).first()
    db.session.rollback()
    return None if row is None else (row[0], row[1], row[2])
