"""Where cached answers live: one small interface, Redis or this process's memory.

With ``REDIS_URL`` set every worker and instance shares one cache (entries expire after
``PACKET_CACHE_TTL`` seconds); otherwise each process keeps a least-recently-used table bounded
in bytes (``PACKET_CACHE_MAX_BYTES``). No entry is larger than ``PACKET_CACHE_MAX_ENTRY_BYTES``.
A storage that fails is a miss (and a store that does not happen), never a failed request.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any, Protocol

log = logging.getLogger("packet.cache")

# What an entry costs beyond its key and value in the memory table (the tuple, the dict slot).
ENTRY_OVERHEAD = 120
_WARN_EVERY = 60.0
PAUSE_SECONDS = 1.0  # Redis left alone after a failure


class CacheStore(Protocol):
    """``get`` a stored value (None: none, expired or unreachable); ``put`` one for the TTL.

    Identical misses in other processes share a lock beside the entry: ``fetch`` gets the
    value or, when there is none, claims the lock for ``seconds`` (False: another process
    holds it), in one call; ``put`` with the lock also lets go of it; ``peek`` reads a value
    and whether its lock is still held; ``unclaim`` lets go without storing.
    """

    def get(self, key: str) -> bytes | None: ...

    def fetch(self, key: str, lock: str, seconds: float) -> tuple[bytes | None, bool]: ...

    def put(self, key: str, value: bytes, lock: str | None = None) -> None: ...

    def peek(self, key: str, lock: str) -> tuple[bytes | None, bool]: ...

    def unclaim(self, lock: str) -> None: ...


class MemoryStore:
    """Least recently used first out, bounded by the bytes of its keys and values; entries
    expire ``ttl`` seconds after they were put (``clock``: monotonic seconds, injectable)."""

    def __init__(
        self,
        max_bytes: int,
        max_entry_bytes: int,
        ttl: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_bytes = max_bytes
        self.max_entry_bytes = max_entry_bytes
        self.ttl = ttl
        self.clock = clock
        self.bytes = 0
        self._entries: OrderedDict[str, tuple[float, bytes]] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: str) -> bytes | None:
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                return None
            if entry[0] <= self.clock():
                self._drop(key)
                return None
            self._entries.move_to_end(key)
            return entry[1]

    def put(self, key: str, value: bytes, lock: str | None = None) -> None:
        size = _size(key, value)
        if len(value) > self.max_entry_bytes or size > self.max_bytes:
            return
        with self._lock:
            if key in self._entries:
                self._drop(key)
            self._entries[key] = (self.clock() + self.ttl, value)
            self.bytes += size
            while self.bytes > self.max_bytes:
                self._drop(next(iter(self._entries)))

    def _drop(self, key: str) -> None:
        _, value = self._entries.pop(key)
        self.bytes -= _size(key, value)

    # One process: its in-flight table (packet.gateway.cache) is the whole story.
    def fetch(self, key: str, lock: str, seconds: float) -> tuple[bytes | None, bool]:
        value = self.get(key)
        return value, value is None

    def peek(self, key: str, lock: str) -> tuple[bytes | None, bool]:
        return self.get(key), False

    def unclaim(self, lock: str) -> None:
        return None


# KEYS: entry, lock. ARGV: the lock's lifetime (ms). The value, or '' and whether it claimed.
_FETCH = """
local value = redis.call('get', KEYS[1])
if value then return {value, 0} end
if redis.call('set', KEYS[2], '1', 'NX', 'PX', ARGV[1]) then return {'', 1} end
return {'', 0}
"""
# KEYS: entry, lock. ARGV: value, TTL (ms), 1 to let go of the lock.
_PUT = """
redis.call('set', KEYS[1], ARGV[1], 'PX', ARGV[2])
if ARGV[3] == '1' then redis.call('del', KEYS[2]) end
"""


def _size(key: str, value: bytes) -> int:
    return len(key) + len(value) + ENTRY_OVERHEAD


class RedisStore:
    """Entries in Redis with their TTL, shared by every worker and instance. ``client`` is a
    redis-py client (the limit storage's own connection)."""

    def __init__(self, client: Any, max_entry_bytes: int, ttl: float) -> None:
        self.client = client
        self.max_entry_bytes = max_entry_bytes
        self.ttl_ms = max(1, int(ttl * 1000))
        self._warned = 0.0
        self._down_until = 0.0
        self._fetch = client.register_script(_FETCH)
        self._put = client.register_script(_PUT)

    def _up(self) -> bool:
        """False for ``PAUSE_SECONDS`` after a failure: an outage costs one timeout, not one
        per call."""
        return time.monotonic() >= self._down_until

    def get(self, key: str) -> bytes | None:
        if not self._up():
            return None
        try:
            value = self.client.get(key)
        except Exception as exc:  # noqa: BLE001 - a cache that fails is a miss
            self._failed(exc)
            return None
        return value if isinstance(value, bytes) else None

    def fetch(self, key: str, lock: str, seconds: float) -> tuple[bytes | None, bool]:
        if not self._up():
            return None, True
        try:
            value, claimed = self._fetch(keys=[key, lock], args=[max(1, int(seconds * 1000))])
        except Exception as exc:  # noqa: BLE001 - unreachable: a miss nobody waits for
            self._failed(exc)
            return None, True
        return (value or None), bool(claimed)

    def put(self, key: str, value: bytes, lock: str | None = None) -> None:
        if len(value) > self.max_entry_bytes:
            if lock is not None:
                self.unclaim(lock)
            return
        if not self._up():
            return
        try:
            self._put(keys=[key, lock or key], args=[value, self.ttl_ms, 1 if lock else 0])
        except Exception as exc:  # noqa: BLE001 - not storing is always allowed
            self._failed(exc)

    def peek(self, key: str, lock: str) -> tuple[bytes | None, bool]:
        if not self._up():
            return None, False
        try:
            value, held = self.client.mget([key, lock])
        except Exception as exc:  # noqa: BLE001
            self._failed(exc)
            return None, False
        return value, held is not None

    def unclaim(self, lock: str) -> None:
        if not self._up():
            return
        try:
            self.client.delete(lock)
        except Exception as exc:  # noqa: BLE001 - the lock expires by itself
            self._failed(exc)

    def _failed(self, exc: BaseException) -> None:
        now = time.monotonic()
        self._down_until = now + PAUSE_SECONDS
        if now - self._warned >= _WARN_EVERY:
            self._warned = now
            log.warning("response cache storage unreachable (%s): answering misses", exc)


def build_store(storage: Any, max_bytes: int, max_entry_bytes: int, ttl: float) -> CacheStore:
    """Redis when the limit storage is Redis (over its connection pool), memory otherwise.

    The cache's client does not retry: redis-py's default retries with backoff would hold a
    request for seconds when Redis is down, where a miss is the right answer at once.
    """
    from limits.storage import RedisClusterStorage, RedisStorage

    if isinstance(storage, RedisClusterStorage):
        return RedisStore(storage.get_connection(), max_entry_bytes, ttl)
    if isinstance(storage, RedisStorage):
        import redis
        from redis.backoff import NoBackoff
        from redis.retry import Retry

        connection: Any = storage.get_connection()
        pool = connection.connection_pool
        client = redis.Redis(connection_pool=pool, retry=Retry(NoBackoff(), 0))
        return RedisStore(client, max_entry_bytes, ttl)
    return MemoryStore(max_bytes, max_entry_bytes, ttl)
