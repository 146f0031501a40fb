"""Failed key attempts per client address, without a server: the address behind trusted
proxies, the budget and its window on a controlled clock, the storage policy, and the 429s
through Flask's test client (live: tests/live/test_auth_throttle.py)."""

from __future__ import annotations

import ipaddress
import logging
import uuid

import pytest
from flask_migrate import upgrade
from helpers import BrokenStorage, Clock
from limits.storage import MemoryStorage, storage_from_string
from processes import REDIS_URL

from packet import create_app, store
from packet.auth_throttle import AuthThrottle, client_address
from packet.config import ConfigError, load_settings
from packet.counters import counters_for
from packet.errors import RateLimitExceeded, ServiceUnavailable
from packet.limits import StorageGuard

LOCAL = [ipaddress.ip_network("127.0.0.1/32")]
CHAIN = [ipaddress.ip_network("127.0.0.1/32"), ipaddress.ip_network("10.0.0.0/8")]


@pytest.mark.parametrize(
    ("peer", "forwarded", "trusted", "expected"),
    [
        ("127.0.0.1", "203.0.113.7", [], "127.0.0.1"),  # no trusted proxy: the header is ignored
        ("198.51.100.9", "203.0.113.7", LOCAL, "198.51.100.9"),  # an untrusted peer's claim
        ("127.0.0.1", None, LOCAL, "127.0.0.1"),
        ("127.0.0.1", "203.0.113.7", LOCAL, "203.0.113.7"),
        ("127.0.0.1", "6.6.6.6, 203.0.113.7", LOCAL, "203.0.113.7"),  # left part is the client's
        ("127.0.0.1", "6.6.6.6,203.0.113.7, 10.0.0.5", CHAIN, "203.0.113.7"),  # two proxies
        ("127.0.0.1", "10.0.0.4, 10.0.0.5", CHAIN, "10.0.0.4"),  # only proxies: the farthest
        ("127.0.0.1", "203.0.113.7, junk, 10.0.0.5", CHAIN, "10.0.0.5"),  # last trusted hop
        ("127.0.0.1", "203.0.113.7:4711", LOCAL, "127.0.0.1"),  # a port is not an address
        ("127.0.0.1", "203.0.113.7,", LOCAL, "127.0.0.1"),
        ("127.0.0.1", "", LOCAL, "127.0.0.1"),
        ("::ffff:127.0.0.1", "203.0.113.7", LOCAL, "203.0.113.7"),  # dual-stack socket
        ("::1", "2001:DB8::1", [ipaddress.ip_network("::1/128")], "2001:db8::1"),
        ("127.0.0.1", "::ffff:203.0.113.7", LOCAL, "203.0.113.7"),
        ("", "203.0.113.7", LOCAL, ""),  # no peer address (a unix socket)
    ],
)
def test_client_address(peer, forwarded, trusted, expected):
    assert client_address(peer, forwarded, trusted) == expected


def test_settings(tmp_path):
    defaults = load_settings({}, instance_path=str(tmp_path))
    assert defaults.trusted_proxies == ()
    assert defaults.auth_failures_per_window == 30
    s = load_settings(
        {"PACKET_TRUSTED_PROXIES": " 10.1.2.3/8, ::1 ,", "PACKET_AUTH_FAILURES_PER_WINDOW": "-1"},
        instance_path=str(tmp_path),
    )
    assert s.trusted_proxies == (ipaddress.ip_network("10.0.0.0/8"), ipaddress.ip_network("::1"))
    assert s.auth_failures_per_window == 0
    with pytest.raises(ConfigError, match="PACKET_TRUSTED_PROXIES"):
        load_settings({"PACKET_TRUSTED_PROXIES": "10.0.0.0/33"}, instance_path=str(tmp_path))


def environ(address: str) -> dict[str, str]:
    return {"REMOTE_ADDR": address}


def throttle(
    storage=None, *, clock, counting=None, threshold=3, fail_open=True, prefix="t", **kwargs
) -> AuthThrottle:
    """A throttle on ``storage`` (counting in ``counting``, its counters' storage by default)."""
    storage = storage or MemoryStorage()
    return AuthThrottle(
        counting or counters_for(storage).storage,
        StorageGuard(storage, fail_open=fail_open, clock=clock),
        threshold=threshold,
        window=60,
        prefix=prefix,
        clock=clock,
        **kwargs,
    )


