"""The cost of a key's own controls: gateway worker CPU per request, plain key vs controlled.

One gunicorn gevent worker (priced, so the budget hold runs), the simulated vLLM, two keys of
one account: a plain one, and one with rpm, tpm, a budget, an allow-list and an expiry. The
two are measured in alternating rounds on the same worker (ABBA, so neither always goes
first), so a busy machine slows both alike; each figure is the median of the rounds.

    python -m bench.key_controls_cost [--rounds 10] [--requests 200] [--concurrency 8]
                                      [--database URL] [--redis-url URL]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from bench.metering_cost import TIERS, round_cpu
from packet import store
from packet.devserver import DEFAULT_MODEL

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]
from processes import Database, Launcher, migrated_app  # noqa: E402

CONTROLS: dict[str, Any] = {
    "rpm": 100_000_000,
    "tpm": 1_000_000_000,
    "budget_micros": 10**12,
    "models": [DEFAULT_MODEL],
}


def key_round(url: str, key: str, pid: int, n: int, c: int) -> float:
    """Worker CPU milliseconds per request of ``n`` small chats with ``key``."""
    return round_cpu(url, {"Authorization": f"Bearer {key}"}, lambda _: BODY, pid, n, c)


BODY: dict[str, Any] = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--database", default=None, help="default: a temporary SQLite file")
    parser.add_argument("--redis-url", default=None, help="limit storage (default: in memory)")
    args = parser.parse_args()
    rounds, n = max(1, min(args.rounds, 50)), max(1, min(args.requests, 2000))
    folder = Path(tempfile.mkdtemp(prefix="packet-bench-"))
    db_url = args.database or f"sqlite:///{folder / f'bench-{uuid.uuid4().hex[:6]}.db'}"
    database = Database("bench", db_url, migrated_app(db_url))
    launcher = Launcher(folder)
    env = {"PACKET_TIERS": TIERS, "PACKET_PRICE_INPUT": "1", "PACKET_PRICE_OUTPUT": "2"}
    if args.redis_url:
        env |= {"REDIS_URL": args.redis_url, "PACKET_LIMIT_KEY_PREFIX": f"b{uuid.uuid4().hex[:6]}"}
    try:
        sim = launcher.sim()
        gateway = launcher.gateway(database, [sim.url], 1, 200, **env)
        name, plain = database.account(tier="bench", balance_micros=10**12)
        expiry = datetime.now(UTC) + timedelta(days=1)
        _, controlled = database.run(
            store.create_key, name, "bench", CONTROLS | {"expires_at": expiry}
        )
        url, pid = f"{gateway.url}/v1/chat/completions", gateway.proc.pid
        for key in (plain, controlled):  # warm up: caches, pools, scripts
            key_round(url, key, pid, 50, args.concurrency)
        figures: dict[str, list[float]] = {"plain": [], "controlled": []}
        keys = {"plain": plain, "controlled": controlled}
        for number in range(rounds):
            order = list(keys) if number % 2 == 0 else list(reversed(keys))  # ABBA: no order bias
            for label in order:
                figures[label].append(key_round(url, keys[label], pid, n, args.concurrency))
        medians = {label: statistics.median(values) for label, values in figures.items()}
        storage = "redis" if args.redis_url else "memory"
        print(f"limits in {storage}, {rounds} rounds × {n} requests, c={args.concurrency}")
        for label, value in medians.items():
            print(f"{label:>11}: {value:.3f} ms worker CPU per request (median)")
        print(f"controlled / plain = {medians['controlled'] / medians['plain']:.3f}")
    finally:
        launcher.close()


if __name__ == "__main__":
    main()
