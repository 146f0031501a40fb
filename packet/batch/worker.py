"""The batch worker's loop: expire, validate, claim lines, finalize — and a heartbeat that
keeps this worker's claims while it lives."""

from __future__ import annotations

import logging
import os
import socket
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import IO

import gevent
import gevent.event
import gevent.lock
import gevent.pool
import orjson
from flask import Flask

from .. import store
from ..auth import Principal
from ..protocol.batches import failed_line, input_error
from ..runtime import Runtime
from . import checks, finalize, lines
from .storage import CHUNK, FileStorage, storage_for

log = logging.getLogger("packet.batch")

CLAIM = 16  # lines claimed at a time, per batch (beyond its slots: the next ones queued)
MOST_LINES = 512  # lines one worker runs at once, over all batches
SPOOL_MEMORY = 4 << 20  # an input file beyond this is spooled to disk
RECORD_TRIES = 8  # about a minute of database outage, with the back-off


def _chunks(spool: IO[bytes]) -> Iterator[bytes]:
    """The spool's bytes from its start, a chunk at a time."""
    spool.seek(0)
    return iter(lambda: spool.read(CHUNK), b"")


@dataclass
class Active:
    """A batch this worker claims lines of: how to run them, and its ``most`` slots (lines
    in flight at once: PACKET_BATCH_CONCURRENCY per endpoint of the account)."""

    running: lines.Running
    most: int
    slots: gevent.lock.BoundedSemaphore


