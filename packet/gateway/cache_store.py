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


class CacheStore(Protocol):
    """``get`` a stored value (None: none, expired or unreachable); ``put`` one for ``ttl``.

    Identical misses in other processes: ``claim`` a lock for ``seconds`` (False: another
    process holds it), ``peek`` at a value and whether its lock is still held, ``unclaim``.
    """

    def get(self, key: str) -> bytes | None: ...

    def put(self, key: str, value: bytes) -> None: ...

    def claim(self, lock: str, seconds: float) -> bool: ...

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

    def put(self, key: str, value: bytes) -> None:
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
    def claim(self, lock: str, seconds: float) -> bool:
        return True

    def peek(self, key: str, lock: str) -> tuple[bytes | None, bool]:
        return self.get(key), False

    def unclaim(self, lock: str) -> None:
        return None


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

    def get(self, key: str) -> bytes | None:
        try:
            value = self.client.get(key)
        except Exception as exc:  # noqa: BLE001 - a cache that fails is a miss
            self._failed(exc)
            return None
        return value if isinstance(value, bytes) else None

    def put(self, key: str, value: bytes) -> None:
        if len(value) > self.max_entry_bytes:
            return
        try:
            self.client.set(key, value, px=self.ttl_ms)
        except Exception as exc:  # noqa: BLE001 - not storing is always allowed
            self._failed(exc)

    def claim(self, lock: str, seconds: float) -> bool:
        try:
            return bool(self.client.set(lock, b"1", nx=True, px=max(1, int(seconds * 1000))))
        except Exception as exc:  # noqa: BLE001 - unreachable: nobody waits, go upstream
            self._failed(exc)
            return True

    def peek(self, key: str, lock: str) -> tuple[bytes | None, bool]:
        try:
            value, held = self.client.mget([key, lock])
        except Exception as exc:  # noqa: BLE001
            self._failed(exc)
            return None, False
        return value, held is not None

    def unclaim(self, lock: str) -> None:
        try:
            self.client.delete(lock)
        except Exception as exc:  # noqa: BLE001 - the lock expires by itself
            self._failed(exc)

    def _failed(self, exc: BaseException) -> None:
        now = time.monotonic()
        if now - self._warned >= _WARN_EVERY:
            self._warned = now
            log.warning("response cache storage unreachable (%s): answering misses", exc)


def build_store(storage: Any, max_bytes: int, max_entry_bytes: int, ttl: float) -> CacheStore:
    """Redis when the limit storage is Redis (its connection is reused), memory otherwise."""
    from limits.storage import RedisStorage

    if isinstance(storage, RedisStorage):
        return RedisStore(storage.get_connection(), max_entry_bytes, ttl)
    return MemoryStore(max_bytes, max_entry_bytes, ttl)
