"""Discovery and routing without a network: a scripted client stands in for vLLM."""

from __future__ import annotations

import time
from collections import Counter

import gevent
import pytest

from packet.upstream.discovery import BLOCKED, DOWN, HEALTHY, LOADING, STARTING, Discovery
from packet.upstream.errors import Blocked, ConnectFailed, ModelNotServed, NoEndpoint


class FakeClient:
    """Answers probes from a table: base URL → ``"refused"``, ``"blocked"``, a /health status,
    or models."""

    def __init__(self, delay: float = 0.0) -> None:
        self.delay = delay
        self.answers: dict[str, object] = {}
        self.health: dict[str, int] = {}  # base URL → /health status, where not the answer's
        self.calls: Counter[str] = Counter()

    def serve(self, url: str, *models: str, max_model_len: int = 4096) -> None:
        self.answers[url] = [
            {
                "id": m,
                "object": "model",
                "created": 1,
                "owned_by": "vllm",
                "max_model_len": max_model_len,
            }
            for m in models
        ]

    def get(self, url: str, headers: dict[str, str], timeout: float) -> tuple[int, object]:
        self.calls[url] += 1
        if self.delay:
            gevent.sleep(self.delay)
        base = url.removesuffix("/health").removesuffix("/v1/models")
        answer = self.answers.get(base, "refused")
        if answer == "refused":
            raise ConnectFailed("connection failed: ConnectionError")
        if answer == "blocked":
            raise Blocked("address 169.254.169.254 is link-local (denied by default)")
        if url.endswith("/health") and base in self.health:
            return self.health[base], None
        if isinstance(answer, int):
            return answer, None
        if url.endswith("/health"):
            return 200, None
        return 200, {"object": "list", "data": answer}


def discovery(client: FakeClient, **overrides: float) -> Discovery:
    settings = {"interval": 10.0, "probe_timeout": 1.0, "cooloff": 15.0, "warmup_timeout": 1.0}
    settings.update(overrides)
    return Discovery(client, **settings)  # type: ignore[arg-type]


def triples(*urls: str) -> list[tuple[str, str | None, str, str]]:
    return [(url, None, url, f"pool-{i}") for i, url in enumerate(urls)]


# --- states and probes -------------------------------------------------------------------------


def test_probe_records_models_with_max_model_len_and_last_check() -> None:
    client = FakeClient()
    client.serve("http://a", "m1", max_model_len=8192)
    (state,) = discovery(client).states(triples("http://a"))
    assert state.status == HEALTHY
    assert state.models["m1"]["max_model_len"] == 8192
    assert 0 < time.monotonic() - state.checked_at < 1


def test_probe_states_loading_down_starting() -> None:
    client = FakeClient()
    client.answers.update({"http://loading": 503, "http://broken": 500})
    found = discovery(client).states(triples("http://loading", "http://broken", "http://new"))
    assert [s.status for s in found] == [LOADING, DOWN, STARTING]


@pytest.mark.parametrize("status", [404, 405])
def test_a_server_without_health_route_is_judged_by_its_models_and_not_asked_again(
    status: int,
) -> None:
    client = FakeClient()
    client.answers["http://llama"] = [{"id": "m"}]  # a sparse card: no created, no owner
    client.health["http://llama"] = status
    disc = discovery(client)
    (state,) = disc.states(triples("http://llama"))
    assert state.status == HEALTHY and not state.health_route
    card = state.models["m"]
    assert card["object"] == "model" and card["owned_by"] == "packet"
    assert isinstance(card["created"], int)
    disc.probe(state)
    assert client.calls["http://llama/health"] == 1 and client.calls["http://llama/v1/models"] == 2
    assert state.models["m"]["created"] == card["created"]  # stable across probes


def test_a_server_without_health_route_that_is_loading_is_loading() -> None:
    client = FakeClient()
    client.answers["http://ollama"] = 503
    client.health["http://ollama"] = 404
    (state,) = discovery(client).states(triples("http://ollama"))
    assert state.status == LOADING


def test_refusing_endpoint_is_starting_only_within_the_warmup_bound() -> None:
    client = FakeClient()
    disc = discovery(client, warmup_timeout=0.2)
    (state,) = disc.states(triples("http://new"))
    assert state.status == STARTING
    gevent.sleep(0.25)
    disc.probe(state)
    assert state.status == DOWN


