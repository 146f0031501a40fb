"""The limit counters in storage: counting a request and reserving its tokens in one call.

An admission touches an account's request counter and token counter for the current window,
and applies earlier requests' token settlements. On Redis that is one Lua script — one round
trip per request instead of three (count, reserve, settle), each of them redis-py work on the
worker. ``memory://`` counts in a dict of this process: ``limits``' MemoryStorage starts a timer
thread (a greenlet under gevent) every 10 ms of activity to expire keys, a cost every request
shares; here expired keys are dropped as they are met and swept now and then. Other storages (a Redis cluster, whose keys of different accounts may live on different
nodes; memcached) get the same answers call by call through the ``limits`` storage API.

The answers are those of the call-by-call version: the request is counted first (a request
refused for tokens still counts); it is refused when its count exceeds the rpm; tokens are
reserved while the window's counter is below the tpm (a burst overshoots by at most one
reservation); a refused reservation leaves the counter untouched.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple, Protocol

from limits.storage import MemoryStorage, RedisClusterStorage, RedisStorage, Storage
from redis.exceptions import NoScriptError, ReadOnlyError, ResponseError

# A settlement for a window that has ended finds its key expired and is dropped: recreating
# the key would leave a negative counter behind.
_SETTLE = """
local n = tonumber(ARGV[1])
for i = 1, n do
  local key = KEYS[#KEYS - n + i]
  if redis.call('exists', key) == 1 then
    redis.call('incrby', key, ARGV[1 + i])
  end
end
"""

# KEYS: request counter, token counter, settlement keys…
# ARGV: settlements n, deltas…, rpm, tpm, estimate (-1: count only), request ttl, token ttl
_ADMIT = (
    _SETTLE
    + """
local a = n + 2
local rpm, tpm, estimate = tonumber(ARGV[a]), tonumber(ARGV[a + 1]), tonumber(ARGV[a + 2])
local requests = redis.call('incr', KEYS[1])
if requests == 1 then redis.call('expire', KEYS[1], ARGV[a + 3]) end
local tokens = tonumber(redis.call('get', KEYS[2]) or '0')
if requests > rpm then return {requests, tokens, 0} end
if estimate < 0 then return {requests, tokens, 1} end
if tokens >= tpm then return {requests, tokens, 0} end
tokens = redis.call('incrby', KEYS[2], estimate)
if tokens == estimate then redis.call('expire', KEYS[2], ARGV[a + 4]) end
return {requests, tokens, 1}
"""
)

Settlement = tuple[str, int]


class CounterStorage(Protocol):
    """What the counters need of a ``limits`` storage."""

    def incr(self, key: str, expiry: int, amount: int = 1) -> int: ...

    def get(self, key: str) -> int: ...


@dataclass(frozen=True)
class Ask:
    """One admission: the two counters, their limits and lifetimes (request, tokens), and the
    tokens to reserve (None: count the request only, no token check)."""

    request_key: str
    token_key: str
    rpm: int
    tpm: int
    estimate: int | None
    ttls: tuple[int, int]


@dataclass(frozen=True)
class Admission:
    """The counters after an admission, and whether the request may go on."""

    requests: int
    tokens: int
    admitted: bool


class Counters:
    """Any ``limits`` storage, call by call."""

    batches_settlements = False

    def __init__(self, storage: CounterStorage) -> None:
        self.storage = storage

    def admit(self, ask: Ask, settlements: Sequence[Settlement] = ()) -> Admission:
        """Apply ``settlements``, count the request and reserve its tokens."""
        self.settle(settlements, ask.ttls[1])
        requests = self.storage.incr(ask.request_key, ask.ttls[0])
        if requests > ask.rpm or ask.estimate is None:
            return Admission(requests, self.storage.get(ask.token_key), requests <= ask.rpm)
        tokens = self.storage.incr(ask.token_key, ask.ttls[1], amount=ask.estimate)
        if tokens - ask.estimate >= ask.tpm:
            self.storage.incr(ask.token_key, ask.ttls[1], amount=-ask.estimate)
            return Admission(requests, tokens - ask.estimate, False)
        return Admission(requests, tokens, True)

    def settle(self, settlements: Sequence[Settlement], ttl: int) -> None:
        """Add each delta to its counter."""
        for key, delta in settlements:
            self.storage.incr(key, ttl, amount=delta)

    def get(self, key: str) -> int:
        return self.storage.get(key)


class _ProcessStorage:
    """The part of the ``limits`` storage API the counters use, on a dict of this process.

    A key expires ``ttl`` seconds after it was created (as in ``limits``' fixed window).
    """

    _SWEEP_SECONDS = 10.0

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock
        self._values: dict[str, list[float]] = {}  # key → [value, expires at]
        self._lock = threading.Lock()
        self._next_sweep = 0.0

    def incr(self, key: str, expiry: int, amount: int = 1) -> int:
        now = self.clock()
        with self._lock:
            entry = self._values.get(key)
            if entry is None or entry[1] <= now:
                entry = self._values[key] = [0, now + expiry]
            entry[0] += amount
            if now >= self._next_sweep:
                self._sweep(now)
            return int(entry[0])

    def get(self, key: str) -> int:
        entry = self._values.get(key)
        return int(entry[0]) if entry is not None and entry[1] > self.clock() else 0

    def _sweep(self, now: float) -> None:
        self._next_sweep = now + self._SWEEP_SECONDS
        for key in [k for k, (_, expires) in self._values.items() if expires <= now]:
            del self._values[key]


class _Script(NamedTuple):
    source: str
    sha: str

    @classmethod
    def of(cls, source: str) -> _Script:
        return cls(source, hashlib.sha1(source.encode()).hexdigest())


_ADMIT_SCRIPT, _SETTLE_SCRIPT = _Script.of(_ADMIT), _Script.of(_SETTLE)


class RedisCounters(Counters):
    """Redis (single node or sentinel): each admission or settlement batch is one script call.

    The calls go over connections the storage's pool makes but this worker keeps: redis-py's
    pool checks a connection for unread data at every checkout, a ``poll()`` that under gevent
    costs more than the call itself (measured in CHANGELOG.md). A connection is kept only once
    a whole reply has been read, so it holds no stray data; one that fails is closed and dropped.
    """

    batches_settlements = True

    def __init__(self, storage: RedisStorage) -> None:
        super().__init__(storage)
        client: Any = storage.get_connection()
        self._pool = client.connection_pool
        self._key = storage.prefixed_key
        self._idle: list[Any] = []

    def admit(self, ask: Ask, settlements: Sequence[Settlement] = ()) -> Admission:
        keys = [self._key(ask.request_key), self._key(ask.token_key)]
        keys += [self._key(key) for key, _ in settlements]
        args = [len(settlements), *(delta for _, delta in settlements)]
        args += [ask.rpm, ask.tpm, -1 if ask.estimate is None else ask.estimate, *ask.ttls]
        requests, tokens, admitted = self._eval(_ADMIT_SCRIPT, keys, args)
        return Admission(int(requests), int(tokens), bool(admitted))

    def settle(self, settlements: Sequence[Settlement], ttl: int) -> None:
        if settlements:
            keys = [self._key(key) for key, _ in settlements]
            self._eval(_SETTLE_SCRIPT, keys, [len(settlements), *(d for _, d in settlements)])

    def _eval(self, script: _Script, keys: list[str], args: list[int]) -> Any:
        connection = self._idle.pop() if self._idle else self._pool.make_connection()
        try:
            try:
                connection.send_command("EVALSHA", script.sha, len(keys), *keys, *args)
                reply = connection.read_response()
            except NoScriptError:  # a restarted or flushed Redis: EVAL caches it again
                connection.send_command("EVAL", script.source, len(keys), *keys, *args)
                reply = connection.read_response()
        except ResponseError:  # an answer: the connection is fine
            self._idle.append(connection)
            raise
        except BaseException:
            # Every kept connection shares this one's fate (a restarted or unreachable Redis):
            # drop them all, or each would fail once more and keep the outage going.
            connection.disconnect()
            self._drop_idle()
            raise
        self._idle.append(connection)
        return reply

    def _drop_idle(self) -> None:
        idle, self._idle = self._idle, []
        for connection in idle:
            connection.disconnect()


def refused_by_storage(exc: BaseException) -> bool:
    """True when the storage answered and refused the call (a script error): unlike an outage,
    that says nothing about the next call, so it must not open the gate for everyone."""
    return isinstance(exc, ResponseError) and not isinstance(exc, ReadOnlyError)


def counters_for(storage: Storage) -> Counters:
    """Scripts where one node holds every key, a dict for ``memory://``; else the storage API."""
    if isinstance(storage, RedisStorage) and not isinstance(storage, RedisClusterStorage):
        return RedisCounters(storage)
    if type(storage) is MemoryStorage:
        return Counters(_ProcessStorage())
    return Counters(storage)
