"""Discovery, routing, failover and warm-up against real processes: several simulated vLLM
servers and the gateway under gunicorn with the gevent worker. Intervals are short so every
test stays within a few seconds; every load loop is bounded in count and time."""

from __future__ import annotations

import signal
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from helpers import chat, get, until

from packet import store

pytestmark = pytest.mark.live

FAST = {
    "PACKET_DISCOVERY_INTERVAL": "0.5",
    "PACKET_UNHEALTHY_COOLOFF": "1",
    "PACKET_WARMUP_TIMEOUT": "5",
    "PACKET_CONNECT_TIMEOUT": "1",
    "PACKET_AUTH_CACHE_TTL": "1",
    "PACKET_TIERS": '{"standard": {"rpm": 1000000, "tpm": 1000000000}}',
}
HINT = "No running inference endpoint found"


def start_sims(launcher, *models: str, extra: tuple[str, ...] = ()) -> list:
    """One simulated vLLM per model id, started in parallel."""
    sims = [launcher.sim("--model", model, *extra, wait=False) for model in models]
    for sim in sims:
        sim.wait()
    return sims


def served_by(*sims) -> list[int]:
    return [len(sim.requests()) for sim in sims]


def load(gateway, key: str, clients: int, per_client: int, budget: float) -> Counter:
    """``clients`` threads each sending up to ``per_client`` requests within ``budget`` s."""
    deadline = time.monotonic() + budget

    def run() -> Counter:
        seen: Counter = Counter()
        with requests.Session() as session:
            for _ in range(per_client):
                if time.monotonic() > deadline:
                    break
                try:
                    r = session.post(
                        f"{gateway.url}/v1/chat/completions",
                        headers={"Authorization": f"Bearer {key}"},
                        json={"messages": [{"role": "user", "content": "hi"}], "max_tokens": 4},
                        timeout=10,
                    )
                    seen[r.status_code] += 1
                except requests.RequestException as exc:
                    seen[type(exc).__name__] += 1
        return seen

    with ThreadPoolExecutor(clients) as pool:
        return sum((f.result() for f in [pool.submit(run) for _ in range(clients)]), Counter())


# --- replicas, failover, recovery --------------------------------------------------------------


def test_replicas_share_load_survive_a_kill_and_rejoin(launcher, sqlite_database) -> None:
    a, b = start_sims(launcher, "m", "m", extra=("--token-delay", "0.005"))
    _, key = sqlite_database.account(endpoints=(a.url, b.url))
    gateway = launcher.gateway(sqlite_database, **FAST)

    assert all(chat(gateway, key).status_code == 200 for _ in range(20))
    assert served_by(a, b) == [10, 10]  # nothing in flight: ties take turns

    with ThreadPoolExecutor(1) as pool:
        running = pool.submit(load, gateway, key, 6, 100, 4.0)
        time.sleep(0.5)
        a.stop(signal.SIGKILL)
        outcome = running.result()
    assert set(outcome) == {200}, outcome  # no failed request for the caller
    assert sum(outcome.values()) >= 200

    before = len(b.requests())
    assert all(chat(gateway, key).status_code == 200 for _ in range(10))
    assert len(b.requests()) == before + 10  # the dead one is skipped

    revived = launcher.sim("--model", "m", port=a.port)
    assert until(lambda: chat(gateway, key).status_code == 200 and len(revived.requests()) > 0)


def test_502_or_503_fails_over_and_cools_off(launcher, sqlite_database) -> None:
    sick = launcher.sim("--model", "m", "--fail-status", "503", wait=False)
    (well,) = start_sims(launcher, "m")
    sick.wait()
    _, key = sqlite_database.account(endpoints=(sick.url, well.url))
    _, lone_key = sqlite_database.account(endpoints=(sick.url,))
    gateway = launcher.gateway(sqlite_database, **FAST)

    assert [chat(gateway, key).status_code for _ in range(10)] == [200] * 10
    assert len(well.requests()) == 10

    # Alone, the 503 is the answer (502 upstream_error); then the endpoint cools off (503).
    # The first account's request above already put it in cool-off; wait for the end of it.
    def cooled_down() -> bool:
        health = requests.get(
            f"{gateway.url}/health", headers={"Authorization": f"Bearer {lone_key}"}, timeout=5
        ).json()
        return health["endpoints"][0]["status"] != "cooling_off"

    until(cooled_down, "the endpoint's cool-off to end", timeout=5)
    first = chat(gateway, lone_key)
    assert first.status_code == 502 and first.json()["error"]["code"] == "upstream_error"
    second = chat(gateway, lone_key)
    assert second.status_code == 503
    assert second.json()["error"]["code"] == "service_unavailable"
    assert second.headers["Retry-After"] == "1"


