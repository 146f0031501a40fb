"""/metrics' protection, the series' names, and the Grafana dashboard built on them."""

import json
import re
from pathlib import Path

from prometheus_client import Counter, Gauge, Histogram

from packet import metrics

DASHBOARD = Path(__file__).resolve().parents[2] / "docs" / "grafana-dashboard.json"


def series() -> set[str]:
    kinds = (Counter, Gauge, Histogram)
    return {m._name for m in vars(metrics).values() if isinstance(m, kinds)}


def test_metrics_token(make_app):
    client = make_app(PACKET_METRICS_TOKEN="s3cret").test_client()
    refused = client.get("/metrics")
    assert refused.status_code == 401 and refused.json["error"]["code"] == "invalid_api_key"
    assert client.get("/metrics", headers={"Authorization": "Bearer s3cre"}).status_code == 401
    answered = client.get("/metrics", headers={"Authorization": "Bearer s3cret"})
    assert answered.status_code == 200 and b"packet_requests_total" in answered.data


def test_metrics_on_their_own_bind_leave_the_public_port(make_app):
    client = make_app(PACKET_METRICS_BIND="127.0.0.1:9100").test_client()
    assert client.get("/metrics").status_code == 404


def test_the_dashboard_imports_and_shows_only_series_that_exist():
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["uid"] and dashboard["panels"]
    shown = set()
    for panel in dashboard["panels"]:
        for target in panel["targets"]:
            for name in re.findall(r"packet_[a-z_]+", target["expr"]):
                shown.add(re.sub(r"_(bucket|count|sum)$", "", name).removesuffix("_total"))
    known = {name.removesuffix("_total") for name in series()}
    assert shown - known == set()
    assert known - shown == set()  # every series is on the dashboard
