"""How the gateway's cost grows with the work (``make bench-scale``): one curve per dimension.

    keys        keys in the database (1, 10k, 100k): CPU per request with the key cached, and
                the cold lookup (a key not cached: one indexed query) p50/p99
    endpoints   endpoints of one account (1, 8, 64): CPU per request, and routing alone
    messages    chat messages in one request (1, 50, 500): CPU per request (validation)
    body        one message's size (1 KB, 100 KB, 1 MB): CPU per request (reading, parsing)
    usage       usage rows in the database (PostgreSQL; 10k, 1M, 10M): the ``usage`` report
                of one account over 30 days, p50/p99
    streams     streams open at once on one worker (10, 1,000, 5,000; the real gunicorn server,
                through bench.run): RSS per stream, TTFT p99, every stream answered

Requests go through the real app (Flask's test client, so no server or load generator shares
the CPU figure) to the simulated vLLM on 127.0.0.1; CPU is this process's, per request, the
median of a few rounds. The absolute figures include the test client's own work, the same at
every point: the curves are read as ratios to their first point. Each curve is classified as
flat (within 10 % of its first point), logarithmic or linear in its x, printed as a table and
drawn as a PNG under bench/results/ (``--docs`` copies the PNGs to docs/).

    python -m bench.scale [--database-url postgresql://…] [--curves keys,endpoints,…]
                          [--usage-rows 10000,1000000,10000000] [--docs]
"""

from __future__ import annotations

from gevent import monkey

monkey.patch_all()  # as in a gunicorn gevent worker: the meter's flush runs in the background

import argparse
import re
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import text

from packet import create_app, store
from packet.extensions import db
from packet.upstream.discovery import HEALTHY, EndpointState

from .curves import Curve
from .procs import private_database

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]
from processes import Launcher, migrated_app

RESULTS = ROOT / "bench" / "results"
DOCS = ROOT / "docs"
TIERS = '{"bench": {"rpm": 100000000, "tpm": 1000000000}}'
ROUNDS, PER_ROUND = 5, 200


@dataclass
class Context:
    app: Flask
    client: FlaskClient
    sim_url: str
    postgres: bool


def cpu_per_request(
    client: FlaskClient, key: str, body: bytes, path: str = "/v1/chat/completions"
) -> float:
    """Median CPU µs per request of this process over a few rounds, after a warm-up."""
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}

    def one() -> None:
        response = client.post(path, data=body, headers=headers)
        assert response.status_code == 200, response.get_data(as_text=True)[:300]
        response.close()

    for _ in range(20):
        one()
    rounds = []
    for _ in range(ROUNDS):
        started = time.process_time()
        for _ in range(PER_ROUND):
            one()
        rounds.append((time.process_time() - started) / PER_ROUND * 1e6)
    return statistics.median(rounds)


