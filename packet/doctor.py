"""``flask --app app doctor``: what is wrong with this gateway's setup, in plain words.

Each check says what it found and, when something is wrong, what to do. A problem makes the
command exit 1 (a warning does not), so a deploy's release phase or a cron job can run it.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime

import click
from flask import Flask, current_app

from .config import Settings
from .extensions import limiter
from .runtime import Runtime, runtime
from .store import checks, ping
from .upstream.errors import UpstreamFailure

OK, WARNING, PROBLEM = "ok", "warning", "problem"
SKEW_SECONDS = 2.0
SLOW_REDIS_MS = 20.0


@dataclass(frozen=True)
class Finding:
    """One check's verdict, and what to do about it when it is not ok."""

    area: str
    level: str
    said: str
    advice: str = ""


def configuration(settings: Settings, secret_key: object) -> Iterator[Finding]:
    yield Finding("configuration", OK, "every variable parsed")
    for name in settings.unknown_variables:
        yield Finding(
            "configuration",
            WARNING,
            f"{name} is set but the gateway reads no such variable",
            "Check its spelling against the README's Configuration table.",
        )
    production = not settings.database_url.startswith("sqlite")
    if settings.web_concurrency > 1 and settings.storage_uri.startswith("memory"):
        yield Finding(
            "configuration",
            PROBLEM if production else WARNING,
            f"WEB_CONCURRENCY={settings.web_concurrency} with limits in memory: every worker "
            "counts apart, so the tier limits are multiplied by the worker count",
            "Set REDIS_URL (all workers then share the limits), or WEB_CONCURRENCY=1.",
        )
    if production and not secret_key:
        yield Finding(
            "configuration",
            PROBLEM,
            "SECRET_KEY is not set: signed cookies (the dashboard's sessions) cannot be trusted",
            'Set SECRET_KEY to a long random value, e.g. python -c "import secrets; '
            'print(secrets.token_urlsafe(48))".',
        )
    if not settings.upstreams:
        yield Finding(
            "configuration",
            WARNING,
            "PACKET_UPSTREAMS is empty: accounts without endpoints of their own get 503",
            "Add endpoints per account (flask --app app endpoints add), or set PACKET_UPSTREAMS.",
        )


def database() -> Iterator[Finding]:
    try:
        ping()
    except Exception as exc:  # noqa: BLE001 - reported, not raised
        yield Finding(
            "database",
            PROBLEM,
            f"unreachable ({type(exc).__name__})",
            "Check DATABASE_URL and that the database server is up and accepts connections.",
        )
        return
    yield Finding("database", OK, "reachable")
    current, heads = checks.schema_revisions()
    if current != heads:
        at = ", ".join(sorted(current)) or "an empty schema"
        yield Finding(
            "database",
            PROBLEM,
            f"migrations pending: the database is at {at}, the code at {', '.join(sorted(heads))}",
            "Run: flask --app app db upgrade (Heroku runs it in the release phase).",
        )
    else:
        yield Finding("database", OK, f"migrations at head ({', '.join(sorted(heads))})")
    skew = (datetime.now(UTC) - checks.database_clock()).total_seconds()
    if abs(skew) > SKEW_SECONDS:
        yield Finding(
            "database",
            PROBLEM,
            f"this machine's clock is {skew:+.1f}s off the database's",
            "Synchronise the clocks (NTP): usage periods and journal recovery depend on them.",
        )
    else:
        yield Finding("database", OK, f"clock within {abs(skew):.1f}s of the database's")


