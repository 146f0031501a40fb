"""The endpoint policy against real processes: the gateway under gunicorn with an endpoint
already in the database that points at a simulated vLLM on 127.0.0.1.

With loopback denied, nothing reaches the simulator, requests get the policy error and
/v1/models shows nothing of what the simulator serves; with the default policy the same
endpoint works."""

from __future__ import annotations

import pytest
from helpers import chat, get

pytestmark = pytest.mark.live

MODEL = "internal/secret-model"
FAST = {"PACKET_DISCOVERY_INTERVAL": "0.5", "PACKET_CONNECT_TIMEOUT": "1"}


def test_a_denied_endpoint_gets_the_policy_error_and_leaks_nothing(launcher, database) -> None:
    sim = launcher.sim("--model", MODEL)
    _, key = database.account(endpoints=(sim.url,))
    before = sim.probes()
    gateway = launcher.gateway(database, PACKET_ENDPOINT_DENY="127.0.0.0/8,::1", **FAST)

    for response in (chat(gateway, key, MODEL), chat(gateway, key, MODEL, stream=True)):
        assert response.status_code == 502
        error = response.json()["error"]
        assert error["code"] == "endpoint_blocked" and error["type"] == "server_error"
        assert "not allowed by the gateway's endpoint policy" in error["message"]
        assert "127.0.0.1" not in response.text

    models = get(gateway, key, "/v1/models")
    assert models.status_code == 200 and models.json() == {"object": "list", "data": []}
    assert MODEL not in models.text
    one = get(gateway, key, f"/v1/models/{MODEL}")
    assert one.status_code == 404 and "Available models: none" in one.json()["error"]["message"]

    health = get(gateway, key, "/health")
    assert health.status_code == 503
    (endpoint,) = health.json()["endpoints"]
    assert endpoint["status"] == "blocked" and endpoint["models"] == []

    assert sim.probes() == before  # the gateway never connected to it
    assert sim.requests() == []
    assert "blocked by the endpoint policy" in gateway.output()


def test_the_same_endpoint_works_under_the_default_policy(launcher, database) -> None:
    sim = launcher.sim("--model", MODEL)
    _, key = database.account(endpoints=(sim.url,))
    gateway = launcher.gateway(database, **FAST)
    response = chat(gateway, key, MODEL)
    assert response.status_code == 200, response.text
    assert response.json()["model"] == MODEL
    assert [m["id"] for m in get(gateway, key, "/v1/models").json()["data"]] == [MODEL]
    assert get(gateway, key, "/health").json()["endpoints"][0]["status"] == "healthy"
