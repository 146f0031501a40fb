"""The request path against real processes: body limits, bad JSON, upstream keys."""

import pytest
import requests
from helpers import post

pytestmark = pytest.mark.live


@pytest.fixture(scope="module")
def live_env():
    return {"PACKET_MAX_BODY_BYTES": "2000"}


@pytest.fixture(scope="module")
def locked(module_launcher):
    """A simulated vLLM that wants its own API key."""
    return module_launcher.sim("--api-key", "upstream-secret")


def test_oversized_body_is_413_envelope(live):
    database, gateway = live.database, live.gateway
    _, key = database.account()
    response = post(
        gateway, key, b'{"messages": [{"role": "user", "content": "' + b"x" * 5000 + b'"}]}'
    )
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "request_too_large"


@pytest.mark.parametrize("body", [b"{not json", b"[1, 2]", b"", b'"text"'])
def test_bad_json_is_400_envelope(live, body):
    database, sim, gateway = live.database, live.sim, live.gateway
    _, key = database.account()
    before = len(sim.requests())
    response = post(gateway, key, body)
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_request"
    assert len(sim.requests()) == before


def test_endpoint_key_is_sent_instead_of_the_clients(live, locked):
    database, gateway = live.database, live.gateway
    _, key = database.account(endpoints=(locked.url,), upstream_key="upstream-secret")
    response = post(
        gateway, key, b'{"messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}'
    )
    assert response.status_code == 200, response.text
    seen = locked.request(response.headers["X-Request-ID"])
    assert seen["authorization"] == "Bearer upstream-secret"
    assert key not in str(locked.requests())


def test_wrong_endpoint_key_never_leaks_and_is_not_a_client_auth_error(live, locked):
    database, gateway = live.database, live.gateway
    _, key = database.account(endpoints=(locked.url,), upstream_key="wrong")
    response = post(gateway, key, b'{"messages": [{"role": "user", "content": "hi"}]}')
    assert response.status_code in (502, 503)
    text = response.text
    assert "wrong" not in text and locked.url not in text and "127.0.0.1" not in text


def test_unknown_route_and_method_in_envelope(live):
    gateway = live.gateway
    assert (
        requests.get(f"{gateway.url}/v1/embeddingz", timeout=5).json()["error"]["code"]
        == "not_found"
    )
    response = requests.delete(f"{gateway.url}/v1/models", timeout=5)
    assert response.status_code == 405 and response.json()["error"]["code"] == "method_not_allowed"
