"""Batches and their lines: the work queue the batch workers share.

Lines are claimed with ``SELECT … FOR UPDATE SKIP LOCKED`` on PostgreSQL, in the transaction
that writes the claim (owner, lease expiry); the batch's row is locked first, so claimers of
one batch take turns and its running count stays under its limit. SQLite has no row locks:
there, run one worker. A line's result, its usage row and its price leave the balance in one
transaction, and only while the line is still claimed by the worker that writes it, so a
recorded line is never sent or billed again.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple

from sqlalchemy import and_, exists, func, or_, select, update

from ..extensions import db
from ..models import Account, BatchJob, BatchLine, UsageRecord
from ._db import _atomic, _detached
from .files import insert_file

UNFINISHED = ("pending", "running")
INSERT_ROWS = 1000


class Claimed(NamedTuple):
    line: int
    custom_id: str
    body: str
    attempts: int


def _now() -> datetime:
    return datetime.now(UTC)


def _locking(query: Any) -> Any:
    """``FOR UPDATE SKIP LOCKED`` where the database has it (SQLite ignores it)."""
    return query.with_for_update(skip_locked=True)


def create_batch(row: dict[str, Any]) -> BatchJob:
    with _atomic():
        db.session.execute(BatchJob.__table__.insert(), [row])
    found = get_batch(None, row["id"])
    assert found is not None
    return found


def get_batch(account_id: int | None, batch_id: str) -> BatchJob | None:
    """The batch (None when absent, or another account's when ``account_id`` is given)."""
    query = select(BatchJob).where(BatchJob.id == batch_id)
    if account_id is not None:
        query = query.where(BatchJob.account_id == account_id)
    found = db.session.execute(query).scalar_one_or_none()
    return _detached(found)


def list_batches(account_id: int, after: str | None, limit: int) -> list[BatchJob]:
    """Newest first; ``after``: the last id of the page before."""
    query = select(BatchJob).where(BatchJob.account_id == account_id)
    cursor = get_batch(account_id, after) if after else None
    if cursor is not None:
        query = query.where(
            or_(
                BatchJob.created_at < cursor.created_at,
                and_(BatchJob.created_at == cursor.created_at, BatchJob.id < cursor.id),
            )
        )
    query = query.order_by(BatchJob.created_at.desc(), BatchJob.id.desc()).limit(limit)
    rows = list(db.session.execute(query).scalars())
    for row in rows:
        db.session.expunge(row)
    db.session.rollback()
    return rows


def line_states(batch_id: str) -> dict[str, int]:
    """How many lines are in each state."""
    rows = db.session.execute(
        select(BatchLine.state, func.count())
        .where(BatchLine.batch_id == batch_id)
        .group_by(BatchLine.state)
    ).all()
    db.session.rollback()
    return {state: count for state, count in rows}


def cancel_batch(account_id: int | None, batch_id: str) -> BatchJob | None:
    """Stop the batch's new lines at once (in-flight ones finish); None when not found. A
    batch already finalizing or ended is left as it is."""
    now = _now()
    with _atomic():
        query = select(BatchJob).where(BatchJob.id == batch_id)
        if account_id is not None:
            query = query.where(BatchJob.account_id == account_id)
        batch = db.session.execute(query.with_for_update()).scalar_one_or_none()
        if batch is not None and batch.status in ("validating", "in_progress"):
            batch.status, batch.cancelling_at = "cancelling", now
            db.session.execute(
                update(BatchLine)
                .where(BatchLine.batch_id == batch_id, BatchLine.state == "pending")
                .values(state="cancelled")
            )
    return get_batch(account_id, batch_id)


def _claim_batch(condition: Any, owner: str, lease: float, **values: Any) -> str | None:
    """Lease one batch matching ``condition`` whose lease is free; its id, or None."""
    now = _now()
    with _atomic():
        found = db.session.execute(
            _locking(
                select(BatchJob.id)
                .where(condition, or_(BatchJob.lease_until.is_(None), BatchJob.lease_until < now))
                .order_by(BatchJob.created_at)
                .limit(1)
            )
        ).scalar_one_or_none()
        if found is not None:
            db.session.execute(
                update(BatchJob)
                .where(BatchJob.id == found)
                .values(owner=owner, lease_until=now + timedelta(seconds=lease), **values)
            )
    return found


def claim_validation(owner: str, lease: float) -> str | None:
    """A batch waiting to be validated, leased to ``owner``."""
    return _claim_batch(BatchJob.status == "validating", owner, lease)


def start_batch(batch_id: str, owner: str, lines: Iterable[tuple[int, str, str]]) -> bool:
    """Write a validated batch's lines and set it in progress (one transaction); False when
    the lease was lost. A batch cancelled meanwhile gets its lines as cancelled."""
    with _atomic():
        batch = db.session.execute(
            select(BatchJob).where(BatchJob.id == batch_id).with_for_update()
        ).scalar_one()
        if batch.owner != owner or batch.status not in ("validating", "cancelling"):
            return False
        state = "pending" if batch.status == "validating" else "cancelled"
        total, rows = 0, []
        for number, custom_id, body in lines:
            rows.append(
                {"batch_id": batch_id, "line": number, "custom_id": custom_id, "body": body}
                | {"state": state, "attempts": 0}
            )
            total += 1
            if len(rows) >= INSERT_ROWS:
                db.session.execute(BatchLine.__table__.insert(), rows)
                rows = []
        if rows:
            db.session.execute(BatchLine.__table__.insert(), rows)
        batch.total, batch.owner, batch.lease_until = total, None, None
        if state == "pending":
            batch.status, batch.in_progress_at = "in_progress", _now()
    return True


def fail_batch(batch_id: str, owner: str, errors_json: str) -> None:
    """The input file was refused: the batch ends ``failed`` with its errors."""
    with _atomic():
        db.session.execute(
            update(BatchJob)
            .where(BatchJob.id == batch_id, BatchJob.owner == owner)
            .values(
                status="failed",
                failed_at=_now(),
                errors_json=errors_json,
                owner=None,
                lease_until=None,
            )
        )


def active_batches() -> list[tuple[str, int, int | None, str]]:
    """(id, account, key, endpoint) of every batch with lines to send, oldest first."""
    rows = db.session.execute(
        select(BatchJob.id, BatchJob.account_id, BatchJob.key_id, BatchJob.endpoint)
        .where(BatchJob.status == "in_progress", BatchJob.expired_at.is_(None))
        .order_by(BatchJob.created_at)
    ).all()
    db.session.rollback()
    return [(r[0], r[1], r[2], r[3]) for r in rows]


def expire_due() -> int:
    """Batches past their window: lines not done become ``expired``; a batch still being
    validated ends ``expired`` at once. Returns how many batches expired."""
    now = _now()
    with _atomic():
        due = list(
            db.session.execute(
                select(BatchJob.id, BatchJob.status).where(
                    BatchJob.status.in_(("validating", "in_progress")),
                    BatchJob.expired_at.is_(None),
                    BatchJob.expires_at < now,
                )
            ).all()
        )
        for batch_id, status in due:
            values: dict[str, Any] = {"expired_at": now}
            if status == "validating":
                values |= {"status": "expired", "owner": None, "lease_until": None}
            db.session.execute(update(BatchJob).where(BatchJob.id == batch_id).values(**values))
            db.session.execute(
                update(BatchLine)
                .where(
                    BatchLine.batch_id == batch_id,
                    or_(
                        BatchLine.state == "pending",
                        and_(BatchLine.state == "running", BatchLine.lease_until < now),
                    ),
                )
                .values(state="expired")
            )
    return len(due)


def claim_finishing(owner: str, lease: float) -> str | None:
    """A batch whose every line has ended (or an expired one whose running lines ended),
    leased to ``owner`` for assembling its files."""
    unfinished = exists().where(BatchLine.batch_id == BatchJob.id, BatchLine.state.in_(UNFINISHED))
    return _claim_batch(
        and_(BatchJob.status.in_(("in_progress", "finalizing", "cancelling")), ~unfinished),
        owner,
        lease,
    )


def begin_finalizing(batch_id: str) -> None:
    """A batch running to its end says so (a cancelled or expired one keeps its status)."""
    with _atomic():
        db.session.execute(
            update(BatchJob)
            .where(
                BatchJob.id == batch_id,
                BatchJob.status == "in_progress",
                BatchJob.expired_at.is_(None),
            )
            .values(status="finalizing", finalizing_at=_now())
        )


def finish_batch(
    batch_id: str,
    owner: str,
    files: list[tuple[dict[str, Any], Iterable[bytes] | None]],
    values: dict[str, Any],
) -> bool:
    """Store the batch's output and error files and its final status (one transaction);
    False when another worker holds the batch now."""
    with _atomic():
        batch = db.session.execute(
            select(BatchJob).where(BatchJob.id == batch_id).with_for_update()
        ).scalar_one()
        if batch.owner != owner:
            return False
        for row, chunks in files:
            insert_file(row, chunks)
        db.session.execute(
            update(BatchJob)
            .where(BatchJob.id == batch_id)
            .values(owner=None, lease_until=None, **values)
        )
    return True


def batch_usage(batch_id: str) -> tuple[int, int, int, int]:
    """(rows, prompt tokens, completion tokens, cost) of the batch's usage rows."""
    row = db.session.execute(
        select(
            func.count(),
            func.coalesce(func.sum(UsageRecord.prompt_tokens), 0),
            func.coalesce(func.sum(UsageRecord.completion_tokens), 0),
            func.coalesce(func.sum(UsageRecord.cost_micros), 0),
        ).where(UsageRecord.batch_id == batch_id)
    ).one()
    db.session.rollback()
    return int(row[0]), int(row[1]), int(row[2]), int(row[3])


def account_row(account_id: int) -> tuple[str, str, int, str | None] | None:
    """(name, tier, balance, default model) of the account a batch runs for."""
    row = db.session.execute(
        select(Account.name, Account.tier, Account.balance_micros, Account.default_model).where(
            Account.id == account_id
        )
    ).one_or_none()
    db.session.rollback()
    return None if row is None else (row[0], row[1], row[2], row[3])