def test_endpoint_that_was_healthy_and_refuses_is_down() -> None:
    client = FakeClient()
    client.serve("http://a", "m")
    disc = discovery(client)
    (state,) = disc.states(triples("http://a"))
    client.answers["http://a"] = "refused"
    disc.probe(state)
    assert state.status == DOWN
    assert state.models["m"]["max_model_len"] == 4096


def test_fresh_states_are_not_probed_on_every_request() -> None:
    client = FakeClient()
    client.serve("http://a", "m")
    disc = discovery(client)
    for _ in range(100):
        disc.route(disc.states(triples("http://a")), None)
    assert client.calls == {"http://a/health": 1, "http://a/v1/models": 1}


def test_concurrent_requests_share_one_probe_of_an_unseen_endpoint() -> None:
    client = FakeClient(delay=0.05)
    client.serve("http://a", "m")
    disc = discovery(client)
    jobs = [gevent.spawn(disc.states, triples("http://a")) for _ in range(20)]
    gevent.joinall(jobs, timeout=5)
    assert all(job.value[0].status == HEALTHY for job in jobs)
    assert client.calls == {"http://a/health": 1, "http://a/v1/models": 1}


def test_background_loop_refreshes_at_the_interval() -> None:
    client = FakeClient()
    client.serve("http://a", "m")
    disc = discovery(client, interval=0.05)
    disc.states(triples("http://a"))
    disc.start()
    try:
        gevent.sleep(0.32)
    finally:
        disc.stop()
    assert 4 <= client.calls["http://a/health"] <= 8


# --- routing -----------------------------------------------------------------------------------


def test_auto_uses_the_default_model_else_the_alphabetically_first() -> None:
    client = FakeClient()
    client.serve("http://a", "zeta")
    client.serve("http://b", "alpha")
    disc = discovery(client)
    states = disc.states(triples("http://a", "http://b"))
    assert disc.route(states, None).model == "alpha"
    assert disc.route(states, None, default_model="zeta").model == "zeta"
    assert disc.route(states, None, default_model="not-served").model == "alpha"


def test_named_model_goes_only_to_endpoints_serving_it() -> None:
    client = FakeClient()
    client.serve("http://a", "m1")
    client.serve("http://b", "m2")
    disc = discovery(client)
    states = disc.states(triples("http://a", "http://b"))
    assert {disc.route(states, "m2").state.url for _ in range(10)} == {"http://b"}


def test_fewest_in_flight_wins_and_ties_take_turns() -> None:
    client = FakeClient()
    for url in ("http://a", "http://b", "http://c"):
        client.serve(url, "m")
    disc = discovery(client)
    a, b, c = states = disc.states(triples("http://a", "http://b", "http://c"))
    picked = Counter(disc.route(states, "m").state.url for _ in range(30))
    assert picked == {"http://a": 10, "http://b": 10, "http://c": 10}
    a.inflight, b.inflight, c.inflight = 2, 1, 2
    assert disc.route(states, "m").state is b


def test_marked_down_endpoint_is_skipped_until_the_cooloff_ends() -> None:
    client = FakeClient()
    client.serve("http://a", "m")
    client.serve("http://b", "m")
    disc = discovery(client, cooloff=0.2)
    a, _ = states = disc.states(triples("http://a", "http://b"))
    disc.mark_down(a, "answered 503")
    assert {disc.route(states, "m").state.url for _ in range(6)} == {"http://b"}
    gevent.sleep(0.25)
    assert {disc.route(states, "m").state.url for _ in range(6)} == {"http://a", "http://b"}


def test_pick_excludes_endpoints_already_tried() -> None:
    client = FakeClient()
    client.serve("http://a", "m")
    client.serve("http://b", "m")
    disc = discovery(client)
    a, b = states = disc.states(triples("http://a", "http://b"))
    assert disc.pick(states, "m", exclude=[a]).state is b
    assert disc.pick(states, "m", exclude=[a, b]) is None


# --- errors and warm-up ------------------------------------------------------------------------


