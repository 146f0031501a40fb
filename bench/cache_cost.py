"""The cost of a response-cache hit: gateway worker CPU per request, hit vs miss vs bare.

One gunicorn gevent worker of the gateway (priced, limits in memory or Redis), the bare
passthrough (``bench/bare.py``) under the same gunicorn config, and the simulated vLLM. Four
series, measured in rotating rounds so a busy machine slows each alike; each figure is the
median of its rounds:

    no cache    the gateway, no header: the request as every other (the cache off)
    miss        ``X-Packet-Cache: use`` with a new body each time: looked up, sent, stored
    hit         ``X-Packet-Cache: use`` with one body: answered from the cache
    bare        the bare passthrough, the floor of the stack

    python -m bench.cache_cost [--rounds 8] [--requests 300] [--concurrency 16] [--redis-url URL]
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import sys
import tempfile
import uuid
from pathlib import Path
from typing import Any

from bench.metering_cost import TIERS, round_cpu

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]
from processes import Database, Launcher, Process, clean_env, free_port, migrated_app  # noqa: E402

PROMPT = "Say hello to the benchmark, in sixteen words."


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--redis-url", default=None, help="limits and cache (default: memory)")
    args = parser.parse_args()
    rounds, n = max(1, min(args.rounds, 50)), max(1, min(args.requests, 2000))
    folder = Path(tempfile.mkdtemp(prefix="packet-bench-"))
    db_url = f"sqlite:///{folder / 'bench.db'}"
    database = Database("bench", db_url, migrated_app(db_url))
    launcher = Launcher(folder)
    env = {"PACKET_TIERS": TIERS, "PACKET_PRICE_INPUT": "1", "PACKET_PRICE_OUTPUT": "2"}
    if args.redis_url:
        env |= {"REDIS_URL": args.redis_url, "PACKET_LIMIT_KEY_PREFIX": f"b{uuid.uuid4().hex[:6]}"}
    bare = None
    try:
        sim = launcher.sim()
        gateway = launcher.gateway(database, [sim.url], 1, 200, **env)
        _, key = database.account(tier="bench", balance_micros=10**12)
        port = free_port()
        bare = Process(
            [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "bench.bare:create_app()"],
            clean_env(PORT=str(port), HOST="127.0.0.1", WEB_CONCURRENCY="1", BARE_UPSTREAM=sim.url),
            folder / "bare.log",
        )
        bare.url = f"http://127.0.0.1:{port}"
        bare.wait()
        fresh = itertools.count()
        one_body = {"messages": [{"role": "user", "content": PROMPT}], "max_tokens": 16}

        def same(_: int) -> dict[str, Any]:
            return one_body

        def new(_: int) -> dict[str, Any]:
            text = f"{PROMPT} {next(fresh)}"
            return {"messages": [{"role": "user", "content": text}], "max_tokens": 16}

        auth = {"Authorization": f"Bearer {key}"}
        use = auth | {"X-Packet-Cache": "use"}
        chat = "/v1/chat/completions"
        series = {
            "no cache": (gateway.url + chat, auth, same, gateway.proc.pid),
            "miss": (gateway.url + chat, use, new, gateway.proc.pid),
            "hit": (gateway.url + chat, use, same, gateway.proc.pid),
            "bare": (bare.url + chat, {}, same, bare.proc.pid),
        }
        for url, headers, body, pid in series.values():  # warm up; stores the hits' entry
            round_cpu(url, headers, body, pid, 100, args.concurrency)
        figures: dict[str, list[float]] = {label: [] for label in series}
        labels = list(series)
        for number in range(rounds):
            shift = number % len(labels)  # each series goes first as often as the others
            for label in labels[shift:] + labels[:shift]:
                url, headers, body, pid = series[label]
                figures[label].append(round_cpu(url, headers, body, pid, n, args.concurrency))
        medians = {label: statistics.median(values) for label, values in figures.items()}
        storage = "redis" if args.redis_url else "memory"
        print(
            f"limits and cache in {storage}, {rounds} rounds × {n} requests, c={args.concurrency}"
        )
        for label, value in medians.items():
            print(f"{label:>9}: {value:.3f} ms worker CPU per request (median)")
        print(f"hit / no cache = {medians['hit'] / medians['no cache']:.2f}")
        print(f"hit / miss     = {medians['hit'] / medians['miss']:.2f}")
        print(f"hit / bare     = {medians['hit'] / medians['bare']:.2f}")
        print(f"miss / no cache = {medians['miss'] / medians['no cache']:.2f}")
    finally:
        if bare is not None:
            bare.stop()
        launcher.close()


if __name__ == "__main__":
    main()
