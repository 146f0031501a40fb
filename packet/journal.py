"""What a worker owes the database if it dies: its balance leases and its calls in flight.

A worker killed without a clean shutdown (``kill -9``, the OOM killer, a lost machine) would
take with it the money it had leased and the usage of every request it was serving. So each
worker keeps a journal in the database, written only with the batches it already writes: its
leases (added in the transaction that takes one, reduced with each flush) and a checkpoint of
its calls open for more than a second, with the tokens counted so far. A live worker finds a
dead one's journal and recovers it in one transaction: checkpointed calls become usage rows
(``usage_source = "recovered"``), and the rest of each lease goes back to its balance.

What can still be lost is bounded: the tokens a stream made after its last checkpoint, and the
requests that finished after the dead worker's last flush (their holds are refunded, not
charged) — one ``PACKET_USAGE_FLUSH_INTERVAL`` of work.

A worker on the same machine is known dead at once (its process is gone, or is no longer a
child of the gunicorn master it was started by); one on another machine only once its journal
has not been written for ``PACKET_JOURNAL_STALE_SECONDS``. A worker that finds its own journal
recovered (it was stalled that long) drops what the recovery settled, so nothing is charged or
refunded twice.
"""

from __future__ import annotations

import itertools
import os
import secrets
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import orjson

_CHECKPOINT_AGE = 1.0


class WorkerRow(NamedTuple):
    """A journal's owner, as stored."""

    id: str
    host: str
    master_pid: int
    pid: int
    written_at: float


@dataclass
class OpenCall:
    """One admitted request that has not finished yet."""

    seq: int
    fields: dict[str, Any]
    hold: int
    started: float
    progress: Callable[[], tuple[int, int]] = lambda: (0, 0)
    checkpointed: bool = False
    # After a recovery of this worker's journal: the call was billed up to its checkpoint, and
    # its hold went back to the balance with the rest of the lease.
    recovered: bool = False
    refunded: bool = False

    def entry(self) -> dict[str, Any]:
        prompt, completion = self.progress()
        return self.fields | {
            "seq": self.seq,
            "hold": self.hold,
            "latency_ms": int((time.monotonic() - self.started) * 1000),
            "prompt_tokens": prompt,
            "completion_tokens": completion,
        }


def this_worker() -> WorkerRow:
    """This meter's identity: host, the gunicorn master that started it, its pid, and a nonce
    (two apps in one process, as in tests, keep two journals)."""
    host, master, pid = socket.gethostname()[:200], os.getppid(), os.getpid()
    return WorkerRow(
        f"{host}/{master}/{pid}/{secrets.token_hex(4)}", host, master, pid, time.time()
    )


def process_alive(pid: int, master_pid: int) -> bool:
    """True while ``pid`` runs as a child of ``master_pid`` (a reused pid is someone else; a
    zombie not yet reaped by the master is dead)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            fields = stat.read().rsplit(b")", 1)[1].split()
        return fields[0] not in (b"Z", b"X") and int(fields[1]) == master_pid
    except FileNotFoundError:
        return False
    except OSError:  # no /proc here: existence is all that can be told
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True


@dataclass
class Journal:
    """This worker's open calls and the state of its journal in the database."""

    stale_after: float
    worker: Callable[[], WorkerRow] = this_worker
    me: WorkerRow | None = None
    _owner: int = 0
    registered: bool = False
    written_at: float = 0.0
    open: dict[int, OpenCall] = field(default_factory=dict)
    _seq: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    def identity(self) -> WorkerRow:
        """Known only after gunicorn forked the worker, so asked for late."""
        if self.me is None or self._owner != os.getpid():
            self.me, self._owner = self.worker(), os.getpid()
        return self.me

    def begin(self, fields: dict[str, Any], hold: int) -> OpenCall:
        call = OpenCall(next(self._seq), fields, hold, time.monotonic())
        self.open[call.seq] = call
        return call

    def end(self, call: OpenCall) -> None:
        self.open.pop(call.seq, None)

    def checkpoint(self) -> tuple[bytes, list[OpenCall]]:
        """The calls open for over a second, as stored, and the calls themselves."""
        now = time.monotonic()
        due = [
            c
            for c in list(self.open.values())
            if now - c.started >= _CHECKPOINT_AGE and not c.recovered
        ]
        return orjson.dumps([c.entry() for c in due]), due

    def due(self) -> bool:
        """Whether the journal must be written even though nothing in it changed: often enough
        that other machines can tell this worker is alive (see ``stale_after``)."""
        return self.registered and time.time() - self.written_at > min(60.0, self.stale_after / 4)

    def written(self, calls: list[OpenCall]) -> None:
        """The journal now holds a checkpoint of exactly ``calls`` (some may have ended since:
        their rows, still queued, are then what a recovery would bill twice)."""
        self.registered, self.written_at = True, time.time()
        for call in self.open.values():
            call.checkpointed = False
        for call in calls:
            call.checkpointed = True

    def recovered_elsewhere(self) -> None:
        """Another worker recovered this journal: its checkpoints and leases are settled."""
        self.registered = False
        for call in self.open.values():
            call.recovered = call.recovered or call.checkpointed
            call.refunded = True

    def dead(self, workers: list[WorkerRow], now: float) -> list[str]:
        """The journals whose owner is gone (see the module docstring)."""
        me = self.identity()
        found = []
        for worker in workers:
            if worker.id == me.id:
                continue
            if worker.host == me.host:
                gone = not process_alive(worker.pid, worker.master_pid)
            else:
                gone = now - worker.written_at > self.stale_after
            if gone:
                found.append(worker.id)
        return found
