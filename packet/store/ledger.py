"""The balance ledger: one row per operator credit or debit, written with the change itself."""

from __future__ import annotations

from sqlalchemy import insert, select

from ..extensions import db
from ..models import BalanceEvent
from ._db import _page


def add_balance_event(account_id: int, amount_micros: int, reason: str, actor: str) -> None:
    """Queue the ledger row in the caller's transaction (it commits with the balance change)."""
    db.session.execute(
        insert(BalanceEvent).values(
            account_id=account_id,
            amount_micros=amount_micros,
            reason=reason[:200],
            actor=actor[:300],
        )
    )


def balance_events(account_id: int, offset: int = 0, limit: int | None = 100) -> list[BalanceEvent]:
    """The account's ledger, newest first."""
    query = (
        select(BalanceEvent)
        .where(BalanceEvent.account_id == account_id)
        .order_by(BalanceEvent.id.desc())
    )
    return _page(query, offset, limit)
