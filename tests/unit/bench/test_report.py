"""The benchmark table (bench/report.py) from fabricated results: the LiteLLM column and the
gateway ÷ LiteLLM ratios appear only when a run has a ``litellm`` target."""

from __future__ import annotations

import re
from typing import Any

from bench.report import render
from bench.run import QUICK

META = {
    "date": "2026-11-25 04:00 UTC",
    "cpu": "Test CPU",
    "cores": 2,
    "python": "3.11.7",
    "pinned": True,
    "loadavg": 1.0,
    "loadavg_end": 1.5,
    "litellm": "9.9.9",
}
# Per target: requests/s, latency p50 ms, CPU ms per request, CPU µs per token, RSS per stream.
FIGURES = {
    "direct": (1000.0, 1.0, None, None, None),
    "bare": (500.0, 2.0, 1.5, 40.0, 40 * 1024),
    "gateway": (400.0, 3.0, 2.0, 50.0, 60 * 1024),
    "litellm": (100.0, 11.0, 8.0, 200.0, 240 * 1024),
}
STREAMS, TOKENS = 10, 100


def _result(target: str, stream: bool) -> dict[str, Any]:
    rps, p50, cpu_ms, token_us, rss = FIGURES[target]
    ok = STREAMS if stream else 1000
    result: dict[str, Any] = {
        "ok": ok,
        "errors": 0,
        "rps": rps,
        "latency": {"p50": p50, "p90": p50, "p99": p50 * 2, "max": p50 * 3},
        "ttft": {"p50": p50, "p90": p50, "p99": p50 * 2, "max": p50 * 3} if stream else None,
        "tokens": ok * TOKENS if stream else 0,
    }
    if cpu_ms is not None:
        per_token = ok * TOKENS * token_us / 1e6 if stream else 0.0
        result["cpu"] = ok * cpu_ms / 1e3 + per_token
    if rss is not None:
        result["rss_per_stream"] = rss
    return result


def _results(targets: list[str]) -> dict[str, dict[str, Any]]:
    phases = {f"nonstream_c{c}": False for c in (1, 16, 64)}
    phases |= {"stream_0ms": True, "stream_20ms": True, "many_streams": True}
    return {phase: {t: _result(t, stream) for t in targets} for phase, stream in phases.items()}


def _rows(table: str) -> dict[str, list[list[str]]]:
    """Cells of every figure row by label (labels repeat across sections)."""
    rows: dict[str, list[list[str]]] = {}
    for line in table.splitlines():
        if line.startswith("  "):
            label, *cells = re.split(r"\s{2,}", line.strip())
            rows.setdefault(label, []).append(cells)
    return rows


def test_litellm_column_and_gateway_over_litellm_ratios():
    table = render(_results(list(FIGURES)), META, QUICK)
    header = next(line for line in table.splitlines() if line.startswith("figure"))
    assert header.split() == [
        "figure",
        *("direct", "bare", "gateway", "litellm"),
        *("gw/bare", "gw/litellm", "target"),
    ]
    assert "LiteLLM proxy 9.9.9" in table
    rows = _rows(table)
    # requests/s: direct, bare, gateway, litellm, gw/bare, gw/litellm (gateway 4× faster)
    assert rows["requests/s"][0] == ["1000", "500", "400", "100", "0.80×", "4.00×"]
    # overhead over direct at p50: gateway 2 ms, LiteLLM 10 ms
    overhead = rows["latency overhead p50 / p99 ms"][0]
    assert overhead[1:6] == ["1.00 / 2.00", "2.00 / 4.00", "10.00 / 20.00", "2.00×", "0.20×"]
    assert rows["TTFT overhead p50 / p99 ms"][0][5] == "0.20×"
    cpu = rows["CPU per request ms"][0]
    assert cpu[1:6] == ["1.500", "2.000", "8.000", "1.33×", "0.25×"]
    # per token: net of each target's own c=16 per-request CPU
    token = rows["CPU per token µs"][0]
    assert token[1:6] == ["40.0", "50.0", "200.0", "1.25×", "0.25×"]
    assert rows["RSS per stream KiB"][0][1:6] == ["40.0", "60.0", "240.0", "1.50×", "0.25×"]
    assert rows["completed / errors"][0][:4] == ["10 / 0"] * 4


def test_without_litellm_the_table_has_no_peer_column():
    table = render(_results(["direct", "bare", "gateway"]), META, QUICK)
    assert "litellm" not in table.lower()
    header = next(line for line in table.splitlines() if line.startswith("figure"))
    assert header.split() == ["figure", "direct", "bare", "gateway", "gw/bare", "target"]
    assert _rows(table)["CPU per request ms"][0] == [
        "—",
        "1.500",
        "2.000",
        "1.33×",
        "≤ 1.25× bare",
        "MISS",
    ]


def test_cache_hit_rows_compare_a_hit_with_a_miss_and_bare():
    results = _results(["direct", "bare", "gateway"])
    results["cache_hit"] = {t: _result(t, False) for t in ("direct", "bare", "gateway")}
    results["cache_hit"]["gateway"]["cpu"] = 1000 * 0.8 / 1e3  # 0.8 ms a hit, 2 ms a miss
    table = render(results, META, QUICK)
    assert "response cache hits" in table
    rows = _rows(table)
    assert rows["CPU per request ms"][-1] == ["—", "1.500", "0.800", "0.53×", "≤ 0.5× miss", "ok"]
    assert rows["hit ÷ miss CPU per request"][0] == ["—", "—", "0.40×", "≤ 0.5×", "ok"]
