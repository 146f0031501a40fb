"""Worker journals (see :mod:`packet.journal`): the leases each worker holds and a checkpoint
of its long calls, written in the same transactions as the balances they describe."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, cast

import orjson
from sqlalchemy import CursorResult, Update, delete, select, update
from sqlalchemy.dialects import postgresql, sqlite

from ..extensions import db
from ..journal import WorkerRow
from ..models import Account, MeterWorker, UsageRecord, WorkerLease
from ._db import _atomic
from .daily import roll_up
from .keys import add_spend
from .usage import fit_usage


class Recovered(Exception):
    """This worker's journal was recovered by another worker (it looked dead): nothing it
    writes on the strength of that journal may be committed."""


def _upsert(model: Any, values: dict[str, Any], keys: list[str], set_: dict[str, Any]) -> Any:
    """INSERT … ON CONFLICT DO UPDATE, in the dialect of the database in use."""
    dialect = postgresql if db.session.get_bind().dialect.name == "postgresql" else sqlite
    statement = dialect.insert(model).values(**values)
    return statement.on_conflict_do_update(index_elements=keys, set_=set_)


def _updated(statement: Update) -> int:
    """Run an UPDATE; the number of rows it matched. (``Session.execute`` is typed as returning
    a ``Result``; for DML it is a ``CursorResult``, which carries the row count.)"""
    return cast(CursorResult[Any], db.session.execute(statement)).rowcount


def _register(worker: WorkerRow, registered: bool, calls: bytes | None = None) -> None:
    """Touch this worker's journal row; create it unless it existed and has since gone."""
    now = datetime.now(UTC)
    values: dict[str, Any] = {"written_at": now}
    if calls is not None:
        values["calls"] = calls.decode()
    if registered:
        if _updated(update(MeterWorker).where(MeterWorker.id == worker.id).values(**values)) == 0:
            raise Recovered(worker.id)
        return
    row = {
        "id": worker.id,
        "host": worker.host,
        "master_pid": worker.master_pid,
        "pid": worker.pid,
        "calls": "[]",
    } | values
    db.session.execute(_upsert(MeterWorker, row, ["id"], values))


def lease_balance(
    account_id: int,
    amount_micros: int,
    floor_micros: int,
    worker: WorkerRow,
    *,
    registered: bool,
) -> bool:
    """Atomically move ``amount`` from a balance that is ≥ ``floor`` to this worker's lease,
    recorded in its journal in the same transaction."""
    with _atomic():
        _register(worker, registered)
        leased = _updated(
            update(Account)
            .where(Account.id == account_id, Account.balance_micros >= floor_micros)
            .values(balance_micros=Account.balance_micros - amount_micros)
        )
        if leased != 1:
            return False
        db.session.execute(
            _upsert(
                WorkerLease,
                {"worker_id": worker.id, "account_id": account_id, "amount_micros": amount_micros},
                ["worker_id", "account_id"],
                {"amount_micros": WorkerLease.amount_micros + amount_micros},
            )
        )
    return True


def write_journal(
    worker: WorkerRow, registered: bool, calls: bytes | None, lease_deltas: dict[int, int]
) -> None:
    """Inside a usage batch's transaction: the checkpoint, and the leases it settled."""
    _register(worker, registered, calls)
    for account_id, delta in sorted(lease_deltas.items()):
        if delta:
            db.session.execute(
                update(WorkerLease)
                .where(WorkerLease.worker_id == worker.id, WorkerLease.account_id == account_id)
                .values(amount_micros=WorkerLease.amount_micros + delta)
            )
    db.session.execute(
        delete(WorkerLease).where(
            WorkerLease.worker_id == worker.id, WorkerLease.amount_micros == 0
        )
    )


def journal_workers() -> list[WorkerRow]:
    """Every worker with a journal, for the sweep that looks for dead ones."""
    rows = db.session.execute(select(MeterWorker)).scalars().all()
    found = [WorkerRow(r.id, r.host, r.master_pid, r.pid, _timestamp(r.written_at)) for r in rows]
    db.session.rollback()
    return found


def _timestamp(value: datetime) -> float:
    return (value if value.tzinfo else value.replace(tzinfo=UTC)).timestamp()


def recover_worker(worker_id: str, cost: Callable[[str, int, int], int]) -> int | None:
    """Settle a dead worker's journal in one transaction: bill its checkpointed calls as
    ``recovered`` usage rows and give back the rest of its leases. Deleting the journal row is
    the claim, so two sweepers never both recover it. Returns the calls billed, or None."""
    with _atomic():
        claimed = db.session.execute(
            delete(MeterWorker).where(MeterWorker.id == worker_id).returning(MeterWorker.calls)
        ).first()
        if claimed is None:
            return None
        leases = dict(
            db.session.execute(
                delete(WorkerLease)
                .where(WorkerLease.worker_id == worker_id)
                .returning(WorkerLease.account_id, WorkerLease.amount_micros)
            ).all()
        )
        rows = [_recovered_row(entry, cost) for entry in orjson.loads(claimed[0])]
        if rows:
            db.session.execute(UsageRecord.__table__.insert(), rows)
            roll_up(rows)
            add_spend(rows, time.time())
        refunds = dict(leases)
        for row in rows:
            refunds[row["account_id"]] = refunds.get(row["account_id"], 0) - row["cost_micros"]
        for account_id, delta in sorted(refunds.items()):
            if delta:
                db.session.execute(
                    update(Account)
                    .where(Account.id == account_id)
                    .values(balance_micros=Account.balance_micros + delta)
                )
    return len(rows)


def _recovered_row(entry: dict[str, Any], cost: Callable[[str, int, int], int]) -> dict[str, Any]:
    prompt, completion = int(entry["prompt_tokens"]), int(entry["completion_tokens"])
    return fit_usage(
        {
            "request_id": entry["request_id"],
            "account_id": entry["account_id"],
            "key_id": entry["key_id"],
            "endpoint_url": entry["endpoint_url"],
            "model": entry["model"],
            "route": entry["route"],
            "stream": entry["stream"],
            "status": 502,
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
            "cost_micros": cost(entry["model"], prompt, completion),
            "ttft_ms": None,
            "latency_ms": int(entry["latency_ms"]),
            "client_disconnected": True,
            "usage_source": "recovered",
        }
    )


def drop_worker(worker_id: str) -> None:
    """A clean shutdown: nothing is leased or open any more, so the journal can go."""
    with _atomic():
        db.session.execute(delete(WorkerLease).where(WorkerLease.worker_id == worker_id))
        db.session.execute(delete(MeterWorker).where(MeterWorker.id == worker_id))