class Worker:
    """One worker process: its identity (the claims' owner) and what it is running."""

    def __init__(self, app: Flask, rt: Runtime) -> None:
        self.app, self.rt = app, rt
        self.settings = rt.settings.batch
        self.owner = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.storage: FileStorage = storage_for(rt.settings)
        self.pool = gevent.pool.Pool(MOST_LINES)
        self.active: dict[str, Active] = {}
        self.claimed: dict[str, int] = {}  # per batch: lines claimed, not yet recorded
        self.stopping = gevent.event.Event()
        self.wake = gevent.event.Event()  # a line ended: room for another

    def run(self) -> None:
        """Work until :meth:`stop`, then let the lines in flight finish."""
        log.info("batch worker %s started", self.owner)
        beat = gevent.spawn(self._heartbeat)
        try:
            chores_due = 0.0
            while not self.stopping.is_set():
                self.wake.clear()
                now = time.monotonic()
                chores = now >= chores_due
                if chores:
                    chores_due = now + self.settings.poll_seconds
                try:
                    busy = self.step(chores)
                except Exception as exc:  # noqa: BLE001 - a database outage: wait, retry
                    log.warning("batch worker step failed: %s", exc)
                    busy = False
                if not busy:
                    self.wake.wait(self.settings.poll_seconds)
            self.pool.join(timeout=self.rt.settings.read_timeout)
        finally:
            beat.kill()
        log.info("batch worker %s stopped", self.owner)

    def stop(self) -> None:
        self.stopping.set()
        self.wake.set()

    def step(self, chores: bool = True) -> bool:
        """One round: claim lines and, with ``chores``, expire, validate and finalize
        batches. True when it found work (the next round then comes at once)."""
        busy = False
        if chores:
            busy = store.expire_due() > 0
            batch_id = store.claim_validation(self.owner, self.settings.lease_seconds)
            if batch_id is not None:
                self.validate(batch_id)
                busy = True
            self.refresh()
        for batch_id, active in self.active.items():
            busy = self.claim(batch_id, active) or busy
        if chores:
            batch_id = store.claim_finishing(self.owner, self.settings.lease_seconds)
            if batch_id is not None:
                finalize.finalize(self.storage, batch_id, self.owner)
                busy = True
        return busy

    def validate(self, batch_id: str) -> None:
        """Check the input file; the batch starts, or fails with the errors' line numbers.

        The file is copied to a local spool first: it is read twice (checked, then written
        as lines), and the second reading happens inside the transaction that writes them.
        """
        batch = store.get_batch(None, batch_id)
        if batch is None:
            return
        file = store.get_file(batch.account_id, batch.input_file_id)
        with tempfile.SpooledTemporaryFile(max_size=SPOOL_MEMORY) as spool:
            if file is None:
                errors = [input_error(None, "The input file was deleted.")]
            else:
                for chunk in storage_for(self.rt.settings, file.storage).open(file.id):
                    spool.write(chunk)
                errors = checks.check(_chunks(spool), batch.endpoint)
            if errors:
                payload = orjson.dumps({"object": "list", "data": errors}).decode()
                store.fail_batch(batch_id, self.owner, payload)
                return
            store.start_batch(batch_id, self.owner, checks.requests_of(_chunks(spool)))

    def refresh(self) -> None:
        """The batches to claim lines of, and who pays for each (its balance now)."""
        active: dict[str, Active] = {}
        for batch_id, account_id, key_id, endpoint in store.active_batches():
            principal = self._principal(account_id)
            if principal is None:
                continue
            endpoints = len(principal.endpoints) or len(self.rt.settings.upstreams) or 1
            most = self.settings.concurrency * endpoints
            known = self.active.get(batch_id)
            slots = known.slots if known is not None else gevent.lock.BoundedSemaphore(most)
            running = lines.Running(batch_id, endpoint, key_id, principal)
            active[batch_id] = Active(running, most, slots)
        self.active = active

    def claim(self, batch_id: str, active: Active) -> bool:
        """Claim a group of the batch's lines while this worker holds few enough of them;
        each waits for one of the batch's ``most`` slots. True when some were claimed."""
        if self.claimed.get(batch_id, 0) > active.most:
            return False
        wanted = min(CLAIM, self.pool.free_count())
        if wanted <= 0:
            return False
        lease = self.settings.lease_seconds
        claimed = store.claim_lines(batch_id, self.owner, wanted, active.most + CLAIM, lease)
        for line in claimed:
            self.claimed[batch_id] = self.claimed.get(batch_id, 0) + 1
            self.pool.spawn(self._line, active, line)
        return bool(claimed)

    def _line(self, active: Active, claimed: store.Claimed) -> None:
        batch = active.running
        try:
            with self.app.app_context():
                with active.slots:  # a slot is a line in flight upstream
                    if batch.id not in self.active or self.stopping.is_set():
                        # cancelled or expired while it waited, or this worker is stopping
                        store.drop_claim(batch.id, claimed.line, self.owner)
                        return
                    outcome = lines.answer(self.rt, batch, claimed)
                self._record(batch, claimed, outcome)
        except Exception:
            log.exception("batch %s line %d not recorded", batch.id, claimed.line)
        finally:
            self.claimed[batch.id] -= 1
            self.wake.set()

    def _record(self, batch: lines.Running, claimed: store.Claimed, outcome: lines.Outcome) -> None:
        """Write the line's answer, trying again while the database is away (the answer has
        been paid for upstream); after about a minute the line is given back, to be sent
        again. An answer the database refuses is written as the line's error instead."""
        for attempt in range(RECORD_TRIES):
            try:
                if not lines.record(self.owner, batch, claimed, outcome):
                    log.warning("batch %s line %d was taken over", batch.id, claimed.line)
                return
            except Exception as exc:
                if not store.is_outage(exc):
                    log.exception("batch %s line %d: answer refused", batch.id, claimed.line)
                    # Refused, not unreachable: sending it again would not help.
                    message = "The gateway could not record the answer to this request."
                    failed = failed_line(claimed.custom_id, "internal_error", message)
                    lines.record(self.owner, batch, claimed, ("error", failed, None))
                    return
                if attempt == RECORD_TRIES - 1:
                    break
                gevent.sleep(min(0.5 * 2**attempt, 10.0))
        log.error(
            "batch %s line %d: the database is away; given back",
            batch.id,
            claimed.line,
            exc_info=True,
        )
        store.drop_claim(batch.id, claimed.line, self.owner)

    def _principal(self, account_id: int) -> Principal | None:
        row = store.account_row(account_id)
        if row is None:
            return None
        name, tier, balance, default_model = row
        return Principal(
            key_id=0,  # the batch's key is written on each usage row (lines.record)
            key_prefix="batch",
            account_id=account_id,
            account_name=name,
            tier=tier,
            balance_micros=balance,
            default_model=default_model,
            endpoints=store.account_endpoints(account_id),
        )

    def _heartbeat(self) -> None:
        """Renew this worker's leases a few times per lease."""
        while True:
            gevent.sleep(self.settings.lease_seconds / 3)
            try:
                with self.app.app_context():
                    store.renew(self.owner, self.settings.lease_seconds)
            except Exception as exc:  # noqa: BLE001 - retried at the next beat
                log.warning("batch lease renewal failed: %s", exc)