def chat_body(messages: int = 1, size: int = 16) -> bytes:
    content = ("word " * (size // 5 + 1))[:size]
    roles = ("user", "assistant")
    listed = [{"role": roles[i % 2], "content": content} for i in range(messages)]
    return orjson.dumps({"messages": listed, "max_tokens": 2})


def new_account(ctx: Context, endpoints: int = 0) -> tuple[str, str]:
    """An account on the huge bench tier with one key (and ``endpoints`` endpoints, all the
    simulator, told apart by their upstream keys)."""
    name = f"scale-{uuid.uuid4().hex[:8]}"
    with ctx.app.app_context():
        store.create_account(name, "bench", 10**12)
        for i in range(endpoints):
            store.add_endpoint(name, ctx.sim_url, f"endpoint-{i}")
        return name, store.create_key(name)[1]


def add_keys(ctx: Context, name: str, count: int) -> None:
    """``count`` more keys for ``name`` (random digests: nobody holds them), in bulk."""
    if count <= 0:
        return
    with ctx.app.app_context():
        account_id = store.get_account(name).id
        rows = [
            {"account_id": account_id, "digest": secrets.token_hex(32), "prefix": "pk_live_scal"}
            for _ in range(count)
        ]
        for start in range(0, count, 10_000):
            db.session.execute(
                text(
                    "INSERT INTO api_keys (account_id, digest, prefix, created_at, budget_period, "
                    "spent_micros) VALUES (:account_id, :digest, :prefix, CURRENT_TIMESTAMP, "
                    "'month', 0)"
                ),
                rows[start : start + 10_000],
            )
        db.session.commit()


def curve_keys(ctx: Context, sizes: list[int]) -> Curve:
    curve = Curve("keys", "keys in the database", "CPU µs/request (key cached)")
    name, key = new_account(ctx)
    have = 1
    for size in sizes:
        add_keys(ctx, name, size - have)
        have = max(have, size)
        cpu = cpu_per_request(ctx.client, key, chat_body())
        with ctx.app.app_context():
            query = text("SELECT digest FROM api_keys ORDER BY random() LIMIT 300")
            digests = list(db.session.execute(query).scalars())
            timings = []
            for digest in (digests * 300)[:300]:  # each a lookup the key cache did not answer
                started = time.perf_counter()
                store.find_active_key(digest)
                timings.append((time.perf_counter() - started) * 1000)
        p50, p99 = statistics.median(timings), statistics.quantiles(timings, n=100)[98]
        curve.points.append((size, cpu))
        curve.notes[size] = f"cold lookup p50 {p50:.2f} ms, p99 {p99:.2f} ms"
    return curve


def curve_endpoints(ctx: Context, counts: list[int]) -> Curve:
    curve = Curve("endpoints", "endpoints of the account", "CPU µs/request")
    rt = ctx.app.extensions["packet"]
    for count in counts:
        _, key = new_account(ctx, endpoints=count)
        cpu = cpu_per_request(ctx.client, key, chat_body())
        states = [EndpointState(ctx.sim_url, f"k{i}", f"e{i}", HEALTHY) for i in range(count)]
        for state in states:
            state.models = {"m": {"id": "m"}}
        routing = {}
        for model in ("m", None):  # the model named, and "auto"
            started, calls = time.process_time(), 20_000
            for _ in range(calls):
                rt.discovery.pick(states, model)
            routing[model] = (time.process_time() - started) / calls * 1e6
        curve.points.append((count, cpu))
        curve.notes[count] = (
            f"routing {routing['m']:.1f} µs named, {routing[None]:.1f} µs auto "
            f"({routing[None] / cpu:.1%} of a request)"
        )
    return curve


def curve_messages(ctx: Context, counts: list[int]) -> Curve:
    curve = Curve("messages", "messages in the request", "CPU µs/request")
    _, key = new_account(ctx)
    for count in counts:
        curve.points.append((count, cpu_per_request(ctx.client, key, chat_body(messages=count))))
    return curve


def curve_body(ctx: Context, sizes: list[int]) -> Curve:
    curve = Curve("body", "bytes of message content", "CPU µs/request")
    _, key = new_account(ctx)
    for size in sizes:
        curve.points.append((size, cpu_per_request(ctx.client, key, chat_body(size=size))))
    return curve


def curve_usage(ctx: Context, sizes: list[int]) -> Curve:
    """Usage rows spread over 60 days and 10 accounts; one account's 30-day report."""
    curve = Curve("usage", "usage rows in the database", "usage report ms (p50)")
    accounts = [new_account(ctx)[0] for _ in range(10)]
    with ctx.app.app_context():
        ids = [store.get_account(a).id for a in accounts]
    have = 0
    for size in sizes:
        with ctx.app.app_context():
            db.session.execute(
                text(
                    "INSERT INTO usage_records (request_id, account_id, model, route, stream, "
                    "status, prompt_tokens, completion_tokens, total_tokens, cost_micros, "
                    "latency_ms, client_disconnected, usage_source, created_at) "
                    "SELECT 'r' || g, (CAST(:ids AS integer[]))[1 + g % 10], 'model-' || (g % 3), "
                    "'chat.completions', false, 200, 10, 20, 30, 5, 10, false, 'upstream', "
                    "now() - (g % 86400) * interval '1 minute' "
                    "FROM generate_series(CAST(:start AS bigint), CAST(:stop AS bigint)) AS g"
                ).bindparams(ids=ids),
                {"start": have + 1, "stop": size},
            )
            db.session.commit()
            # What the usage flush keeps in the same transaction as the rows: the daily roll-up.
            db.session.execute(text("DELETE FROM usage_daily"))
            db.session.execute(
                text(
                    "INSERT INTO usage_daily (account_id, day, model, key_id, requests, "
                    "prompt_tokens, completion_tokens, total_tokens, cost_micros, cache_hits, "
                    "saved_tokens) SELECT account_id, CAST(created_at AT TIME ZONE 'UTC' AS date), "
                    "coalesce(model, ''), coalesce(key_id, 0), count(*), sum(prompt_tokens), "
                    "sum(completion_tokens), sum(total_tokens), sum(cost_micros), 0, 0 "
                    "FROM usage_records GROUP BY 1, 2, 3, 4"
                )
            )
            db.session.commit()
            db.session.execute(text("ANALYZE usage_records"))
            db.session.execute(text("ANALYZE usage_daily"))
            db.session.commit()
        have = size
        since = datetime.now(UTC) - timedelta(days=30)
        timings = []
        with ctx.app.app_context():
            for _ in range(7):
                started = time.perf_counter()
                store.usage_rows(accounts[0], since=since)
                timings.append((time.perf_counter() - started) * 1000)
        curve.points.append((size, statistics.median(timings)))
        curve.notes[size] = f"p99 {max(timings):.1f} ms"
    return curve


def curve_streams(ctx: Context, counts: list[int]) -> Curve:
    """Streams open at once on one gunicorn gevent worker (``bench.run``'s many-streams phase,
    the real server): memory per stream, time to first token, every stream answered."""
    curve = Curve("streams", "streams open at once on one worker", "RSS KiB per stream")
    for count in counts:
        made = subprocess.run(
            [
                sys.executable,
                "-m",
                "bench.run",
                "--quick",
                "--phases",
                "many_streams",
                "--many-streams",
                str(count),
            ],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=900,
            check=True,
        )
        found = re.search(r"results: (\S+)\.\{txt,json\}", made.stdout)
        assert found, made.stdout[-2000:]
        result = orjson.loads(Path(f"{found.group(1)}.json").read_bytes())
        gateway = result["results"]["many_streams"]["gateway"]
        curve.points.append((count, (gateway.get("rss_per_stream") or 0) / 1024))
        curve.notes[count] = (
            f"answered {gateway['ok']}/{count}, errors {gateway['errors']}, "
            f"TTFT p99 {gateway['ttft']['p99']:.0f} ms"
        )
    return curve


def plot(curve: Curve, folder: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(5, 3.2), dpi=120)
    xs, ys = zip(*curve.points, strict=True)
    axes.plot(xs, ys, marker="o")
    axes.set_xscale("log")
    axes.set_xlabel(curve.x_label)
    axes.set_ylabel(curve.y_label)
    axes.set_ylim(bottom=0)
    axes.set_title(f"{curve.name}: {curve.shape()}")
    axes.grid(True, alpha=0.3)
    figure.tight_layout()
    path = folder / f"scale-{curve.name}.png"
    figure.savefig(path)
    plt.close(figure)
    return path


def _numbers(text_value: str) -> list[int]:
    return [int(v) for v in text_value.split(",") if v]


CURVES: dict[str, Callable[[Context, list[int]], Curve]] = {
    "keys": curve_keys,
    "endpoints": curve_endpoints,
    "messages": curve_messages,
    "body": curve_body,
    "usage": curve_usage,
    "streams": curve_streams,
}


def _run(ctx: Context, name: str, sizes: list[int], docs: bool) -> str:
    """One curve: measured, printed, drawn."""
    if name == "usage" and not ctx.postgres:
        text_value = "usage: skipped (needs --database-url postgresql://…)"
    else:
        curve = CURVES[name](ctx, sizes)
        text_value = curve.table()
        png = plot(curve, RESULTS)
        if docs:
            DOCS.mkdir(exist_ok=True)
            shutil.copy(png, DOCS / png.name)
    print(text_value, flush=True)
    return text_value


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database-url", help="PostgreSQL for the keys and usage curves")
    parser.add_argument("--curves", default=",".join(CURVES))
    parser.add_argument("--keys", default="1,10000,100000")
    parser.add_argument("--endpoints", default="1,8,64")
    parser.add_argument("--messages", default="1,50,500")
    parser.add_argument("--body", default="1000,100000,1000000")
    parser.add_argument("--usage-rows", default="10000,1000000,10000000")
    parser.add_argument("--streams", default="10,1000,5000")
    parser.add_argument("--docs", action="store_true", help="copy the PNGs to docs/")
    args = parser.parse_args(argv)
    sizes: dict[str, Any] = {
        "keys": _numbers(args.keys),
        "endpoints": _numbers(args.endpoints),
        "messages": _numbers(args.messages),
        "body": _numbers(args.body),
        "usage": _numbers(args.usage_rows),
        "streams": _numbers(args.streams),
    }
    folder = Path(tempfile.mkdtemp(prefix="packet-scale-"))
    launcher = Launcher(folder)
    RESULTS.mkdir(exist_ok=True)
    report = []
    try:
        with private_database(args.database_url, folder) as url:
            migrated_app(url)
            sim = launcher.sim("--token-delay", "0", "--max-model-len", "1000000")
            app = create_app(
                {
                    "DATABASE_URL": url,
                    "PACKET_UPSTREAMS": sim.url,
                    "PACKET_TIERS": TIERS,
                    "PACKET_PRICE_INPUT": "0.50",
                    "PACKET_PRICE_OUTPUT": "1.50",
                    "LOG_LEVEL": "WARNING",
                }
            )
            ctx = Context(app, app.test_client(), sim.url, bool(args.database_url))
            try:
                for name in args.curves.split(","):
                    report.append(_run(ctx, name, sizes[name], args.docs))
            finally:
                app.extensions["packet"].close()  # the last usage rows, before the database goes
                with app.app_context():
                    db.engine.dispose()
    finally:
        launcher.close()
        shutil.rmtree(folder, ignore_errors=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    (RESULTS / f"scale-{stamp}.txt").write_text("\n\n".join(report) + "\n")
    print(f"results: {RESULTS}/scale-{stamp}.txt and scale-*.png")


if __name__ == "__main__":
    main()
