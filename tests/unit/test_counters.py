"""Which counters each limit storage gets, the in-process counters' expiry, the Redis ones' connection."""

import uuid

from helpers import Clock
from limits.storage import MemoryStorage, RedisClusterStorage, storage_from_string
from processes import REDIS_URL, needs_redis

from packet.counters import Ask, Counters, RedisCounters, _ProcessStorage, counters_for


def test_each_storage_gets_its_fastest_path():
    assert isinstance(counters_for(storage_from_string("redis://127.0.0.1:1/0")), RedisCounters)
    cluster = RedisClusterStorage.__new__(RedisClusterStorage)  # (its client connects at once)
    assert type(counters_for(cluster)) is Counters and counters_for(cluster).storage is cluster
    memory = counters_for(MemoryStorage())
    assert type(memory) is Counters and isinstance(memory.storage, _ProcessStorage)


def test_process_counters_expire_a_ttl_after_creation_and_are_swept():
    clock = Clock(1000.0)
    storage = _ProcessStorage(clock)
    assert storage.incr("a", 60) == 1
    clock.now += 59
    assert storage.incr("a", 60, amount=5) == 6  # a later incr does not extend the key
    assert storage.get("a") == 6
    clock.now += 1
    assert storage.get("a") == 0
    assert storage.incr("a", 60) == 1  # a fresh window
    for i in range(100):
        storage.incr(f"k{i}", 5)
    clock.now += 11  # past every k*, and past the sweep interval
    storage.incr("b", 60)
    assert sorted(storage._values) == ["a", "b"], "expired keys do not pile up"


@needs_redis
def test_redis_counters_survive_a_flushed_script_cache_and_reuse_their_connection():
    storage = storage_from_string(REDIS_URL)
    counters = counters_for(storage)
    key = f"test-{uuid.uuid4().hex[:8]}"
    ask = Ask(f"{key}/r", f"{key}/t", rpm=10, tpm=100, estimate=5, ttls=(60, 65))
    first = counters.admit(ask)
    storage.get_connection().script_flush()  # as after a Redis restart
    second = counters.admit(ask, settlements=[(f"{key}/t", -3)])
    assert (first.requests, first.tokens) == (1, 5)
    assert (second.requests, second.tokens) == (2, 7)  # 5 − 3 settled, + 5 reserved
    assert len(counters._idle) == 1, "one connection, kept between calls"
