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

# A key with controls of its own (packet.key_controls): its request and token counters and its
# spend, checked in the same call. KEYS: the account's two, the key's two, its spend counter,
# settlement keys… ARGV: as above, then key rpm, key tpm, budget (-1: none), the request's
# maximum cost, the spend to seed a missing counter with, the spend counter's ttl.
# Answers: requests, tokens, refused (0: admitted, else the limit's code), key requests, key
# tokens, spent.
_ADMIT_KEY = (
    _SETTLE
    + """
local a = n + 2
local rpm, tpm, estimate = tonumber(ARGV[a]), tonumber(ARGV[a + 1]), tonumber(ARGV[a + 2])
local krpm, ktpm, budget = tonumber(ARGV[a + 5]), tonumber(ARGV[a + 6]), tonumber(ARGV[a + 7])
local requests = redis.call('incr', KEYS[1])
if requests == 1 then redis.call('expire', KEYS[1], ARGV[a + 3]) end
local krequests = redis.call('incr', KEYS[3])
if krequests == 1 then redis.call('expire', KEYS[3], ARGV[a + 3]) end
local tokens = tonumber(redis.call('get', KEYS[2]) or '0')
local ktokens = tonumber(redis.call('get', KEYS[4]) or '0')
local spent = 0
if budget >= 0 then
  spent = tonumber(redis.call('get', KEYS[5]) or '-1')
  if spent < 0 then
    spent = tonumber(ARGV[a + 9])
    redis.call('set', KEYS[5], spent, 'EX', ARGV[a + 10])
  end
end
local refused = 0
if krequests > krpm then refused = 2
elseif requests > rpm then refused = 1
elseif estimate >= 0 then
  if ktokens >= ktpm then refused = 4
  elseif tokens >= tpm then refused = 3
  elseif budget >= 0 and spent >= budget then refused = 5
  end
end
if refused == 0 and estimate >= 0 then
  tokens = redis.call('incrby', KEYS[2], estimate)
  if tokens == estimate then redis.call('expire', KEYS[2], ARGV[a + 4]) end
  ktokens = redis.call('incrby', KEYS[4], estimate)
  if ktokens == estimate then redis.call('expire', KEYS[4], ARGV[a + 4]) end
  if budget >= 0 then spent = redis.call('incrby', KEYS[5], ARGV[a + 8]) end
end
return {requests, tokens, refused, krequests, ktokens, spent}
"""
)

Settlement = tuple[str, int]
# Which limit refused an admission (Admission.refused).
ADMITTED, ACCOUNT_RPM, KEY_RPM, ACCOUNT_TPM, KEY_TPM, KEY_BUDGET = range(6)
UNLIMITED = 2**62


class CounterStorage(Protocol):
    """What the counters need of a ``limits`` storage."""

    def incr(self, key: str, expiry: int, amount: int = 1) -> int: ...

    def get(self, key: str) -> int: ...


@dataclass(frozen=True)
class KeyAsk:
    """The key's part of an admission: its two counters and limits (``UNLIMITED`` where it
    has none), and its spend counter with the budget (None: no budget), the request's maximum
    cost, the spend a missing counter starts from, and that counter's lifetime."""

    request_key: str
    token_key: str
    rpm: int
    tpm: int
    spend_key: str
    budget: int | None
    hold: int
    seed: int
    spend_ttl: int


@dataclass(frozen=True)
class Ask:
    """One admission: the two counters, their limits and lifetimes (request, tokens), the
    tokens to reserve (None: count the request only, no token check), and the key's own
    counters when it has controls."""

    request_key: str
    token_key: str
    rpm: int
    tpm: int
    estimate: int | None
    ttls: tuple[int, int]
    key: KeyAsk | None = None


