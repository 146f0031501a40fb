"""Server time of the dashboard's Overview and Usage pages with many usage rows in PostgreSQL.

Creates a private database on the given server (dropped at the end), migrates it to 0004,
fills ``--rows`` usage rows for one account over 60 days (7 models, 20 keys, every pair) with one
``generate_series`` INSERT, then migrates to head (0005 builds the ``usage_daily`` roll-up from
those rows, as it would on a deployment). A signed-in test client then times each page;
the usage report straight from ``usage_records`` (what the CLI's ``usage`` reads) is timed
for comparison.

    python bench/dashboard.py [--database postgresql://postgres@127.0.0.1:5432/test]
                              [--rows 1000000] [--repeat 20]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import uuid
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import psycopg

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]
from helpers import DASHBOARD, dashboard_user, sign_in  # noqa: E402

from packet import create_app, store  # noqa: E402
from packet.config import normalize_database_url  # noqa: E402
from packet.models import utcnow  # noqa: E402

FILL = """
INSERT INTO usage_records (request_id, account_id, key_id, endpoint_url, model, route, stream,
    status, prompt_tokens, completion_tokens, total_tokens, cost_micros, latency_ms,
    client_disconnected, usage_source, created_at)
SELECT 'req_' || i, %(account)s, %(first_key)s + i %% 20, 'http://10.0.0.5:8000',
    'model-' || i %% 7, 'chat', false, 200, 100, 50, 150, 75, 20, false, 'upstream',
    now() - (i %% (60 * 24 * 60)) * interval '1 minute'
FROM generate_series(1, %(rows)s) AS i
"""


def timed(fn: Callable[[], Any], repeat: int) -> tuple[float, float]:
    """Median and worst of ``repeat`` calls, in milliseconds (after one warm-up call)."""
    fn()
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times), max(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--database", default="postgresql://postgres@127.0.0.1:5432/test")
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=20)
    args = parser.parse_args()

    admin_url = normalize_database_url(args.database).replace("postgresql+psycopg", "postgresql")
    name = f"packet_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(admin_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    url = admin_url.rsplit("/", 1)[0] + f"/{name}"
    try:
        run(url, args.rows, args.repeat)
    finally:
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def run(url: str, rows: int, repeat: int) -> None:
    from flask_migrate import upgrade

    from packet.extensions import db

    app = create_app({"DATABASE_URL": url, "PACKET_USAGE_FLUSH_INTERVAL": "0", **DASHBOARD})
    with app.app_context():
        upgrade(revision="0004")
        store.create_account("bench", "standard", 0)  # no ledger row: that table comes in 0005
        account = store.get_account("bench")
        first_key = store.create_key("bench", "k0")[0].id
        for i in range(1, 20):
            store.create_key("bench", f"k{i}")
        started = time.perf_counter()
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(FILL, {"account": account.id, "first_key": first_key, "rows": rows})
            conn.execute("ANALYZE usage_records")
        print(f"filled {rows:,} usage rows in {time.perf_counter() - started:.1f} s")
        started = time.perf_counter()
        upgrade()
        print(f"migration 0005 rolled them up in {time.perf_counter() - started:.1f} s")
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("ANALYZE usage_daily")
            daily = conn.execute("SELECT count(*) FROM usage_daily").fetchone()
        print(f"usage_daily: {daily[0] if daily else 0:,} rows")
        db.session.remove()

    client = app.test_client()
    assert sign_in(client, dashboard_user(app, "bench")).status_code == 302
    assert 'data-testid="total-requests">0<' not in client.get("/dashboard/usage").text
    print(f"{'page':<36}{'median ms':>10}{'max ms':>10}")
    for label, path in (
        ("Overview  /dashboard/", "/dashboard/"),
        ("Usage     /dashboard/usage (30 d)", "/dashboard/usage"),
        ("Usage CSV /dashboard/usage.csv", "/dashboard/usage.csv"),
    ):
        median, worst = timed(_getter(client, path), repeat)
        print(f"{label:<36}{median:>10.1f}{worst:>10.1f}")
    with app.app_context():
        since = utcnow() - timedelta(days=30)
        median, worst = timed(lambda: store.usage_rows("bench", since=since), max(3, repeat // 4))
        print(f"{'(usage_records, 30 d: CLI report)':<36}{median:>10.1f}{worst:>10.1f}")


def _getter(client: Any, path: str) -> Callable[[], None]:
    def get() -> None:
        assert client.get(path).status_code == 200

    return get


if __name__ == "__main__":
    main()
