"""Metrics, Server-Timing and the JSON log line, against gunicorn with two workers."""

import json
import re
import signal
import time
from pathlib import Path

import pytest
import requests
from processes import free_port

pytestmark = pytest.mark.live

TOKEN = "metrics-token-for-tests"
PROMPT = "zebra quokka narwhal"  # never to be seen in a log
CHAT = "/v1/chat/completions"


def samples(text: str, name: str, **labels: str) -> list[tuple[dict[str, str], float]]:
    """The samples of ``name`` whose labels include ``labels``."""
    found = []
    for line in text.splitlines():
        match = re.match(rf"^{name}(?:\{{(.*)\}})? (\S+)$", line)
        if not match:
            continue
        have = dict(re.findall(r'(\w+)="([^"]*)"', match.group(1) or ""))
        if all(have.get(k) == v for k, v in labels.items()):
            found.append((have, float(match.group(2))))
    return found


def total(text: str, name: str, **labels: str) -> float:
    return sum(value for _, value in samples(text, name, **labels))


@pytest.fixture(scope="module")
def module_sim(module_launcher):
    """A simulated vLLM taking 10 ms per token, so upstream time is measurable."""
    return module_launcher.sim("--token-delay", "0.01")


@pytest.fixture(scope="module")
def gateway(module_launcher, module_sim, _databases, tmp_path_factory):
    temp = tmp_path_factory.mktemp("gateway-temp")
    gateway = module_launcher.gateway(
        _databases["sqlite"],
        upstreams=[module_sim.url],
        workers=2,
        LOG_FORMAT="json",
        PACKET_METRICS_TOKEN=TOKEN,
        TMPDIR=str(temp),
    )
    gateway.temp = temp
    return gateway


@pytest.fixture(scope="module")
def traffic(gateway, _databases, module_sim):
    """Known traffic: 7 chat answers, 3 chat streams, 2 completions, 2 bad keys on chat, one
    unknown path; returns the key, the request ids, and the tokens the clients were billed."""
    _, key = _databases["sqlite"].account()
    client = gateway.client(key)
    prompt = completion = 0
    ids = []
    for i in range(7):
        raw = client.chat.completions.with_raw_response.create(
            model="auto",
            messages=[{"role": "user", "content": PROMPT}],
            max_tokens=3,
            extra_headers={"X-Request-ID": f"obs-chat-{i}"},
        )
        answer = raw.parse()
        prompt, completion = (
            prompt + answer.usage.prompt_tokens,
            completion + answer.usage.completion_tokens,
        )
        ids.append(f"obs-chat-{i}")
    for i in range(3):
        stream = client.chat.completions.create(
            model="auto",
            messages=[{"role": "user", "content": PROMPT}],
            max_tokens=4,
            stream=True,
            stream_options={"include_usage": True},
            extra_headers={"X-Request-ID": f"obs-stream-{i}"},
        )
        usage = [chunk.usage for chunk in stream if chunk.usage is not None][-1]
        prompt, completion = prompt + usage.prompt_tokens, completion + usage.completion_tokens
        ids.append(f"obs-stream-{i}")
    for i in range(2):
        answer = client.completions.create(
            model="auto",
            prompt=PROMPT,
            max_tokens=2,
            extra_headers={"X-Request-ID": f"obs-cmp-{i}"},
        )
        prompt, completion = (
            prompt + answer.usage.prompt_tokens,
            completion + answer.usage.completion_tokens,
        )
        ids.append(f"obs-cmp-{i}")
    for i in range(2):
        bad = requests.post(
            f"{gateway.url}{CHAT}",
            json={"model": "auto", "messages": [{"role": "user", "content": PROMPT}]},
            headers={"Authorization": f"Bearer {key[:-4]}XXXX", "X-Request-ID": f"obs-401-{i}"},
            timeout=10,
        )
        assert bad.status_code == 401
        ids.append(f"obs-401-{i}")
    assert requests.get(f"{gateway.url}/v1/nothing-here", timeout=10).status_code == 404
    time.sleep(0.3)  # the last stream's record is written as its response closes
    return key, ids, prompt, completion


def scrape(gateway) -> str:
    response = requests.get(
        f"{gateway.url}/metrics", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10
    )
    assert response.status_code == 200
    return response.text


