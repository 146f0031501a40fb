"""One flush of a worker's meter: usage rows, the balance changes they carry and the worker's
journal, written in one transaction so that they are all applied or none is."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import update

from ..extensions import db
from ..journal import WorkerRow
from ..models import Account, ApiKey, UsageRecord, utcnow
from ._db import _atomic
from .daily import roll_up
from .journal import write_journal
from .keys import add_spend
from .usage import Settlement, fit_usage


@dataclass
class Batch:
    """What one flush writes; ``worker`` is None when the journal has nothing to record."""

    records: list[dict[str, Any]] = field(default_factory=list)
    settlements: list[Settlement] = field(default_factory=list)
    touched: dict[int, float] = field(default_factory=dict)
    lease_deltas: dict[int, int] = field(default_factory=dict)
    worker: WorkerRow | None = None
    registered: bool = False
    calls: bytes | None = None


def write_usage(batch: Batch) -> None:
    """Insert usage rows, settle balances and update the journal (all or nothing).

    The journal goes first: a worker whose journal was recovered elsewhere gets
    :class:`~packet.store.journal.Recovered` before anything else is written.
    """
    net: dict[int, int] = {}
    for s in batch.settlements:
        net[s.account_id] = net.get(s.account_id, 0) + s.reserved_micros - s.cost_micros
    with _atomic():
        if batch.worker is not None:
            write_journal(batch.worker, batch.registered, batch.calls, batch.lease_deltas)
        if batch.records:
            now = utcnow()  # one time for the rows and their day in the roll-up
            rows = [
                fit_usage(r) | {"created_at": r.get("created_at") or now} for r in batch.records
            ]
            db.session.execute(UsageRecord.__table__.insert(), rows)
            roll_up(rows)
            add_spend(rows, now.timestamp())
        for account_id, delta in sorted(net.items()):
            if delta:
                db.session.execute(
                    update(Account)
                    .where(Account.id == account_id)
                    .values(balance_micros=Account.balance_micros + delta)
                )
        for key_id, used_at in sorted(batch.touched.items()):
            db.session.execute(
                update(ApiKey)
                .where(ApiKey.id == key_id)
                .values(last_used_at=datetime.fromtimestamp(used_at, UTC))
            )