def test_budget_then_429_until_the_window_ends():
    clock = Clock()  # 10 s into a window
    t = throttle(clock=clock)
    for _ in range(3):
        t.check(environ("192.0.2.1"))
        t.failed(environ("192.0.2.1"))  # the caller answers 401
    with pytest.raises(RateLimitExceeded) as refused:
        t.check(environ("192.0.2.1"))  # before any key is looked at
    assert refused.value.error_code == "rate_limit_exceeded"
    assert refused.value.headers == {"Retry-After": "50", "retry-after-ms": "50000"}
    assert "limit 3 per 60s" in refused.value.message
    t.check(environ("192.0.2.2"))  # another address is not affected

    clock.now += 49.5
    with pytest.raises(RateLimitExceeded) as refused:
        t.check(environ("192.0.2.1"))
    assert refused.value.headers == {"Retry-After": "1", "retry-after-ms": "500"}
    clock.now += 0.5  # the next window: a new budget
    t.check(environ("192.0.2.1"))
    for _ in range(3):
        t.failed(environ("192.0.2.1"))
    with pytest.raises(RateLimitExceeded):
        t.check(environ("192.0.2.1"))


@pytest.fixture(params=["memory", "redis"])
def shared(request):
    """One storage for two throttles (two workers): memory:// in-process, or Redis."""
    if request.param == "memory":
        return MemoryStorage(), "t"
    if not REDIS_URL:
        pytest.skip("TEST_REDIS_URL not set (no Redis on this machine)")
    return storage_from_string(REDIS_URL), f"test-{uuid.uuid4().hex[:8]}"


def test_workers_share_the_count_in_storage(shared):
    """The failure that finds the shared count over budget is a 429, on any worker."""
    storage, prefix = shared
    clock = Clock()
    counting = counters_for(storage).storage
    one, two = (throttle(storage, clock=clock, counting=counting, prefix=prefix) for _ in range(2))
    one.failed(environ("192.0.2.1"))
    one.failed(environ("192.0.2.1"))
    two.failed(environ("192.0.2.1"))  # the 3rd: still a 401, and worker two remembers
    with pytest.raises(RateLimitExceeded):
        two.check(environ("192.0.2.1"))
    one.check(environ("192.0.2.1"))  # worker one has not seen the count reach the budget …
    with pytest.raises(RateLimitExceeded):
        one.failed(environ("192.0.2.1"))  # … until its next failure from there
    with pytest.raises(RateLimitExceeded):
        one.check(environ("192.0.2.1"))


def test_counted_behind_a_trusted_proxy():
    t = throttle(clock=Clock(), trusted=LOCAL)
    for _ in range(3):
        t.failed({"REMOTE_ADDR": "127.0.0.1", "HTTP_X_FORWARDED_FOR": "203.0.113.7"})
    with pytest.raises(RateLimitExceeded):
        t.check({"REMOTE_ADDR": "127.0.0.1", "HTTP_X_FORWARDED_FOR": "203.0.113.7"})
    t.check({"REMOTE_ADDR": "127.0.0.1", "HTTP_X_FORWARDED_FOR": "203.0.113.8"})
    t.check(environ("127.0.0.1"))  # the proxy itself is not blocked


class Untouchable(dict):
    """A WSGI environ that fails if read: the check must not look at it."""

    def get(self, *args):
        raise AssertionError("the request was inspected")


def test_nothing_blocked_costs_no_lookup_and_zero_disables():
    t = throttle(clock=Clock())
    t.check(Untouchable())
    storage = BrokenStorage()
    off = throttle(storage, clock=Clock(), threshold=0)
    for _ in range(10):
        off.failed(environ("192.0.2.1"))
        off.check(environ("192.0.2.1"))
    assert storage.calls == 0


def test_blocked_addresses_are_bounded_and_forgotten_with_their_window():
    clock = Clock()
    t = throttle(clock=clock, threshold=1, max_blocked=2)
    for last in range(1, 4):
        t.failed(environ(f"192.0.2.{last}"))
    with pytest.raises(RateLimitExceeded):
        t.check(environ("192.0.2.2"))
    t.check(environ("192.0.2.3"))  # not remembered (full) …
    with pytest.raises(RateLimitExceeded):
        t.failed(environ("192.0.2.3"))  # … but its failures are still refused from the count
    clock.now += 60
    t.check(environ("192.0.2.1"))
    t.check(Untouchable())  # dropped at the first check of the new window: nothing to look up