def test_exact_counts_per_route_model_and_status_over_two_workers(gateway, traffic, module_sim):
    _, _, prompt, completion = traffic
    model = module_sim.requests()[-1]["model"]
    text = scrape(gateway)
    count = lambda **labels: total(text, "packet_requests_total", **labels)  # noqa: E731
    assert count(route=CHAT, model=model, status="200", code="") == 10
    assert count(route=CHAT, model="", status="401", code="invalid_api_key") == 2
    assert count(route="/v1/completions", model=model, status="200") == 2
    assert count(route="unmatched", status="404", code="not_found") == 1
    # one route label per route: the 401s share the 200s' template
    routes = {labels["route"] for labels, _ in samples(text, "packet_requests_total")}
    assert "chat.completions" not in routes and not any("nothing-here" in r for r in routes)
    assert total(text, "packet_tokens_total", model=model, kind="prompt") == prompt
    assert total(text, "packet_tokens_total", model=model, kind="completion") == completion
    # histograms: counts match, buckets rise to +Inf, sums are positive and sensible
    latency = "packet_request_duration_seconds"
    assert total(text, f"{latency}_count", route=CHAT, model=model) == 10
    assert total(text, "packet_time_to_first_token_seconds_count", route=CHAT, model=model) == 3
    assert total(text, "packet_gateway_overhead_seconds_count", route=CHAT) == 12
    buckets = [v for _, v in samples(text, f"{latency}_bucket", route=CHAT, model=model)]
    assert buckets == sorted(buckets) and buckets[-1] == 10
    overhead = total(text, "packet_gateway_overhead_seconds_sum", route=CHAT)
    spent = total(text, f"{latency}_sum", route=CHAT)
    assert 0 < overhead < spent
    ttft = total(text, "packet_time_to_first_token_seconds_sum", route=CHAT, model=model)
    assert 0 < ttft < spent
    assert total(text, "packet_streams_in_flight") == 0
    assert total(text, "packet_endpoint_requests_in_flight", endpoint="pool-1") == 0
    states = samples(text, "packet_endpoint_state", endpoint="pool-1")
    assert [value for _, value in states] == [1.0]
    assert module_sim.url.split("//")[1] not in text  # no URL in any label


def test_server_timing_splits_the_time_between_gateway_and_upstream(gateway, traffic):
    key = traffic[0]
    started = time.perf_counter()
    response = requests.post(
        f"{gateway.url}{CHAT}",
        json={"model": "auto", "messages": [{"role": "user", "content": "a b"}], "max_tokens": 3},
        headers={"Authorization": f"Bearer {key}"},
        timeout=10,
    )
    elapsed = (time.perf_counter() - started) * 1000
    assert response.status_code == 200
    timing = dict(re.findall(r"(\w+);dur=([\d.]+)", response.headers["Server-Timing"]))
    gateway_ms, upstream_ms = float(timing["gateway"]), float(timing["upstream"])
    assert upstream_ms >= 25  # three tokens at 10 ms each
    assert 0 < gateway_ms < upstream_ms
    assert elapsed - 20 <= gateway_ms + upstream_ms <= elapsed


def test_metrics_need_their_token(gateway):
    assert requests.get(f"{gateway.url}/metrics", timeout=10).status_code == 401
    wrong = requests.get(
        f"{gateway.url}/metrics", headers={"Authorization": "Bearer nope"}, timeout=10
    )
    assert wrong.status_code == 401 and wrong.json()["error"]["code"] == "invalid_api_key"
    assert "packet_requests_total" in scrape(gateway)


def test_one_json_line_per_request_without_key_or_prompt(gateway, traffic):
    key, ids, _, _ = traffic
    log = gateway.output()
    lines = []
    for raw in log.splitlines():
        try:
            entry = json.loads(raw)
        except ValueError:
            continue
        if entry.get("name") == "packet.request":
            lines.append(entry)
    by_id = {}
    for entry in lines:
        by_id.setdefault(entry["request_id"], []).append(entry)
    for request_id in ids:
        assert len(by_id[request_id]) == 1, request_id  # one line, not two
    stream = by_id["obs-stream-0"][0]
    assert stream["route"] == CHAT and stream["stream"] is True and stream["status"] == 200
    assert stream["ttft_ms"] > 0 and stream["latency_ms"] >= stream["ttft_ms"]
    assert stream["completion_tokens"] == 4 and stream["endpoint"] == "pool-1"
    assert stream["key_prefix"] == key[:12] and stream["account_id"] > 0
    assert stream["client"] == "127.0.0.1" and "overhead_ms" in stream
    assert by_id["obs-401-0"][0]["error"] == "invalid_api_key"
    assert key not in log and key[12:] not in log and key[:-4] not in log
    assert "zebra" not in log and "quokka" not in log


def test_metrics_on_their_own_bind_and_the_folder_goes_at_stop(
    module_launcher, module_sim, _databases, tmp_path
):
    """PACKET_METRICS_BIND: gunicorn's master serves the workers' sum there, the public port
    has no /metrics; and the multiprocess folder gunicorn made is gone once it stops."""
    port = free_port()
    gateway = module_launcher.gateway(
        _databases["sqlite"],
        upstreams=[module_sim.url],
        workers=2,
        TMPDIR=str(tmp_path),
        PACKET_METRICS_BIND=f"127.0.0.1:{port}",
    )
    assert requests.get(f"{gateway.url}/metrics", timeout=10).status_code == 404
    for _ in range(4):
        requests.get(f"{gateway.url}/health", timeout=10)
    time.sleep(0.1)
    text = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
    assert total(text, "packet_requests_total", route="/health", status="200") >= 4
    assert total(text, "packet_requests_total", route="unmatched", status="404") == 1
    assert [p.name[:15] for p in Path(tmp_path).iterdir()] == ["packet-metrics-"]
    gateway.stop(signal.SIGINT)  # gunicorn's quick stop: on_exit runs all the same
    assert list(Path(tmp_path).iterdir()) == []
