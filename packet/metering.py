"""The only writer of usage and balance.

Admission reserves the request's maximum cost so concurrent requests cannot drive a balance far
below zero. To keep SQL off the hot path, a worker leases a block of an account's balance (the
maximum cost of ``PACKET_BALANCE_LEASE`` requests) with one atomic ``UPDATE … WHERE balance >=
4 × block`` and serves reservations from it in memory; the unused part goes back to the
database with the next usage flush. A busy account's block doubles each time the worker runs
out of it between two flushes (up to 16×) and halves at each flush, so a worker takes a lease a
few times per flush interval whatever its request rate. Near an empty balance no block is granted and each request
reserves exactly, with ``UPDATE … WHERE balance > 0`` — so a balance never ends below −(one
request's maximum cost), whatever the concurrency.

When a request ends, its usage row (and, for an exact reservation, its settlement) is queued,
and a background greenlet writes everything in one transaction per batch. The queue and the
leases are flushed on shutdown.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import gevent
import orjson
from flask import Flask

from . import store
from .auth import Principal
from .config import Settings
from .errors import InsufficientQuota, ServiceUnavailable

log = logging.getLogger("packet.metering")
request_log = logging.getLogger("packet.request")


def cost_micros(settings: Settings, model: str, prompt_tokens: int, completion_tokens: int) -> int:
    """Cost of a request in micro-dollars, rounded up to the next micro-dollar."""
    price = settings.price_for(model)
    numerator = (
        prompt_tokens * price.input_per_million + completion_tokens * price.output_per_million
    )
    return -(-numerator // 1_000_000)


@dataclass(frozen=True)
class Hold:
    """Money held for one request: from this worker's lease, or reserved in the database."""

    amount: int
    leased: bool = False


NO_HOLD = Hold(0)
USAGE_BACKLOG = "The gateway cannot record usage right now; try again shortly."
_LEASE_FLOOR = 4
_LEASE_GROWTH = 16


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
        self._records: list[dict[str, Any]] = []
        self._settlements: list[store.Settlement] = []
        self._touched: dict[int, float] = {}
        self._leases: dict[int, int] = {}
        self._scale: dict[int, int] = {}
        self._lock = threading.Lock()
        self._loop: gevent.Greenlet | None = None
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
        if len(self._records) >= self.settings.usage_buffer_max:
            raise ServiceUnavailable(USAGE_BACKLOG, headers={"Retry-After": "5"})
        amount = cost_micros(self.settings, model, prompt_estimate, max_tokens)
        if not amount:
            return NO_HOLD
        account = principal.account_id
        if self._take(account, amount) or self._lease(account, amount):
            return Hold(amount, leased=True)
        if not store.reserve_balance(account, amount):
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
            if store.lease_balance(account, block, _LEASE_FLOOR * block):
                with self._lock:
                    self._leases[account] = self._leases.get(account, 0) + block
                    self._scale[account] = min(size * 2, _LEASE_GROWTH)
                return self._take(account, amount)
        self._scale.pop(account, None)
        return False

    def _take(self, account: int, amount: int) -> bool:
        with self._lock:
            available = self._leases.get(account, 0)
            if available < amount:
                return False
            self._leases[account] = available - amount
            return True

    def record(self, usage: dict[str, Any], hold: Hold) -> None:
        """Queue one finished request's usage row; settle what was held for it."""
        settlement = None
        if hold.leased:
            with self._lock:
                account = usage["account_id"]
                self._leases[account] = (
                    self._leases.get(account, 0) + hold.amount - usage["cost_micros"]
                )
        else:
            settlement = store.Settlement(usage["account_id"], hold.amount, usage["cost_micros"])
        request_log.info(
            "request_id=%s account=%s key=%s model=%s route=%s stream=%s status=%s "
            "prompt_tokens=%s completion_tokens=%s cost_micros=%s ttft_ms=%s latency_ms=%s%s",
            usage["request_id"],
            usage["account_id"],
            usage["key_id"],
            usage["model"],
            usage["route"],
            usage["stream"],
            usage["status"],
            usage["prompt_tokens"],
            usage["completion_tokens"],
            usage["cost_micros"],
            usage["ttft_ms"],
            usage["latency_ms"],
            " disconnected" if usage["client_disconnected"] else "",
        )
        self._enqueue(usage, settlement)

    def _enqueue(self, usage: dict[str, Any], settlement: store.Settlement | None) -> None:
        with self._lock:
            self._records.append(usage)
            if settlement is not None:
                self._settlements.append(settlement)
            full = len(self._records) >= self.settings.usage_batch_size
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
        with self._lock:
            records, self._records = self._records, []
            leases, self._leases = self._leases, {}
            self._scale = {a: s // 2 for a, s in self._scale.items() if s > 2}
            settlements = self._settlements + [
                store.Settlement(account, left, 0) for account, left in leases.items() if left
            ]
            self._settlements = []
            touched, self._touched = self._touched | self.touched_keys(), {}
        if not records and not settlements and not touched:
            return 0
        try:
            with self.app.app_context():
                store.write_usage(records, settlements, touched)
        except Exception as exc:  # noqa: BLE001 - any failure: keep the batch, or isolate a row
            if not store.is_outage(exc):
                return self._write_one_by_one(records, settlements, touched)
            self._keep(records, settlements, touched, exc)
            return 0
        return len(records)

    def _keep(
        self,
        records: list[dict[str, Any]],
        settlements: list[store.Settlement],
        touched: dict[int, float],
        exc: BaseException,
    ) -> None:
        """Put a batch back at the head of the queue, for the next flush to retry."""
        log.warning(
            "usage flush failed (%s); %d rows kept for the next try",
            type(exc).__name__,
            len(records),
        )
        with self._lock:
            self._records[:0] = records
            self._settlements[:0] = settlements  # leases come back as settlements
            self._touched = touched | self._touched

    def _write_one_by_one(
        self,
        records: list[dict[str, Any]],
        settlements: list[store.Settlement],
        touched: dict[int, float],
    ) -> int:
        """The database refused the batch: settle the money first, then write rows one at a
        time, so one row it cannot take is quarantined (logged whole, counted, dropped) and
        never holds back the others."""
        with self.app.app_context():
            try:
                store.write_usage([], settlements, touched)
            except Exception as exc:  # noqa: BLE001
                self._keep(records, settlements, touched, exc)
                return 0
            written = 0
            for index, row in enumerate(records):
                try:
                    store.write_usage([row], (), {})
                except Exception as exc:  # noqa: BLE001
                    if store.is_outage(exc):
                        self._keep(records[index:], [], {}, exc)
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

    def pending(self) -> int:
        """Rows, settlements and leased balance not yet written."""
        with self._lock:
            return (
                len(self._records)
                + len(self._settlements)
                + sum(1 for left in self._leases.values() if left)
            )

    def start(self) -> None:
        """Start the background flusher (once per worker)."""
        if self._loop is None and not self.synchronous:
            self._loop = gevent.spawn(self._run)

    def _run(self) -> None:
        while True:
            gevent.sleep(self.settings.usage_flush_interval)
            self.flush()

    def close(self, deadline: float = 10.0) -> None:
        """Flush until the queue is empty (bounded), for a clean shutdown."""
        if self._loop is not None:
            self._loop.kill(block=False)
            self._loop = None
        end = time.monotonic() + deadline
        while self.pending() and time.monotonic() < end:
            self.flush()
            if self.pending():
                time.sleep(0.2)
        if self.pending():
            log.error(
                "shutdown: %d usage rows could not be written (database down)", self.pending()
            )
