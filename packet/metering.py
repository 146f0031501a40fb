"""What requests cost: the money held at admission, the usage rows, the settlements.

Requests change balances only through here (an operator's credit, ``store.credit_account``,
is the other writer). Admission reserves the request's maximum cost so concurrent requests cannot drive a balance far
below zero. To keep SQL off the hot path, a worker leases a block of an account's balance (the
maximum cost of ``PACKET_BALANCE_LEASE`` requests) with one atomic ``UPDATE … WHERE balance >=
4 × block`` and serves reservations from it in memory; the unused part goes back to the
database with the next usage flush. A busy account's block doubles each time the worker runs
out of it between two flushes (up to 16×) and halves at each flush, so a worker takes a lease
a few times per flush interval whatever its request rate. Near an empty balance no block is granted and each request
reserves exactly, with ``UPDATE … WHERE balance > 0`` — so a balance never ends below −(one
request's maximum cost), whatever the concurrency.

When a request ends, its usage row (and, for an exact reservation, its settlement) is queued,
and a background greenlet writes everything in one transaction per batch, with this worker's
journal (:mod:`packet.journal`: its leases and a checkpoint of its long calls, so that a worker
killed outright loses a bounded amount). The queue and the leases are flushed on shutdown.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import gevent
import gevent.event
import orjson
from flask import Flask

from . import store
from .auth import Principal
from .config import Settings
from .errors import InsufficientQuota, ServiceUnavailable
from .journal import Journal, OpenCall
from .money import cost_micros

log = logging.getLogger("packet.metering")


@dataclass(frozen=True)
class Hold:
    """Money held for one request, out of this worker's lease (see the module docstring)."""

    amount: int


@dataclass
class Finished:
    """A finished request waiting for the next flush: its row, its call, its settlement."""

    row: dict[str, Any]
    call: OpenCall | None
    settlement: store.Settlement | None
    paid: bool = False  # its money is already written (a row kept after a partial write)


NO_HOLD = Hold(0)
USAGE_BACKLOG = "The gateway cannot record usage right now; try again shortly."
_LEASE_FLOOR = 4
_LEASE_GROWTH = 16
_SWEEP_SECONDS = 10.0
_CLOSING_WAIT = 2.0


