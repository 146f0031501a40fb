"""A batch's lines: claimed by a worker under a lease, renewed while it lives, recorded
with their usage and price, given back unsent, read back in order (see
:mod:`packet.store.batches` for the locking)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

from sqlalchemy import and_, func, or_, select, update

from ..extensions import db
from ..models import Account, BatchJob, BatchLine, UsageRecord, utcnow
from ._db import _atomic
from .batches import Claimed, _locking, _now
from .daily import roll_up
from .keys import add_spend
from .usage import fit_usage


def claim_lines(batch_id: str, owner: str, wanted: int, most: int, lease: float) -> list[Claimed]:
    """Claim up to ``wanted`` lines (new, or whose worker's lease ran out) while fewer than
    ``most`` of the batch's lines run."""
    now = _now()
    with _atomic():
        status = db.session.execute(
            select(BatchJob.status).where(BatchJob.id == batch_id).with_for_update()
        ).scalar_one_or_none()
        if status != "in_progress":
            return []
        running = db.session.execute(
            select(func.count()).where(
                BatchLine.batch_id == batch_id,
                BatchLine.state == "running",
                BatchLine.lease_until >= now,
            )
        ).scalar_one()
        take = min(wanted, most - running)
        if take <= 0:
            return []
        free = or_(
            BatchLine.state == "pending",
            and_(BatchLine.state == "running", BatchLine.lease_until < now),
        )
        rows = db.session.execute(
            _locking(
                select(BatchLine.line, BatchLine.custom_id, BatchLine.body, BatchLine.attempts)
                .where(BatchLine.batch_id == batch_id, free)
                .order_by(BatchLine.line)
                .limit(take)
            )
        ).all()
        if rows:
            db.session.execute(
                update(BatchLine)
                .where(BatchLine.batch_id == batch_id, BatchLine.line.in_([r[0] for r in rows]))
                .values(
                    state="running",
                    owner=owner,
                    lease_until=now + timedelta(seconds=lease),
                    attempts=BatchLine.attempts + 1,
                )
            )
    return [Claimed(r[0], r[1], r[2], r[3] + 1) for r in rows]


def renew(owner: str, lease: float) -> None:
    """Extend the leases of everything ``owner`` holds (its heartbeat)."""
    until = _now() + timedelta(seconds=lease)
    with _atomic():
        db.session.execute(
            update(BatchLine)
            .where(BatchLine.owner == owner, BatchLine.state == "running")
            .values(lease_until=until)
        )
        db.session.execute(
            update(BatchJob).where(BatchJob.owner == owner).values(lease_until=until)
        )


def record_line(
    batch_id: str, line: int, owner: str, state: str, result: str, usage: dict[str, Any] | None
) -> bool:
    """The line's result, its usage row and its price, at once — only while ``owner`` still
    holds the line. False: not written (another worker took it over, or it was recorded)."""
    with _atomic():
        done = db.session.execute(
            update(BatchLine)
            .where(
                BatchLine.batch_id == batch_id,
                BatchLine.line == line,
                BatchLine.owner == owner,
                BatchLine.state == "running",
            )
            .values(state=state, result=result, lease_until=None)
        )
        if not getattr(done, "rowcount", 0):
            return False
        if usage is not None:
            now = utcnow()
            row = fit_usage(usage) | {"created_at": usage.get("created_at") or now}
            db.session.execute(UsageRecord.__table__.insert(), [row])
            roll_up([row])  # the dashboard's daily totals and the key's spend, as for any row
            add_spend([row], now.timestamp())
            if usage["cost_micros"]:
                db.session.execute(
                    update(Account)
                    .where(Account.id == usage["account_id"])
                    .values(balance_micros=Account.balance_micros - usage["cost_micros"])
                )
    return True


def drop_claim(batch_id: str, line: int, owner: str) -> None:
    """Give back a claimed line that was not sent: pending again, or cancelled or expired
    when its batch was meanwhile."""
    with _atomic():
        batch = db.session.execute(
            select(BatchJob.status, BatchJob.expired_at).where(BatchJob.id == batch_id)
        ).one()
        state = "pending"
        if batch.status == "cancelling":
            state = "cancelled"
        elif batch.expired_at is not None:
            state = "expired"
        db.session.execute(
            update(BatchLine)
            .where(
                BatchLine.batch_id == batch_id,
                BatchLine.line == line,
                BatchLine.owner == owner,
                BatchLine.state == "running",
            )
            .values(state=state, owner=None, lease_until=None, attempts=BatchLine.attempts - 1)
        )


def results(batch_id: str, page: int = 1000) -> Iterator[tuple[int, str, str, str | None]]:
    """(line, custom_id, state, result) of every line in order, a page per query."""
    last = 0
    while True:
        rows = db.session.execute(
            select(BatchLine.line, BatchLine.custom_id, BatchLine.state, BatchLine.result)
            .where(BatchLine.batch_id == batch_id, BatchLine.line > last)
            .order_by(BatchLine.line)
            .limit(page)
        ).all()
        db.session.rollback()
        yield from ((r[0], r[1], r[2], r[3]) for r in rows)
        if len(rows) < page:
            return
        last = rows[-1][0]
