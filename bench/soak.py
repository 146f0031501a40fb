"""A bounded soak: mixed traffic against the real gateway for a few minutes, then the books.

Starts the simulated vLLM and the gateway (gunicorn, gevent, 2 workers, prices set) on
127.0.0.1, sends chat, completions, streams with and without usage, streams the client drops
after three events, model lists and bad bodies from a few threads, and samples the workers'
memory. At the end every usage row is compared with what the simulator sent, request by request.
Exits 1 on any 5xx or broken connection, a row missing or wrong, or a balance that does not
add up.

    python -m bench.soak [--minutes 5] [--threads 8] [--database-url URL] [--redis-url URL]
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]
from helpers import BULK, PRICES, Load, metered_against_sent, mixed  # noqa: E402
from processes import Database, Launcher, migrated_app  # noqa: E402

from bench.procs import child_pids, rss_bytes  # noqa: E402
from packet import store  # noqa: E402

BALANCE = 10**12
MAX_REQUESTS = 1_000_000  # a bound on top of the time bound


def plan(i: int) -> tuple[str, dict[str, Any]] | tuple[str, dict[str, Any], int]:
    """Mostly :func:`helpers.mixed`; every 10th a dropped stream, every 25th a bad body."""
    if i % 25 == 7:
        return "/v1/chat/completions", {"messages": "not a list"}
    if i % 10 == 3:
        msgs = [{"role": "user", "content": f"soak {i}, dropped"}]
        body = {"messages": msgs, "max_tokens": 40, "stream": True, "x_sim_token_delay": 0.01}
        return "/v1/chat/completions", body, 3
    return mixed(i)


def memory(master: int) -> int:
    return sum(rss_bytes(pid) for pid in child_pids(master))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=5.0)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--database-url", default=None, help="default: a temporary SQLite file")
    parser.add_argument("--redis-url", default=None, help="default: in-memory limits")
    args = parser.parse_args(argv)

    folder = Path(tempfile.mkdtemp(prefix="packet-soak-"))
    url = args.database_url or f"sqlite:///{folder / 'soak.db'}"
    database = Database("soak", url, migrated_app(url))
    launcher = Launcher(folder)
    try:
        sim = launcher.sim()
        extra = {"REDIS_URL": args.redis_url} if args.redis_url else {}
        gateway = launcher.gateway(database, [sim.url], 2, 200, **PRICES, **BULK, **extra)
        name, key = database.account(tier="bulk", balance_micros=BALANCE)
        seconds = args.minutes * 60
        load = Load(gateway, key, plan, threads=args.threads, count=MAX_REQUESTS, seconds=seconds)
        load.start()
        time.sleep(min(20.0, seconds / 10))  # warmed up: pools, caches, the first leases
        rss = [(len(load.results), memory(gateway.proc.pid))]
        seen: dict[str, dict[str, Any]] = {}  # the simulator keeps only its latest 20,000 requests
        while time.monotonic() - load.started < seconds:
            time.sleep(min(10.0, max(0.1, seconds - (time.monotonic() - load.started))))
            rss.append((len(load.results), memory(gateway.proc.pid)))
            seen |= {r["request_id"]: r for r in sim.requests()}
        results = load.stop()
        elapsed = time.monotonic() - load.started
        gateway.stop(signal.SIGINT)  # a clean stop returns every lease
        statuses = load.statuses()
        errors = {str(s): n for s, n in statuses.items() if s is None or s >= 500}
        figures = metered_against_sent(database, name, sim, results, seen)
        final = database.run(store.get_account, name).balance_micros
        (n0, m0), (n1, m1) = rss[0], rss[-1]
        report = {
            "minutes": args.minutes,
            "requests": len(results),
            "statuses": {str(s): n for s, n in sorted(statuses.items(), key=str)},
            "errors": errors,
            "usage_rows": figures["rows"],
            "admitted": figures["served"],
            "tokens_metered": figures["metered"],
            "tokens_sent": figures["sent"],
            "balance_equation": f"{BALANCE} = {final} + {figures['cost']}",
            "balance_ok": final + figures["cost"] == BALANCE,
            "rss_mib_start": round(m0 / 2**20, 1),
            "rss_mib_end": round(m1 / 2**20, 1),
            "rss_growth_kib_per_1000_requests": round((m1 - m0) / 1024 / max(1, n1 - n0) * 1000, 1),
            "requests_per_second": round(len(results) / elapsed, 1),
        }
        print(json.dumps(report, indent=2))
        ok = not errors and report["balance_ok"] and figures["metered"] == figures["sent"]
        return 0 if ok else 1
    except AssertionError as failure:  # metered_against_sent found a row missing or wrong
        print(f"soak failed: {failure}", file=sys.stderr)
        return 1
    finally:
        launcher.close()


if __name__ == "__main__":
    sys.exit(main())
