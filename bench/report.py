"""The side-by-side table, from a run's results (pure: no processes, no clock).

With a ``litellm`` target in the results (``make bench-litellm``) the table gains a LiteLLM
column and a gateway ÷ LiteLLM ratio; without one it is the three-target table.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

Row = tuple[str, ...]
PEER = "litellm"
_NONE = "—"


def _pair(a: float | None, b: float | None, digits: int = 2) -> str:
    if a is None or b is None:
        return _NONE
    return f"{a:.{digits}f} / {b:.{digits}f}"


def _q(result: dict[str, Any], metric: str, q: str) -> float | None:
    summary = result.get(metric)
    return summary[q] if summary else None


def _ratio(a: float | None, b: float | None) -> str:
    return f"{a / b:.2f}×" if a is not None and b else _NONE


def _minus(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else a - b


def _verdict(ok: bool | None) -> str:
    return _NONE if ok is None else ("ok" if ok else "MISS")


def cpu_per_request(result: dict[str, Any]) -> float | None:
    """Worker CPU seconds per answered request."""
    return result["cpu"] / result["ok"] if "cpu" in result and result["ok"] else None


def cpu_per_token(result: dict[str, Any], per_request: float | None) -> float | None:
    """Worker CPU seconds per relayed token, net of the target's non-streaming request cost."""
    if "cpu" not in result or not result["tokens"] or per_request is None:
        return None
    return (result["cpu"] - result["ok"] * per_request) / result["tokens"]


class Table:
    """Rows of figures; one method per kind of row. The LiteLLM column and its ratio appear
    only when the results hold a ``litellm`` target."""

    def __init__(self, results: dict[str, dict[str, Any]]) -> None:
        self.results = results
        self.peer = any(PEER in r for r in results.values())
        self.targets = ("direct", "bare", "gateway", *((PEER,) if self.peer else ()))
        self.proxies = self.targets[1:]
        self.header: Row = (
            "figure",
            *self.targets,
            "gw/bare",
            *(("gw/litellm",) if self.peer else ()),
            "target",
            "",
        )
        self.rows: list[Row] = []

    def section(self, title: str) -> None:
        self.rows.append((title, *("" for _ in self.header[1:])))

    def add(
        self,
        label: str,
        cells: Mapping[str, str],
        ratios: Mapping[str, float | None] | None = None,
        target: str = "",
        verdict: str = "",
    ) -> None:
        """One row: a cell per target (— where absent), then the gateway's figure in ``ratios``
        over bare's (and over LiteLLM's), the target and the verdict."""
        peers = ("bare", PEER) if self.peer else ("bare",)
        shown = [_ratio(ratios["gateway"], ratios.get(p)) if ratios else "" for p in peers]
        figures = [cells.get(t, _NONE) for t in self.targets]
        self.rows.append((f"  {label}", *figures, *shown, target, verdict))

    def latency(self, phase: str, metric: str, label: str, target_p50_ms: float | None) -> None:
        """pXX of ``metric`` per target, then the overhead over direct."""
        r = self.results[phase]
        self.add(
            f"{label} p50 / p99 ms",
            {t: _pair(_q(r[t], metric, "p50"), _q(r[t], metric, "p99")) for t in self.targets},
        )
        over = {
            q: {t: _minus(_q(r[t], metric, q), _q(r["direct"], metric, q)) for t in self.proxies}
            for q in ("p50", "p99")
        }
        gw50 = over["p50"]["gateway"]
        self.add(
            f"{label} overhead p50 / p99 ms",
            {t: _pair(over["p50"][t], over["p99"][t]) for t in self.proxies},
            over["p50"],
            f"p50 ≤ {target_p50_ms:g} ms" if target_p50_ms else "",
            _verdict(gw50 <= target_p50_ms if gw50 is not None else None) if target_p50_ms else "",
        )

    def cpu(
        self,
        label: str,
        values: dict[str, float | None],
        scale: float,
        unit: str,
        target: float | None,
    ) -> None:
        """A CPU-time row per proxy and the gateway's ratios, against ``target`` (× bare)."""
        shown = {
            t: _NONE if v is None else f"{v * scale:.{3 if scale < 1e6 else 1}f}"
            for t, v in values.items()
        }
        bare, gateway = values["bare"], values["gateway"]
        ok = gateway / bare <= target if bare and gateway is not None and target else None
        self.add(
            f"{label} {unit}",
            shown,
            values,
            f"≤ {target:g}× bare" if target else "",
            _verdict(ok),
        )


