"""/metrics and the per-request log line, against gunicorn with two workers."""

import re

import pytest
import requests

pytestmark = pytest.mark.live


def counter(text: str, name: str, **labels: str) -> float:
    """Sum of a Prometheus counter's samples whose labels include ``labels``."""
    total = 0.0
    for line in text.splitlines():
        match = re.match(rf"^{name}\{{(.*)\}} (\S+)$", line)
        if match and all(f'{k}="{v}"' in match.group(1) for k, v in labels.items()):
            total += float(match.group(2))
    return total


def test_metrics_add_up_over_workers_and_the_log_never_shows_a_key(launcher, _databases):
    database = _databases["sqlite"]
    sim = launcher.sim()
    gateway = launcher.gateway(database, upstreams=[sim.url], workers=2)
    _, key = database.account()
    client = gateway.client(key)
    for _ in range(12):
        client.chat.completions.create(
            model="auto", messages=[{"role": "user", "content": "a b"}], max_tokens=3
        )
    metrics = requests.get(f"{gateway.url}/metrics", timeout=5).text
    assert counter(metrics, "packet_requests_total", route="chat.completions", status="200") == 12
    assert counter(metrics, "packet_tokens_total", kind="completion") == 36
    assert counter(metrics, "packet_tokens_total", kind="prompt") == 12 * 5
    log = gateway.output()
    assert log.count("route=chat.completions") == 12
    assert key not in log and key[12:] not in log
