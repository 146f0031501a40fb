"""While the database is unreachable: 503 with Retry-After in the envelope (never a 500), and keys
already seen keep working where no money is at risk (live, on a real PostgreSQL stopped and
started: tests/live/test_faults.py)."""

from __future__ import annotations

import pytest
from helpers import Clock
from sqlalchemy.exc import OperationalError

from packet import auth, store
from packet.auth import KeyCache

DOWN = OperationalError("SELECT 1", {}, ConnectionRefusedError("connection refused"))


def _down(*_args, **_kwargs):
    raise DOWN


@pytest.fixture
def key(app):
    with app.app_context():
        store.create_account("acme", "free", 1_000_000)
        _, key = store.create_key("acme")
    return key


def test_an_unreachable_database_is_503_with_retry_after(client, key, monkeypatch):
    monkeypatch.setattr(store, "find_active_key", _down)
    response = client.get("/v1/models", headers={"Authorization": f"Bearer {key}"})
    assert response.status_code == 503
    assert response.headers["Retry-After"] == "5"
    error = response.get_json()["error"]
    assert error["code"] == "service_unavailable" and "database" in error["message"]


def test_a_database_error_that_is_not_an_outage_is_still_a_500_envelope(client, key, monkeypatch):
    from sqlalchemy.exc import DataError

    def refuse(*_args):
        raise DataError("SELECT", {}, ValueError("bad"))

    monkeypatch.setattr(store, "find_active_key", refuse)
    response = client.get("/v1/models", headers={"Authorization": f"Bearer {key}"})
    assert response.status_code == 500 and response.get_json()["error"]["code"] == "internal_error"


def test_a_cached_key_outlives_its_ttl_while_the_database_is_down(app, key, monkeypatch):
    clock = Clock(1000.0)
    monkeypatch.setattr(auth.time, "monotonic", clock)
    cache = KeyCache(ttl=5, stale=300)
    with app.app_context():
        principal = cache.lookup(key)
        assert principal is not None
        monkeypatch.setattr(store, "find_active_key", _down)
        clock.now += 60  # past the TTL: the database is asked, and is down
        assert cache.lookup(key) == principal
        clock.now += 300  # past the stale bound: the outage shows
        with pytest.raises(OperationalError):
            cache.lookup(key)
        with pytest.raises(OperationalError):  # a key never seen is not guessed
            cache.lookup("pk_live_" + "x" * 40)


def test_without_a_stale_bound_the_outage_shows_at_once(app, key, monkeypatch):
    clock = Clock(1000.0)
    monkeypatch.setattr(auth.time, "monotonic", clock)
    cache = KeyCache(ttl=5)
    with app.app_context():
        cache.lookup(key)
        monkeypatch.setattr(store, "find_active_key", _down)
        clock.now += 6
        with pytest.raises(OperationalError):
            cache.lookup(key)