def test_no_retry_after_the_first_byte(launcher, sqlite_database) -> None:
    a, b = start_sims(launcher, "m", "m")
    _, key = sqlite_database.account(endpoints=(a.url, b.url))
    gateway = launcher.gateway(sqlite_database, **FAST)
    response = chat(gateway, key, stream=True, max_tokens=8, x_sim_fail_after=2)
    assert response.status_code == 200
    assert '"error"' in response.text and response.text.rstrip().endswith("data: [DONE]")
    assert sum(served_by(a, b)) == 1


# --- models --------------------------------------------------------------------------------------


def test_two_endpoints_serving_different_models(launcher, sqlite_database) -> None:
    zeta = launcher.sim("--model", "org/zeta", "--max-model-len", "8192", wait=False)
    (alpha,) = start_sims(launcher, "org/alpha")
    zeta.wait()
    _, key = sqlite_database.account(endpoints=(zeta.url, alpha.url))
    _, keyed_default = sqlite_database.account(
        endpoints=(zeta.url, alpha.url), default_model="org/zeta"
    )
    gateway = launcher.gateway(sqlite_database, **FAST)

    auto = chat(gateway, key, "auto")
    assert auto.status_code == 200 and auto.json()["model"] == "org/alpha"  # first by id
    assert chat(gateway, key).json()["model"] == "org/alpha"  # omitted = auto
    assert chat(gateway, keyed_default).json()["model"] == "org/zeta"  # the account's default
    named = chat(gateway, key, "org/zeta")
    assert named.status_code == 200 and named.json()["model"] == "org/zeta"
    assert [r["model"] for r in zeta.requests()] == ["org/zeta", "org/zeta"]
    assert [r["model"] for r in alpha.requests()] == ["org/alpha", "org/alpha"]

    unknown = chat(gateway, key, "org/nope")
    assert unknown.status_code == 404
    error = unknown.json()["error"]
    assert error["code"] == "model_not_found" and error["param"] == "model"
    assert "org/alpha" in error["message"] and "org/zeta" in error["message"]

    listed = get(gateway, key, "/v1/models").json()
    assert listed["object"] == "list"
    cards = {card["id"]: card for card in listed["data"]}
    assert sorted(cards) == ["org/alpha", "org/zeta"]
    assert cards["org/zeta"]["max_model_len"] == 8192
    assert cards["org/alpha"]["owned_by"] == "vllm"
    one = get(gateway, key, "/v1/models/org/zeta")
    assert one.status_code == 200 and one.json()["id"] == "org/zeta"
    missing = get(gateway, key, "/v1/models/org/nope")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "model_not_found"


# --- warm-up -------------------------------------------------------------------------------------


def test_a_loading_replica_is_waited_for(launcher, sqlite_database) -> None:
    loading = launcher.sim("--model", "m", "--loading-seconds", "2", health=503)
    _, key = sqlite_database.account(endpoints=(loading.url,))
    gateway = launcher.gateway(sqlite_database, **FAST)
    started = time.monotonic()
    response = chat(gateway, key)
    assert response.status_code == 200, response.text
    assert time.monotonic() - started < 5


def test_a_replica_refusing_connections_after_start_is_waited_for(
    launcher, sqlite_database
) -> None:
    gateway = launcher.gateway(sqlite_database, **FAST)
    starting = launcher.sim("--model", "m", "--listen-delay", "1.5", wait=False)
    _, key = sqlite_database.account(endpoints=(starting.url,))
    response = chat(gateway, key)
    assert response.status_code == 200, response.text


def test_a_replica_that_never_gets_ready_gives_503_within_the_bound(
    launcher, sqlite_database
) -> None:
    stuck = launcher.sim("--model", "m", "--loading-seconds", "600", health=503)
    _, key = sqlite_database.account(endpoints=(stuck.url,))
    gateway = launcher.gateway(sqlite_database, **(FAST | {"PACKET_WARMUP_TIMEOUT": "1.5"}))
    started = time.monotonic()
    response = chat(gateway, key)
    elapsed = time.monotonic() - started
    assert response.status_code == 503
    assert 1.4 < elapsed < 4
    assert response.json()["error"]["code"] == "service_unavailable"
    assert HINT in response.json()["error"]["message"]
    assert int(response.headers["Retry-After"]) >= 1
    health = get(gateway, key, "/health")
    assert health.status_code == 503
    assert health.json()["endpoints"][0]["status"] == "loading"


# --- errors, isolation, health -------------------------------------------------------------------