class Meter:
    """Reservations at admission; buffered, batched usage rows and settlements afterwards."""

    def __init__(
        self,
        app: Flask,
        settings: Settings,
        *,
        touched_keys: Callable[[], dict[int, float]],
        on_quarantine: Callable[[], None] = lambda: None,
    ) -> None:
        self.app = app
        self.settings = settings
        self.touched_keys = touched_keys
        self.on_quarantine = on_quarantine
        self.journal = Journal(settings.journal_stale_seconds)
        self._queue: list[Finished] = []
        self._touched: dict[int, float] = {}
        self._leases: dict[int, int] = {}  # account → leased money not held by any request
        self._consumed: dict[int, int] = {}  # account → cost of finished leased requests
        self._scale: dict[int, int] = {}
        self._last_checkpoint = b"[]"
        self._next_sweep = 0.0
        self._lock = threading.Lock()
        self._loop: gevent.Greenlet[[gevent.event.Event], None] | None = None
        self.synchronous = settings.usage_flush_interval <= 0

    def reserve(
        self, principal: Principal, model: str, prompt_estimate: int, max_tokens: int
    ) -> Hold:
        """Hold the request's maximum cost; raise 403 when the balance is spent.

        While the database is unreachable, usage rows wait in memory; past
        ``PACKET_USAGE_BUFFER_MAX`` of them new requests get 503 rather than go unrecorded.
        """
        if principal.balance_micros <= 0:
            raise InsufficientQuota()
        if len(self._queue) >= self.settings.usage_buffer_max:
            raise ServiceUnavailable(USAGE_BACKLOG, headers={"Retry-After": "5"})
        amount = cost_micros(self.settings, model, prompt_estimate, max_tokens)
        if not amount:
            return NO_HOLD
        account = principal.account_id
        if self._take(account, amount) or self._lease(account, amount):
            return Hold(amount)
        # Near an empty balance: a lease of exactly this request's hold, while the balance is
        # positive — so a balance never ends below −(one request's maximum cost).
        if not self._lease_from_store(account, amount, 1):
            raise InsufficientQuota()
        return Hold(amount)

    def _lease(self, account: int, amount: int) -> bool:
        """Lease a block and take ``amount`` from it; a grown block falls back to the base one."""
        base = amount * self.settings.balance_lease
        if base <= amount:
            return False
        scale = self._scale.get(account, 1)
        for size in dict.fromkeys((scale, 1)):
            block = base * size
            if self._lease_from_store(account, block, _LEASE_FLOOR * block):
                with self._lock:
                    self._leases[account] = self._leases.get(account, 0) + block
                    self._scale[account] = min(size * 2, _LEASE_GROWTH)
                return self._take(account, amount)
        self._scale.pop(account, None)
        return False

    def _lease_from_store(self, account: int, amount: int, floor: int) -> bool:
        """Move ``amount`` from the balance (if ≥ ``floor``) to this worker's journaled lease."""
        try:
            leased = store.lease_balance(
                account, amount, floor, self.journal.identity(), registered=self.journal.registered
            )
        except store.Recovered:
            self._recovered_elsewhere()
            return self._lease_from_store(account, amount, floor)
        if leased:
            self.journal.registered = True
        return leased

    def _take(self, account: int, amount: int) -> bool:
        with self._lock:
            available = self._leases.get(account, 0)
            if available < amount:
                return False
            self._leases[account] = available - amount
            return True

    def begin(self, row: dict[str, Any], hold: Hold) -> OpenCall:
        """Note an admitted request in the journal (checkpointed once it runs for a while)."""
        return self.journal.begin(row, hold.amount)

    def record(self, usage: dict[str, Any], hold: Hold, call: OpenCall | None = None) -> None:
        """Queue one finished request's usage row; settle what was held for it."""
        account, cost = usage["account_id"], usage["cost_micros"]
        settlement = None
        with self._lock:
            if call is not None:
                self.journal.end(call)
                if call.recovered:  # another worker billed it from its checkpoint
                    log.warning("request %s was recovered elsewhere: not billed again", call.seq)
                    return
            if hold.amount and not (call is not None and call.refunded):
                self._leases[account] = self._leases.get(account, 0) + hold.amount - cost
                self._consumed[account] = self._consumed.get(account, 0) + cost
            else:
                settlement = store.Settlement(account, 0, cost)
            self._queue.append(Finished(usage, call, settlement))
            full = len(self._queue) >= self.settings.usage_batch_size
        if self.synchronous or full:
            self.flush()

    def flush(self) -> int:
        """Write everything queued in one transaction. Returns the rows written.

        On failure (database down) the transaction is rolled back as a whole and the batch
        goes back to the head of the queue: the next flush retries it, so nothing is lost and,
        since nothing of a failed batch was committed, nothing is applied twice. A batch the
        database refuses for its content is written again row by row (see
        :meth:`_write_one_by_one`), so one bad row is never retried forever.
        """
        self._sweep()
        with self._lock:
            calls, checkpointed = self.journal.checkpoint()
            queue, self._queue = self._queue, []
            leases, self._leases = self._leases, {}
            consumed, self._consumed = self._consumed, {}
            self._scale = {a: s // 2 for a, s in self._scale.items() if s > 2}
            touched, self._touched = self._touched | self.touched_keys(), {}
        journal = calls != self._last_checkpoint or self.journal.due()
        if not queue and not leases and not consumed and not touched and not journal:
            return 0
        batch = store.Batch(
            records=[f.row for f in queue],
            settlements=[f.settlement for f in queue if f.settlement is not None]
            + [store.Settlement(account, left, 0) for account, left in leases.items() if left],
            touched=touched,
            lease_deltas={
                a: -(leases.get(a, 0) + consumed.get(a, 0)) for a in leases.keys() | consumed
            },
            worker=self.journal.identity() if journal or leases or consumed else None,
            registered=self.journal.registered,
            calls=calls if journal else None,
        )
        try:
            with self.app.app_context():
                store.write_usage(batch)
        except store.Recovered:
            self._keep(queue, leases, consumed, touched)
            self._recovered_elsewhere()
            return self.flush()
        except Exception as exc:  # noqa: BLE001 - any failure: keep the batch, or isolate a row
            if not store.is_outage(exc):
                return self._write_one_by_one(batch, checkpointed, queue, leases, consumed)
            log.warning(
                "usage flush failed (%s); %d rows kept for the next try",
                type(exc).__name__,
                len(queue),
            )
            self._keep(queue, leases, consumed, touched)
            return 0
        self._written(batch, checkpointed)
        return len(queue)

    def _written(self, batch: store.Batch, checkpointed: list[OpenCall]) -> None:
        if batch.calls is not None:
            self._last_checkpoint = batch.calls
            self.journal.written(checkpointed)

    def _keep(
        self,
        queue: list[Finished],
        leases: dict[int, int],
        consumed: dict[int, int],
        touched: dict[int, float],
    ) -> None:
        """Put a batch back, for the next flush to retry: the lease stays leased meanwhile."""
        with self._lock:
            self._queue[:0] = queue
            for account, left in leases.items():
                self._leases[account] = self._leases.get(account, 0) + left
            for account, cost in consumed.items():
                self._consumed[account] = self._consumed.get(account, 0) + cost
            self._touched = touched | self._touched

    def _recovered_elsewhere(self) -> None:
        """Another worker recovered this worker's journal (it looked dead): the leases went
        back to the balances and checkpointed calls were billed, so drop both here. A queued
        request billed from a lease now pays its cost straight from the balance."""
        log.error("this worker's journal was recovered by another worker; dropping what it settled")
        with self._lock:
            self.journal.recovered_elsewhere()
            self._leases, self._consumed = {}, {}
            kept = []
            for finished in self._queue:
                call = finished.call
                if call is not None and (call.recovered or call.checkpointed):
                    continue  # billed by the recovery
                if finished.settlement is None and not finished.paid:  # from the refunded lease
                    row = finished.row
                    finished.settlement = store.Settlement(row["account_id"], 0, row["cost_micros"])
                kept.append(finished)
            self._queue = kept
            self._last_checkpoint = b"[]"

    def _write_one_by_one(
        self,
        batch: store.Batch,
        checkpointed: list[OpenCall],
        queue: list[Finished],
        leases: dict[int, int],
        consumed: dict[int, int],
    ) -> int:
        """The database refused the batch: settle the money first, then write rows one at a
        time, so one row it cannot take is quarantined (logged whole, counted, dropped) and
        never holds back the others."""
        rows, batch.records = batch.records, []
        with self.app.app_context():
            try:
                store.write_usage(batch)
            except Exception:  # noqa: BLE001 - an outage meanwhile: retry it all later
                self._keep(queue, leases, consumed, batch.touched)
                return 0
            self._written(batch, checkpointed)
            written = 0
            for index, row in enumerate(rows):
                try:
                    store.write_usage(store.Batch(records=[row]))
                except Exception as exc:  # noqa: BLE001
                    if store.is_outage(exc):
                        rest = [replace(f, settlement=None, paid=True) for f in queue[index:]]
                        self._keep(rest, {}, {}, {})
                        break
                    self._quarantine(row, exc)
                else:
                    written += 1
        return written

    def _quarantine(self, row: dict[str, Any], exc: BaseException) -> None:
        self.on_quarantine()
        log.error(
            "usage row quarantined, the database refused it (%s: %s): %s",
            type(exc).__name__,
            str(exc).splitlines()[0][:200] if str(exc) else "",
            orjson.dumps(row, default=str).decode(),
        )

    def _sweep(self) -> None:
        """Now and then, recover the journals of workers that died (see packet.journal)."""
        now = time.monotonic()
        if now < self._next_sweep:
            return
        self._next_sweep = now + _SWEEP_SECONDS
        try:
            with self.app.app_context():
                for worker_id in self.journal.dead(store.journal_workers(), time.time()):
                    recovered = store.recover_worker(worker_id, self._cost)
                    if recovered is not None:
                        log.warning(
                            "recovered the journal of dead worker %s: %d calls billed",
                            worker_id,
                            recovered,
                        )
        except Exception as exc:  # noqa: BLE001 - tried again at the next sweep
            log.warning("journal sweep failed (%s)", type(exc).__name__)

    def _cost(self, model: str, prompt: int, completion: int) -> int:
        return cost_micros(self.settings, model, prompt, completion)

    def pending(self) -> int:
        """Rows not yet written, and accounts whose leased balance is not yet settled."""
        with self._lock:
            unsettled = {a for a, left in self._leases.items() if left}
            unsettled |= {a for a, cost in self._consumed.items() if cost}
            return len(self._queue) + len(unsettled)

    def start(self) -> None:
        """Start the background flusher (once per worker)."""
        if self._loop is None and not self.synchronous:
            self._stopping = gevent.event.Event()
            self._loop = gevent.spawn(self._run, self._stopping)

    def _run(self, stopping: gevent.event.Event) -> None:
        while not stopping.wait(self.settings.usage_flush_interval):
            self.flush()

    def close(self, deadline: float = 10.0) -> None:
        """Flush until the queue is empty (bounded), for a clean shutdown; then drop the
        journal, unless calls are still open or something could not be written."""
        end = time.monotonic() + deadline
        if self._loop is not None:
            # Let a flush under way finish: killed mid-write, its batch would be dropped.
            self._stopping.set()
            self._loop.join(timeout=deadline)
            self._loop = None
        # A response whose last byte went out may still be closing, and queues its row as it
        # does (a quick stop comes between): give the calls still open a moment to end.
        closing = time.monotonic() + min(deadline, _CLOSING_WAIT)
        while self.journal.open and time.monotonic() < closing:
            gevent.sleep(0.02)
        while self.pending() and time.monotonic() < end:
            self.flush()
            if self.pending():
                time.sleep(0.2)
        if self.pending():
            log.error(
                "shutdown: %d usage rows could not be written (database down)", self.pending()
            )
        elif self.journal.registered and not self.journal.open:
            try:
                with self.app.app_context():
                    store.drop_worker(self.journal.identity().id)
                self.journal.registered = False
            except Exception as exc:  # noqa: BLE001 - a later sweep recovers it instead
                log.warning("could not drop this worker's journal (%s)", type(exc).__name__)