NONSTREAM_ROUTES = {
    "embeddings": "embeddings (4 inputs)",
    "rerank": "rerank (3 documents)",
    "tokenize": "tokenize",
}
STREAM_ROUTES = {
    "responses_stream": "Responses API stream",
    "messages_stream": "Anthropic Messages stream",
}


def render(results: dict[str, dict[str, Any]], meta: dict[str, Any], plan: Any) -> str:
    """The whole report as text: a heading, the table, and how to read it (missing phases
    are left out)."""
    t = Table(results)
    for c in (1, 16, 64):
        if f"nonstream_c{c}" in results:
            _nonstream(t, c)
    per_request = {
        x: cpu_per_request(results["nonstream_c16"][x]) if "nonstream_c16" in results else None
        for x in t.proxies
    }
    if "stream_0ms" in results:
        _stream(
            t,
            "stream_0ms",
            f"streaming, 0 ms/token (c=1, {plan.stream_tokens} tokens)",
            per_request,
        )
    for name, title in NONSTREAM_ROUTES.items():
        if name in results:
            r = results[name]
            t.section(f"{title}, concurrency 16")
            t.add("requests/s", {x: f"{r[x]['rps']:.0f}" for x in t.targets}, None)
            t.cpu("CPU per request", {x: cpu_per_request(r[x]) for x in t.proxies}, 1e3, "ms", 1.25)
    for name, title in STREAM_ROUTES.items():
        if name in results:
            _stream(t, name, f"{title}, 0 ms/token (c=1, {plan.stream_tokens} tokens)", per_request)
    if "cache_hit" in results:
        _cache_hit(t)
    if "stream_ttft" in results:
        _stream(t, "stream_ttft", "streaming TTFT, 20 ms/token (c=1, 8 tokens)", None)
    if "stream_20ms" in results:
        title = (
            f"streaming, 20 ms/token (c={plan.slow_streams_c}, {plan.slow_stream_tokens} tokens)"
        )
        _stream(t, "stream_20ms", title, per_request)
    if "many_streams" in results:
        _many(t, plan)
    pinned = "gateway/bare/litellm" if t.peer else "gateway/bare"
    heading = (
        f"Packet gateway benchmark — {meta['date']} — {meta['cpu']}, {meta['cores']} cores, "
        f"Python {meta['python']}\n"
        + (f"{pinned} pinned to core 0, sim + load to core 1" if meta["pinned"] else "unpinned")
        + f"; load average {meta['loadavg']:.2f} → {meta.get('loadavg_end', 0):.2f}\n"
        + f"profile {meta.get('profile', 'dev')} — gateway: {meta.get('database', 'sqlite')}, "
        + f"limits in {meta.get('limits', 'memory')}"
        + (f"; medians of {meta['runs']} runs" if meta.get("runs", 1) > 1 else "")
    )
    if t.peer:
        heading += f"\nLiteLLM proxy {meta.get('litellm', '?')}: uvicorn, one process"
    notes = (
        "CPU = user+system time of the gunicorn worker over the phase (from /proc), per answered "
        "request; per token = (stream CPU − streams × that target's c=16 per-request CPU) / "
        "tokens. Overheads are target minus direct at the same percentile."
    )
    if t.peer:
        notes += (
            "\nLiteLLM's CPU is that of its uvicorn process, which serves the requests itself. "
            "gw/litellm = gateway ÷ LiteLLM: below 1× the gateway costs less CPU, memory or "
            "overhead; for requests/s above 1× it is faster."
        )
    return "\n".join([heading, "", _format(t.header, t.rows), "", notes])


def _nonstream(t: Table, c: int) -> None:
    phase = f"nonstream_c{c}"
    r = t.results[phase]
    t.section(f"non-streaming, concurrency {c}")
    rps = {x: r[x]["rps"] for x in t.targets}
    t.add("requests/s", {x: f"{v:.0f}" for x, v in rps.items()}, rps)
    t.latency(phase, "latency", "latency", 1.0 if c == 1 else None)
    t.cpu("CPU per request", {x: cpu_per_request(r[x]) for x in t.proxies}, 1e3, "ms", 1.25)