@dataclass(frozen=True)
class Admission:
    """The counters after an admission, and which limit refused it (``ADMITTED``: none)."""

    requests: int
    tokens: int
    refused: int = ADMITTED
    key_requests: int = 0
    key_tokens: int = 0
    spent: int = 0

    @property
    def admitted(self) -> bool:
        return self.refused == ADMITTED


class Counters:
    """Any ``limits`` storage, call by call."""

    batches_settlements = False

    def __init__(self, storage: CounterStorage) -> None:
        self.storage = storage

    def admit(self, ask: Ask, settlements: Sequence[Settlement] = ()) -> Admission:
        """Apply ``settlements``, count the request and reserve its tokens."""
        self.settle(settlements, ask.ttls[1])
        if ask.key is not None:
            return self._admit_key(ask, ask.key)
        requests = self.storage.incr(ask.request_key, ask.ttls[0])
        if requests > ask.rpm or ask.estimate is None:
            refused = ACCOUNT_RPM if requests > ask.rpm else ADMITTED
            return Admission(requests, self.storage.get(ask.token_key), refused)
        tokens = self.storage.incr(ask.token_key, ask.ttls[1], amount=ask.estimate)
        if tokens - ask.estimate >= ask.tpm:
            self.storage.incr(ask.token_key, ask.ttls[1], amount=-ask.estimate)
            return Admission(requests, tokens - ask.estimate, ACCOUNT_TPM)
        return Admission(requests, tokens)

    def _admit_key(self, ask: Ask, key: KeyAsk) -> Admission:
        """The key-controls script, call by call (not atomic: close enough off Redis)."""
        storage = self.storage
        requests = storage.incr(ask.request_key, ask.ttls[0])
        key_requests = storage.incr(key.request_key, ask.ttls[0])
        tokens, key_tokens = storage.get(ask.token_key), storage.get(key.token_key)
        spent = 0
        if key.budget is not None:
            spent = storage.get(key.spend_key)
            if not spent and key.seed:
                spent = storage.incr(key.spend_key, key.spend_ttl, amount=key.seed)
        refused = ADMITTED
        if key_requests > key.rpm:
            refused = KEY_RPM
        elif requests > ask.rpm:
            refused = ACCOUNT_RPM
        elif ask.estimate is not None:
            if key_tokens >= key.tpm:
                refused = KEY_TPM
            elif tokens >= ask.tpm:
                refused = ACCOUNT_TPM
            elif key.budget is not None and spent >= key.budget:
                refused = KEY_BUDGET
        if refused == ADMITTED and ask.estimate is not None:
            tokens = storage.incr(ask.token_key, ask.ttls[1], amount=ask.estimate)
            key_tokens = storage.incr(key.token_key, ask.ttls[1], amount=ask.estimate)
            if key.budget is not None:
                spent = storage.incr(key.spend_key, key.spend_ttl, amount=key.hold)
        return Admission(requests, tokens, refused, key_requests, key_tokens, spent)

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
_ADMIT_KEY_SCRIPT = _Script.of(_ADMIT_KEY)


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
        args = [len(settlements), *(delta for _, delta in settlements)]
        args += [ask.rpm, ask.tpm, -1 if ask.estimate is None else ask.estimate, *ask.ttls]
        key = ask.key
        if key is None:
            keys += [self._key(k) for k, _ in settlements]
            requests, tokens, admitted = self._eval(_ADMIT_SCRIPT, keys, args)
            refused = ADMITTED if admitted else ACCOUNT_RPM if requests > ask.rpm else ACCOUNT_TPM
            return Admission(int(requests), int(tokens), refused)
        keys += [self._key(key.request_key), self._key(key.token_key), self._key(key.spend_key)]
        keys += [self._key(k) for k, _ in settlements]
        budget = -1 if key.budget is None else key.budget
        args += [key.rpm, key.tpm, budget, key.hold, key.seed, key.spend_ttl]
        reply = self._eval(_ADMIT_KEY_SCRIPT, keys, args)
        return Admission(*(int(value) for value in reply))

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
