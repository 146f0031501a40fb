"""Which counters each limit storage gets, and the in-process counters' expiry."""

from limits.storage import MemoryStorage, RedisClusterStorage, storage_from_string

from packet.counters import Counters, RedisCounters, _ProcessStorage, counters_for


class Clock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


def test_each_storage_gets_its_fastest_path():
    assert isinstance(counters_for(storage_from_string("redis://127.0.0.1:1/0")), RedisCounters)
    cluster = RedisClusterStorage.__new__(RedisClusterStorage)  # (its client connects at once)
    assert type(counters_for(cluster)) is Counters and counters_for(cluster).storage is cluster
    memory = counters_for(MemoryStorage())
    assert type(memory) is Counters and isinstance(memory.storage, _ProcessStorage)


def test_process_counters_expire_a_ttl_after_creation_and_are_swept():
    clock = Clock()
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