def _cache_hit(t: Table) -> None:
    """Response cache hits (one body, ``X-Packet-Cache: use``) against the gateway's misses
    (the c=16 row: the same body without the header) and against bare passing it on."""
    r = t.results["cache_hit"]
    t.section("response cache hits (X-Packet-Cache: use), non-streaming, concurrency 16")
    rps = {x: r[x]["rps"] for x in t.targets}
    t.add("requests/s", {x: f"{v:.0f}" for x, v in rps.items()}, rps)
    t.latency("cache_hit", "latency", "latency", None)
    values = {x: cpu_per_request(r[x]) for x in t.proxies}
    hit = values["gateway"]
    misses = t.results.get("nonstream_c16")
    miss = cpu_per_request(misses["gateway"]) if misses else None
    shown = {x: _NONE if v is None else f"{v * 1e3:.3f}" for x, v in values.items()}
    ok = hit / miss <= 0.5 if hit is not None and miss else None
    t.add("CPU per request ms", shown, values, "≤ 0.5× miss", _verdict(ok))
    t.add(
        "hit ÷ miss CPU per request",
        {"gateway": _ratio(hit, miss)},
        None,
        "≤ 0.5×",
        _verdict(ok),
    )


def _stream(t: Table, phase: str, title: str, per_request: dict[str, float | None] | None) -> None:
    """TTFT and total time; CPU per token unless ``per_request`` is None (too few tokens)."""
    r = t.results[phase]
    t.section(title)
    t.latency(phase, "ttft", "TTFT", 1.5 if phase == "stream_ttft" else None)
    t.add(
        "total p50 / p99 ms",
        {x: _pair(_q(r[x], "latency", "p50"), _q(r[x], "latency", "p99"), 1) for x in t.targets},
    )
    if per_request is None:
        return
    t.cpu(
        "CPU per token",
        {x: cpu_per_token(r[x], per_request[x]) for x in t.proxies},
        1e6,
        "µs",
        1.5,
    )


def _many(t: Table, plan: Any) -> None:
    r = t.results["many_streams"]
    n = plan.many_streams
    t.section(
        f"{n:,} concurrent slow streams ({plan.many_tokens} tokens × "
        f"{plan.many_delay * 1000:.0f} ms, opened over {plan.many_ramp:g} s)"
    )
    t.add(
        "completed / errors",
        {x: f"{r[x]['ok']} / {r[x]['errors']}" for x in t.targets},
        None,
        f"{n} / 0",
        _verdict(r["gateway"]["ok"] == n and r["gateway"]["errors"] == 0),
    )
    t.add(
        "total p50 / p99 s",
        {x: _pair(_s(r[x], "p50"), _s(r[x], "p99"), 3) for x in t.targets},
    )
    direct99 = _s(r["direct"], "p99")
    slower = {x: _pct(_s(r[x], "p99"), direct99) for x in t.proxies}
    t.add(
        "total p99 vs direct",
        {x: _NONE if v is None else f"{v:+.2f}%" for x, v in slower.items()},
        None,
        "≤ +2%",
        _verdict(slower["gateway"] <= 2 if slower["gateway"] is not None else None),
    )
    rss = {x: r[x].get("rss_per_stream") for x in t.proxies}
    t.add(
        "RSS per stream KiB",
        {x: _NONE if v is None else f"{v / 1024:.1f}" for x, v in rss.items()},
        rss,
        "≤ 64 KiB",
        _verdict(rss["gateway"] / 1024 <= 64 if rss["gateway"] is not None else None),
    )


def _s(result: dict[str, Any], q: str) -> float | None:
    value = _q(result, "latency", q)
    return None if value is None else value / 1000


def _pct(value: float | None, base: float | None) -> float | None:
    return None if value is None or not base else (value / base - 1) * 100


def _format(header: Row, rows: list[Row]) -> str:
    """Fixed-width columns; section titles span the row."""
    figures = [header, *(row for row in rows if any(row[1:]))]
    widths = [max(len(row[i]) for row in figures) for i in range(len(header))]
    lines = []
    for row in [header, *rows]:
        if not any(row[1:]):
            lines.append(row[0])
            continue
        cells = [row[0].ljust(widths[0])] + [
            c.rjust(w) for c, w in zip(row[1:], widths[1:], strict=True)
        ]
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines)