@pytest.mark.parametrize("fail_open", [True, False], ids=["fail-open", "fail-closed"])
def test_storage_down_follows_the_limits_policy(fail_open):
    storage = BrokenStorage()
    t = throttle(storage, clock=Clock(), threshold=1, fail_open=fail_open)
    storage.down = True
    for _ in range(3):
        if fail_open:
            t.failed(environ("192.0.2.1"))  # not throttled: the caller answers 401
        else:
            with pytest.raises(ServiceUnavailable):
                t.failed(environ("192.0.2.1"))
    assert storage.calls == 1, "one failed call, then the outage is remembered"
    t.check(environ("192.0.2.1"))


@pytest.fixture
def guarded(tmp_path):
    """An app allowing 3 failed attempts per address and window, on a controlled clock."""
    app = create_app(
        {
            "DATABASE_URL": f"sqlite:///{tmp_path / 'throttle.db'}",
            "PACKET_AUTH_FAILURES_PER_WINDOW": "3",
            "PACKET_USAGE_FLUSH_INTERVAL": "0",
        }
    )
    with app.app_context():
        upgrade()
        store.create_account("acme", "standard", 25_000_000)
        app.key = store.create_key("acme", "good")[1]
        revoked = store.create_key("acme", "old")[1]
        store.revoke_key(revoked)
    app.revoked = revoked
    app.clock = app.extensions["packet"].auth_throttle.clock = Clock()
    return app


def test_every_kind_of_failure_counts_then_429_even_with_a_valid_key(guarded):
    client = guarded.test_client()
    failures = [
        client.get("/v1/models"),  # no key
        client.get("/v1/models", headers={"Authorization": "Bearer sk-not-ours"}),
        client.get("/health", headers={"Authorization": f"Bearer {guarded.revoked}"}),
    ]
    assert [r.status_code for r in failures] == [401, 401, 401]
    assert client.get("/health").status_code == 200  # no key: not an attempt

    unknown = "pk_live_" + "x" * 40
    for path in ("/v1/models", "/health"):
        for key in (unknown, guarded.key):
            response = client.get(path, headers={"Authorization": f"Bearer {key}"})
            assert response.status_code == 429
            error = response.get_json()["error"]
            assert error["code"] == "rate_limit_exceeded"
            assert "failed API key attempts" in error["message"]
            assert response.headers["Retry-After"] == "50"
            assert response.headers["retry-after-ms"] == "50000"
    other = {"REMOTE_ADDR": "192.0.2.1"}
    auth = {"Authorization": f"Bearer {guarded.key}"}
    assert client.get("/v1/models", headers=auth, environ_base=other).status_code == 200
    guarded.clock.now += 50  # the window has ended
    assert client.get("/v1/models", headers=auth).status_code == 200


def test_proxy_hops_give_logs_and_limits_the_same_client(make_app):
    """Behind one proxy (Heroku's router) ProxyFix makes the rightmost forwarded address the
    client: failed attempts are counted for it, and the log line names it."""
    app = make_app(PACKET_PROXY_HOPS="1", PACKET_AUTH_FAILURES_PER_WINDOW="2")
    client = app.test_client()
    router = {"REMOTE_ADDR": "10.1.2.3"}
    lines: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda record: lines.append(record.getMessage())  # type: ignore[method-assign]
    request_log = logging.getLogger("packet.request")
    request_log.disabled = False  # make_app's migration ran alembic's fileConfig
    request_log.addHandler(handler)

    def status(client_address: str) -> int:
        headers = {"X-Forwarded-For": f"6.6.6.6, {client_address}", "Authorization": "Bearer no"}
        with client.get("/v1/models", headers=headers, environ_base=router) as response:
            return response.status_code  # the log line is written as the response closes

    try:
        assert [status("203.0.113.7") for _ in range(3)] == [401, 401, 429]
        assert status("203.0.113.8") == 401
    finally:
        request_log.removeHandler(handler)
    assert sum("client=203.0.113.7 " in line for line in lines) == 3
    assert sum("client=203.0.113.8 " in line for line in lines) == 1