def test_all_endpoints_down_or_none_is_503(launcher, sqlite_database) -> None:
    a, b = start_sims(launcher, "m", "m")
    _, key = sqlite_database.account(endpoints=(a.url, b.url))
    _, nothing = sqlite_database.account()  # no endpoint and no shared pool
    gateway = launcher.gateway(sqlite_database, **FAST)
    assert chat(gateway, key).status_code == 200
    a.stop(signal.SIGKILL)
    b.stop(signal.SIGKILL)
    for caller in (key, nothing):
        started = time.monotonic()
        response = chat(gateway, caller)
        assert response.status_code == 503
        assert time.monotonic() - started < 3  # known dead: no warm-up wait
        error = response.json()["error"]
        assert error["code"] == "service_unavailable"
        assert HINT in error["message"] and "port 8000" in error["message"]
    assert get(gateway, key, "/v1/models").json()["data"] == []


def test_accounts_are_isolated(launcher, database) -> None:
    a, b, pool = start_sims(launcher, "a/model", "b/model", "pool/model")
    _, key_a = database.account(endpoints=(a.url,))
    _, key_b = database.account(endpoints=(b.url,))
    _, key_pool = database.account()
    gateway = launcher.gateway(database, upstreams=[pool.url], **FAST)

    for _ in range(3):
        assert chat(gateway, key_a).json()["model"] == "a/model"
        assert chat(gateway, key_pool).json()["model"] == "pool/model"
    refused = chat(gateway, key_a, "b/model")
    assert refused.status_code == 404
    assert "a/model" in refused.json()["error"]["message"]
    assert "b/model" not in refused.json()["error"]["message"].split("Available models:")[1]
    assert chat(gateway, key_b, "b/model").status_code == 200
    assert served_by(a, b, pool) == [3, 1, 3]

    assert [m["id"] for m in get(gateway, key_a, "/v1/models").json()["data"]] == ["a/model"]
    assert get(gateway, key_a, "/v1/models/pool/model").status_code == 404

    health = get(gateway, key_a, "/health")
    assert health.status_code == 200
    body = health.json()
    assert body["ready"] is True
    assert body["endpoints"] == [
        {
            "endpoint": a.url,
            "status": "healthy",
            "models": ["a/model"],
            "checked_seconds_ago": body["endpoints"][0]["checked_seconds_ago"],
            "inflight": 0,
        }
    ]
    pooled = get(gateway, key_pool, "/health").json()
    assert [e["endpoint"] for e in pooled["endpoints"]] == ["shared pool #1"]
    assert pool.url not in get(gateway, key_pool, "/health").text
    assert "endpoints" not in requests.get(f"{gateway.url}/health", timeout=5).json()


def test_added_and_removed_endpoints_reach_a_running_gateway(launcher, sqlite_database) -> None:
    a, b = start_sims(launcher, "m", "m")
    name, key = sqlite_database.account(endpoints=(a.url,))
    gateway = launcher.gateway(sqlite_database, **FAST)  # PACKET_AUTH_CACHE_TTL=1
    assert chat(gateway, key).status_code == 200

    added = time.monotonic()
    sqlite_database.run(store.add_endpoint, name, b.url)
    assert until(lambda: chat(gateway, key).ok and len(b.requests()) > 0, timeout=5)
    assert time.monotonic() - added < 1 + 1.5

    (first,) = [e for e in sqlite_database.run(store.list_endpoints, name) if e.base_url == a.url]
    removed = time.monotonic()
    sqlite_database.run(store.remove_endpoint, name, first.id)

    def a_left_out() -> bool:
        before = len(a.requests())
        return all(chat(gateway, key).ok for _ in range(6)) and len(a.requests()) == before

    until(a_left_out, "the removal to reach the gateway", timeout=5)
    assert time.monotonic() - removed < 1 + 1.5
    before = len(a.requests())
    assert all(chat(gateway, key).ok for _ in range(6))
    assert len(a.requests()) == before


def test_discovery_does_not_probe_on_every_request(launcher, sqlite_database) -> None:
    sim = launcher.sim("--model", "m")
    _, key = sqlite_database.account(endpoints=(sim.url,))
    gateway = launcher.gateway(sqlite_database, PACKET_DISCOVERY_INTERVAL="30")
    baseline = sim.probes()
    with ThreadPoolExecutor(10) as pool:  # ten first requests at once share one probe
        assert all(r.ok for r in pool.map(lambda _: chat(gateway, key), range(10)))
    assert all(chat(gateway, key).ok for _ in range(40))
    probes = sim.probes()
    assert probes["health"] - baseline["health"] == 1
    assert probes["models"] - baseline["models"] == 1
