"""The cost of metering on the hot path: gateway worker CPU per request, three ways.

    zero price     no reservation round trip; usage rows still buffered and batched
    priced         + the atomic reservation UPDATE at admission (settled in the batch)
    priced, sync   + the usage row and settlement written inside each request

Starts the simulated vLLM and one gunicorn gevent worker per configuration on 127.0.0.1,
sends a bounded number of small chat requests and reads the worker's CPU time from /proc.

    python bench/metering_cost.py [--requests 400] [--concurrency 8] [--database URL]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]
from processes import Database, Launcher, migrated_app  # noqa: E402

CONFIGS = {
    "zero price": {},
    "priced": {"PACKET_PRICE_INPUT": "1", "PACKET_PRICE_OUTPUT": "2"},
    "priced, sync": {
        "PACKET_PRICE_INPUT": "1",
        "PACKET_PRICE_OUTPUT": "2",
        "PACKET_USAGE_FLUSH_INTERVAL": "0",
    },
}
TIERS = '{"bench": {"rpm": 100000000, "tpm": 1000000000}}'


def worker_cpu(master_pid: int) -> float:
    """User + system CPU seconds of the master's children (the workers)."""
    total = 0.0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == master_pid:
            total += (int(fields[11]) + int(fields[12])) / 100  # clock ticks (USER_HZ = 100)
    return total


def round_cpu(
    url: str,
    headers: dict[str, str],
    body: Callable[[int], dict[str, Any]],
    pid: int,
    n: int,
    c: int,
) -> float:
    """Worker CPU milliseconds per request over ``n`` requests at concurrency ``c``."""

    def one(i: int) -> None:
        requests.post(url, json=body(i), headers=headers, timeout=30).raise_for_status()

    before = worker_cpu(pid)
    with ThreadPoolExecutor(c) as pool:
        list(pool.map(one, range(n)))
    return (worker_cpu(pid) - before) / n * 1000


def run(
    launcher: Launcher, database: Database, sim_url: str, env: dict[str, str], n: int, c: int
) -> float:
    gateway = launcher.gateway(database, [sim_url], 1, 200, PACKET_TIERS=TIERS, **env)
    _, key = database.account(tier="bench", balance_micros=10**12)
    body: dict[str, Any] = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}
    session = requests.Session()
    headers = {"Authorization": f"Bearer {key}"}
    url = f"{gateway.url}/v1/chat/completions"
    for _ in range(20):  # warm up: caches, pools, first-request start-up
        session.post(url, json=body, headers=headers, timeout=10).raise_for_status()
    before, started = worker_cpu(gateway.proc.pid), time.monotonic()

    def one(_: int) -> None:
        requests.post(url, json=body, headers=headers, timeout=10).raise_for_status()

    with ThreadPoolExecutor(c) as pool:
        list(pool.map(one, range(n)))
    time.sleep(1.0)  # the background flush of the last batch belongs to these requests
    cpu = worker_cpu(gateway.proc.pid) - before
    print(f"  {n} requests in {time.monotonic() - started:.1f}s", file=sys.stderr)
    return cpu / n * 1000


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=400)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--database", default=None, help="default: a temporary SQLite file")
    args = parser.parse_args()
    n = max(1, min(args.requests, 5000))
    folder = Path(tempfile.mkdtemp(prefix="packet-bench-"))
    url = args.database or f"sqlite:///{folder / f'bench-{uuid.uuid4().hex[:6]}.db'}"
    database = Database("bench", url, migrated_app(url))
    launcher = Launcher(folder)
    try:
        sim = launcher.sim()
        results = {}
        for label, env in CONFIGS.items():
            results[label] = run(launcher, database, sim.url, env, n, args.concurrency)
            print(f"{label:>14}: {results[label]:.2f} ms worker CPU per request")
        base = results["zero price"]
        for label in ("priced", "priced, sync"):
            print(f"{label:>14} / zero price = {results[label] / base:.2f}")
    finally:
        launcher.close()


if __name__ == "__main__":
    main()