def test_unknown_model_lists_the_served_models() -> None:
    client = FakeClient()
    client.serve("http://a", "m1")
    client.serve("http://b", "m2")
    disc = discovery(client)
    states = disc.states(triples("http://a", "http://b"))
    with pytest.raises(ModelNotServed) as caught:
        disc.route(states, "nope")
    assert caught.value.available == ["m1", "m2"]


def test_a_known_model_whose_endpoint_is_down_is_unavailable_not_unknown() -> None:
    client = FakeClient()
    client.serve("http://a", "m1")
    client.serve("http://b", "m2")
    disc = discovery(client, cooloff=30, interval=60)
    a, _ = states = disc.states(triples("http://a", "http://b"))
    disc.mark_down(a, "refused")
    with pytest.raises(NoEndpoint) as caught:
        disc.route(states, "m1")
    assert 29 <= caught.value.retry_after <= 30


def test_no_endpoint_at_all() -> None:
    with pytest.raises(NoEndpoint) as caught:
        discovery(FakeClient()).route([], None)
    assert caught.value.retry_after is None


def test_all_down_fails_at_once_with_retry_after() -> None:
    client = FakeClient()
    client.serve("http://a", "m")
    disc = discovery(client, warmup_timeout=5)
    states = disc.states(triples("http://a"))
    client.answers["http://a"] = "refused"
    disc.probe(states[0])
    started = time.monotonic()
    with pytest.raises(NoEndpoint) as caught:
        disc.route(states, None)
    assert time.monotonic() - started < 0.5
    assert caught.value.retry_after == 10


def test_nothing_ready_rechecks_a_stale_state_once() -> None:
    client = FakeClient()
    client.serve("http://a", "m")
    disc = discovery(client)
    (state,) = states = disc.states(triples("http://a"))
    client.answers["http://a"] = "refused"
    disc.probe(state)
    assert state.status == DOWN
    client.serve("http://a", "m")
    state.checked_at -= 2  # older than the recheck age: a request may look again
    assert disc.route(states, None).model == "m"
    client.answers["http://a"] = "refused"
    disc.probe(state)
    with pytest.raises(NoEndpoint):
        disc.route(states, None)  # checked just now: no second probe
    assert client.calls["http://a/health"] == 4


def test_request_waits_for_a_loading_endpoint_that_becomes_ready() -> None:
    client = FakeClient()
    client.answers["http://a"] = 503
    disc = discovery(client, warmup_timeout=5)
    states = disc.states(triples("http://a"))
    gevent.spawn_later(0.6, client.serve, "http://a", "m")
    started = time.monotonic()
    assert disc.route(states, None).model == "m"
    assert 0.5 < time.monotonic() - started < 2


def test_request_waits_for_a_starting_endpoint_then_gives_up_at_the_bound() -> None:
    client = FakeClient()
    disc = discovery(client, warmup_timeout=0.8)
    states = disc.states(triples("http://a"))
    started = time.monotonic()
    with pytest.raises(NoEndpoint) as caught:
        disc.route(states, None)
    assert 0.7 < time.monotonic() - started < 1.5
    assert caught.value.retry_after == 10
    # at most one probe per poll interval while waiting, not a busy loop
    assert client.calls["http://a/health"] <= 4


def test_an_endpoint_the_policy_refuses_is_blocked_not_down_and_serves_nothing() -> None:
    client = FakeClient()
    client.serve("http://a", "m")
    disc = discovery(client)
    (state,) = disc.states(triples("http://a"))
    assert state.status == HEALTHY
    client.answers["http://a"] = "blocked"  # its name now resolves to a denied address
    disc.probe(state)
    assert (state.status, state.models) == (BLOCKED, {})
    assert "link-local" in (state.error or "")
    assert disc.served_models([state]) == {}
    with pytest.raises(Blocked):
        disc.route([state], None)


def test_blocked_and_down_endpoints_together_are_no_endpoint() -> None:
    client = FakeClient()
    client.answers["http://blocked"] = "blocked"
    client.answers["http://broken"] = 500
    disc = discovery(client)
    states = disc.states(triples("http://blocked", "http://broken"))
    assert [s.status for s in states] == [BLOCKED, DOWN]
    with pytest.raises(NoEndpoint):
        disc.route(states, None)