def redis(settings: Settings) -> Iterator[Finding]:
    if settings.storage_uri.startswith("memory"):
        yield Finding("redis", OK, "not configured: limits kept in each process's memory")
        return
    storage = limiter.storage
    started = time.perf_counter()
    try:
        answered = all(storage.check() for _ in range(3))
    except Exception:  # noqa: BLE001
        answered = False
    if not answered:
        yield Finding(
            "redis",
            PROBLEM,
            "unreachable",
            "Check REDIS_URL and that Redis is up. Meanwhile limits "
            + (
                "are not enforced (PACKET_LIMITS_FAIL_OPEN)."
                if settings.limits_fail_open
                else "refuse every request with 503."
            ),
        )
        return
    latency = (time.perf_counter() - started) / 3 * 1000
    level = WARNING if latency > SLOW_REDIS_MS else OK
    advice = "Every request waits for one Redis round trip: put Redis near the gateway."
    yield Finding(
        "redis", level, f"reachable, {latency:.1f} ms a round trip", advice if level != OK else ""
    )


def endpoints(settings: Settings, rt: Runtime) -> Iterator[Finding]:
    """Every endpoint of the shared pool and of every account, probed 16 at a time."""
    rows: list[tuple[str, str, str | None]] = [
        (f"shared pool #{i + 1}", url, None) for i, url in enumerate(settings.upstreams)
    ]
    try:
        rows += [(f"endpoint {e.id}", e.base_url, e.upstream_key) for e in checks.every_endpoint()]
    except Exception as exc:  # noqa: BLE001 - an unmigrated schema, reported above
        yield Finding("endpoint", WARNING, f"accounts' endpoints not read ({type(exc).__name__})")
    timeout = max(settings.discovery_timeout, 1.0)
    with ThreadPoolExecutor(max_workers=16) as pool:
        yield from pool.map(lambda row: _endpoint(rt, row, timeout), rows)


def _endpoint(rt: Runtime, row: tuple[str, str, str | None], timeout: float) -> Finding:
    label, url, key = row
    name = f"{label} ({url})"
    headers: dict[str, str] = {"Authorization": f"Bearer {key}"} if key else {}
    try:
        health, _ = rt.client.get(f"{url}/health", headers, timeout)
        status, body = rt.client.get(f"{url}/v1/models", headers, timeout)
        version_status, version = rt.client.get(f"{url}/version", headers, timeout)
    except UpstreamFailure as exc:
        return Finding(
            "endpoint",
            PROBLEM,
            f"{name}: not reachable ({exc})",
            "Start the vLLM server, or remove the endpoint (flask --app app endpoints remove).",
        )
    cards = body.get("data") if isinstance(body, dict) else None
    models = [str(m.get("id")) for m in cards or [] if isinstance(m, dict)]
    if health == 503 or status == 503:
        return Finding("endpoint", WARNING, f"{name}: loading its model", "Wait for it.")
    if status != 200 or not models:
        return Finding(
            "endpoint",
            PROBLEM,
            f"{name}: /v1/models answered {status} with no model",
            "Check the endpoint's upstream key (vLLM --api-key) and that it serves a model.",
        )
    found = version.get("version") if version_status == 200 and isinstance(version, dict) else None
    server = f"vLLM {found}" if found else "not vLLM, or no /version"
    health_said = f"/health {health}" if health not in (404, 405) else "no /health"
    return Finding("endpoint", OK, f"{name}: {health_said}, models {', '.join(models)} ({server})")


def examine(app: Flask) -> list[Finding]:
    """Every check, in order; the database's and the endpoints' only when it answers."""
    rt = runtime()
    settings = rt.settings
    found = list(configuration(settings, app.config.get("SECRET_KEY")))
    found += database()
    found += redis(settings)
    if any(f.area == "database" and f.said == "reachable" for f in found):
        found += endpoints(settings, rt)
    return found


@click.command("doctor")
def doctor() -> None:
    """Check the configuration, database, Redis and endpoints; exit 1 on a problem."""
    found = examine(current_app)
    marks = {OK: "ok", WARNING: "warning", PROBLEM: "PROBLEM"}
    for finding in found:
        click.echo(f"[{marks[finding.level]:>7}] {finding.area}: {finding.said}")
        if finding.advice:
            click.echo(f"          → {finding.advice}")
    problems = sum(f.level == PROBLEM for f in found)
    click.echo(f"{problems} problem(s)" if problems else "no problem found")
    if problems:
        raise SystemExit(1)
