"""Every environment variable the gateway reads, parsed once into typed settings.

Nothing else in the gateway reads ``os.environ``: the factory calls :func:`load_settings`
and everything downstream receives the resulting :class:`Settings` (the gunicorn worker, which
runs outside the app, calls :func:`request_read_timeout`). Outside it: ``gunicorn.conf.py``
(gunicorn's own settings, and ``PROMETHEUS_MULTIPROC_DIR``, which prometheus-client also reads
when imported) and the simulator, :mod:`packet.devserver`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar
from urllib.parse import urlsplit

from .addresses import AddressRules, IPNetwork, address_rules, networks
from .money import NotAnAmount, Price, dollars_to_micros

T = TypeVar("T")

DEFAULT_TIERS: dict[str, dict[str, int]] = {
    "free": {"rpm": 20, "tpm": 40_000},
    "standard": {"rpm": 60, "tpm": 150_000},
    "premium": {"rpm": 200, "tpm": 500_000},
}


class ConfigError(ValueError):
    """An environment variable has a value the gateway cannot use."""


@dataclass(frozen=True)
class BatchSettings:
    """The batch worker's: the price share, lines at a time per endpoint, the vLLM priority
    of its lines (None: not sent), the completion window, a claim's lease, the idle poll."""

    discount_ppm: int = 500_000
    concurrency: int = 8
    priority: int | None = None
    window_seconds: float = 24 * 3600.0
    lease_seconds: float = 300.0
    poll_seconds: float = 1.0


@dataclass(frozen=True)
class Settings:
    """The gateway's configuration, immutable once the app is built."""

    database_url: str
    storage_uri: str
    upstreams: tuple[str, ...]
    tiers: dict[str, dict[str, int]]
    default_tier: str = "free"
    admin_token: str | None = None
    public_url: str | None = None
    connect_timeout: float = 5.0
    read_timeout: float = 120.0
    stream_first_byte_timeout: float = 60.0
    stream_idle_timeout: float = 30.0
    keepalive_interval: float = 15.0
    pool_maxsize: int = 1000
    max_body_bytes: int = 8 * 1024 * 1024
    max_audio_bytes: int = 25 * 1024 * 1024
    auth_cache_ttl: float = 5.0
    auth_stale_seconds: float = 300.0
    limit_window_seconds: int = 60
    limits_fail_open: bool = True
    limits_storage_timeout: float = 1.0
    limit_key_prefix: str = "packet"
    default_max_tokens: int = 1024
    default_max_model_len: int = 131072
    discovery_interval: float = 10.0
    discovery_timeout: float = 3.0
    unhealthy_cooloff: float = 15.0
    warmup_timeout: float = 30.0
    failover_attempts: int = 3
    default_price: Price = field(default_factory=lambda: Price(0, 0))
    prices: dict[str, Price] = field(default_factory=dict)
    usage_flush_interval: float = 0.5
    usage_batch_size: int = 500
    usage_buffer_max: int = 100_000
    journal_stale_seconds: float = 600.0
    balance_lease: int = 20
    log_level: str = "INFO"
    trusted_proxies: tuple[IPNetwork, ...] = ()
    auth_failures_per_window: int = 30
    request_read_timeout: float = 30.0
    endpoint_allow: AddressRules = field(default_factory=AddressRules)
    endpoint_deny: AddressRules = field(default_factory=AddressRules)
    metrics_multiprocess_dir: str | None = None
    # The dashboard (packet.dashboard) is served only when a secret key signs its sessions.
    secret_key: str | None = None
    dashboard_insecure_cookies: bool = False
    cache_ttl: float = 3600.0
    cache_max_bytes: int = 64 * 1024 * 1024
    cache_max_entry_bytes: int = 1024 * 1024
    log_format: str = "text"
    metrics_token: str | None = None
    metrics_bind: str | None = None
    otlp_endpoint: str | None = None
    otel_service_name: str = "packet-gateway"
    web_concurrency: int = 2
    proxy_hops: int = 0
    unknown_variables: tuple[str, ...] = ()
    files_max_bytes: int = 200 * 1024 * 1024
    files_url: str | None = None
    batch: BatchSettings = field(default_factory=lambda: BatchSettings())

    def check_tier(self, tier: str) -> str:
        """``tier`` when it is configured; ValueError naming the configured tiers otherwise."""
        if tier not in self.tiers:
            raise ValueError(f"unknown tier {tier!r}; configured: {', '.join(self.tiers)}")
        return tier

    def price_for(self, model: str) -> Price:
        """The price table entry for ``model``, or the default price."""
        return self.prices.get(model, self.default_price)


def normalize_database_url(url: str) -> str:
    """Accept Heroku's ``postgres://`` spelling and use the psycopg 3 driver for Postgres."""
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def _dollars(env: Mapping[str, str], name: str) -> int:
    try:
        return dollars_to_micros(env.get(name, "0"))
    except NotAnAmount as exc:
        raise ConfigError(f"{name}: {exc}") from None


def _config(parse: Callable[[str], T], name: str, env: Mapping[str, str]) -> T:
    """``parse`` the variable ``name``; what it cannot read is a ConfigError naming it."""
    try:
        return parse(env.get(name, ""))
    except ValueError as exc:
        raise ConfigError(f"{name}: {exc}") from None


def _float(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError as exc:
        raise ConfigError(f"{name} must be a number, got {raw!r}") from exc
    if value < 0:
        raise ConfigError(f"{name} must not be negative")
    return value


def _int(env: Mapping[str, str], name: str, default: int) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError as exc:
        raise ConfigError(f"{name} must be an integer, got {raw!r}") from exc


def _bool(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    return raw.strip().lower() in {"1", "true", "yes", "on"}


def _tiers(raw: str | None) -> dict[str, dict[str, int]]:
    tiers = {name: dict(figures) for name, figures in DEFAULT_TIERS.items()}
    if not raw:
        return tiers
    try:
        extra = json.loads(raw)
    except ValueError as exc:
        raise ConfigError(f"PACKET_TIERS is not valid JSON: {exc}") from exc
    if not isinstance(extra, dict):
        raise ConfigError("PACKET_TIERS must be a JSON object of tier name → {rpm, tpm}")
    for name, figures in extra.items():
        if not isinstance(figures, dict):
            raise ConfigError(f"PACKET_TIERS[{name!r}] must be an object with rpm and tpm")
        merged = tiers.get(name, {}) | figures
        for key in ("rpm", "tpm"):
            value = merged.get(key)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(f"PACKET_TIERS[{name!r}].{key} must be a positive integer")
        tiers[name] = {"rpm": merged["rpm"], "tpm": merged["tpm"]}
    return tiers


def _prices(raw: str | None) -> dict[str, Price]:
    if not raw:
        return {}
    try:
        table = json.loads(raw)
    except ValueError as exc:
        raise ConfigError(f"PACKET_PRICES is not valid JSON: {exc}") from exc
    if not isinstance(table, dict):
        raise ConfigError('PACKET_PRICES must be {"model": {"input": $, "output": $}}')
    prices = {}
    for model, entry in table.items():
        if not isinstance(entry, dict):
            raise ConfigError(f"PACKET_PRICES[{model!r}] must be an object with input and output")
        try:
            prices[model] = Price(
                dollars_to_micros(entry.get("input", 0)), dollars_to_micros(entry.get("output", 0))
            )
        except NotAnAmount as exc:
            raise ConfigError(f"PACKET_PRICES[{model!r}]: {exc}") from None
    return prices


def default_sqlite_url(instance_path: str) -> str:
    """SQLite file under the Flask instance folder: the zero-setup default."""
    Path(instance_path).mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{Path(instance_path) / 'packet.db'}"


def load_settings(env: Mapping[str, str] | None = None, *, instance_path: str) -> Settings:
    """Read the configuration from ``env`` (the process environment by default)."""
    env = os.environ if env is None else env
    database_url = env.get("DATABASE_URL") or default_sqlite_url(instance_path)
    tiers = _tiers(env.get("PACKET_TIERS"))
    default_tier = env.get("PACKET_DEFAULT_TIER", "free")
    if default_tier not in tiers:
        raise ConfigError(f"PACKET_DEFAULT_TIER {default_tier!r} is not a configured tier")
    upstreams = tuple(
        url.strip().rstrip("/") for url in env.get("PACKET_UPSTREAMS", "").split(",") if url.strip()
    )
    return Settings(
        database_url=normalize_database_url(database_url),
        storage_uri=env.get("REDIS_URL") or "memory://",
        upstreams=upstreams,
        tiers=tiers,
        default_tier=default_tier,
        admin_token=env.get("PACKET_ADMIN_TOKEN") or None,
        public_url=public_url(env.get("PACKET_PUBLIC_URL")),
        connect_timeout=_float(env, "PACKET_CONNECT_TIMEOUT", 5.0),
        read_timeout=_float(env, "PACKET_READ_TIMEOUT", 120.0),
        stream_first_byte_timeout=_float(env, "PACKET_STREAM_FIRST_BYTE_TIMEOUT", 60.0),
        stream_idle_timeout=_float(env, "PACKET_STREAM_IDLE_TIMEOUT", 30.0),
        keepalive_interval=_float(env, "PACKET_KEEPALIVE_INTERVAL", 15.0),
        pool_maxsize=_int(env, "PACKET_POOL_MAXSIZE", 1000),
        max_body_bytes=_int(env, "PACKET_MAX_BODY_BYTES", 8 * 1024 * 1024),
        max_audio_bytes=max(1, _int(env, "PACKET_MAX_AUDIO_BYTES", 25 * 1024 * 1024)),
        auth_cache_ttl=_float(env, "PACKET_AUTH_CACHE_TTL", 5.0),
        auth_stale_seconds=_float(env, "PACKET_AUTH_STALE_SECONDS", 300.0),
        limit_window_seconds=max(1, _int(env, "PACKET_LIMIT_WINDOW_SECONDS", 60)),
        limits_fail_open=_bool(env, "PACKET_LIMITS_FAIL_OPEN", True),
        limits_storage_timeout=max(0.01, _float(env, "PACKET_LIMITS_STORAGE_TIMEOUT", 1.0)),
        limit_key_prefix=env.get("PACKET_LIMIT_KEY_PREFIX") or "packet",
        default_max_tokens=max(1, _int(env, "PACKET_DEFAULT_MAX_TOKENS", 1024)),
        default_max_model_len=max(1, _int(env, "PACKET_DEFAULT_MAX_MODEL_LEN", 131072)),
        discovery_interval=_float(env, "PACKET_DISCOVERY_INTERVAL", 10.0),
        discovery_timeout=_float(env, "PACKET_DISCOVERY_TIMEOUT", 3.0),
        unhealthy_cooloff=_float(env, "PACKET_UNHEALTHY_COOLOFF", 15.0),
        warmup_timeout=_float(env, "PACKET_WARMUP_TIMEOUT", 30.0),
        failover_attempts=max(1, _int(env, "PACKET_FAILOVER_ATTEMPTS", 3)),
        default_price=Price(
            _dollars(env, "PACKET_PRICE_INPUT"),
            _dollars(env, "PACKET_PRICE_OUTPUT"),
        ),
        prices=_prices(env.get("PACKET_PRICES")),
        usage_flush_interval=_float(env, "PACKET_USAGE_FLUSH_INTERVAL", 0.5),
        usage_batch_size=max(1, _int(env, "PACKET_USAGE_BATCH_SIZE", 500)),
        usage_buffer_max=max(1, _int(env, "PACKET_USAGE_BUFFER_MAX", 100_000)),
        journal_stale_seconds=max(10.0, _float(env, "PACKET_JOURNAL_STALE_SECONDS", 600.0)),
        balance_lease=max(1, _int(env, "PACKET_BALANCE_LEASE", 20)),
        log_level=env.get("LOG_LEVEL", "INFO").upper(),
        trusted_proxies=_config(networks, "PACKET_TRUSTED_PROXIES", env),
        auth_failures_per_window=max(0, _int(env, "PACKET_AUTH_FAILURES_PER_WINDOW", 30)),
        request_read_timeout=request_read_timeout(env),
        endpoint_allow=_config(address_rules, "PACKET_ENDPOINT_ALLOW", env),
        endpoint_deny=_config(address_rules, "PACKET_ENDPOINT_DENY", env),
        metrics_multiprocess_dir=env.get("PROMETHEUS_MULTIPROC_DIR") or None,
        secret_key=env.get("SECRET_KEY") or None,
        dashboard_insecure_cookies=_bool(env, "PACKET_DASHBOARD_INSECURE_COOKIES", False),
        cache_ttl=max(1.0, _float(env, "PACKET_CACHE_TTL", 3600.0)),
        cache_max_bytes=max(0, _int(env, "PACKET_CACHE_MAX_BYTES", 64 * 1024 * 1024)),
        cache_max_entry_bytes=max(0, _int(env, "PACKET_CACHE_MAX_ENTRY_BYTES", 1024 * 1024)),
        log_format=_choice(env, "LOG_FORMAT", ("text", "json")),
        metrics_token=env.get("PACKET_METRICS_TOKEN") or None,
        metrics_bind=env.get("PACKET_METRICS_BIND") or None,
        otlp_endpoint=env.get("OTEL_EXPORTER_OTLP_ENDPOINT") or None,
        otel_service_name=env.get("OTEL_SERVICE_NAME") or "packet-gateway",
        web_concurrency=max(1, _int(env, "WEB_CONCURRENCY", 2)),
        proxy_hops=max(0, _int(env, "PACKET_PROXY_HOPS", 0)),
        unknown_variables=_unknown(env),
        files_max_bytes=max(1, _int(env, "PACKET_FILES_MAX_BYTES", 200 * 1024 * 1024)),
        files_url=_files_url(env.get("PACKET_FILES_URL")),
        batch=_batch(env),
    )


def _files_url(value: str | None) -> str | None:
    """``s3://bucket/prefix``: files in that bucket (None: in the database)."""
    if not value:
        return None
    parts = urlsplit(value.strip())
    if parts.scheme != "s3" or not parts.netloc or parts.query or parts.fragment:
        raise ConfigError(f"PACKET_FILES_URL must be s3://bucket/prefix, got {value!r}")
    return value.strip().rstrip("/")


def _batch(env: Mapping[str, str]) -> BatchSettings:
    discount = _float(env, "PACKET_BATCH_DISCOUNT", 0.5)
    if discount > 1:
        raise ConfigError("PACKET_BATCH_DISCOUNT is the share of the price paid: 0 to 1")
    priority = env.get("PACKET_BATCH_PRIORITY", "").strip()
    return BatchSettings(
        discount_ppm=round(discount * 1_000_000),
        concurrency=max(1, _int(env, "PACKET_BATCH_CONCURRENCY", 8)),
        priority=_int(env, "PACKET_BATCH_PRIORITY", 0) if priority else None,
        window_seconds=max(1.0, _float(env, "PACKET_BATCH_WINDOW_SECONDS", 24 * 3600.0)),
        lease_seconds=max(1.0, _float(env, "PACKET_BATCH_LEASE_SECONDS", 300.0)),
        poll_seconds=max(0.05, _float(env, "PACKET_BATCH_POLL_SECONDS", 1.0)),
    )


def _unknown(env: Mapping[str, str]) -> tuple[str, ...]:
    """``PACKET_*`` variables that no setting reads (a typo, or a setting since removed)."""
    from .variables import names

    known = set(names())
    return tuple(sorted(n for n in env if n.startswith("PACKET_") and n not in known))


def _choice(env: Mapping[str, str], name: str, choices: tuple[str, ...]) -> str:
    """One of ``choices`` (case-insensitive; the first when unset)."""
    value = (env.get(name) or choices[0]).strip().lower()
    if value not in choices:
        raise ConfigError(f"{name} must be one of {', '.join(choices)}, got {value!r}")
    return value


def public_url(value: str | None) -> str | None:
    """The gateway's public base URL (``https://api.example.com``), as clients reach it."""
    if not value:
        return None
    parts = urlsplit(value.strip())
    if parts.scheme not in ("http", "https") or not parts.netloc or parts.query or parts.fragment:
        raise ConfigError(f"PACKET_PUBLIC_URL is not an http(s) base URL: {value!r}")
    return value.strip().rstrip("/")


def request_read_timeout(env: Mapping[str, str] | None = None) -> float:
    """Seconds a client may take to send a request's head, then as long for its body.

    Public because the gunicorn worker (packet.server) bounds the request line and headers
    outside any app, so without Settings; it reads the variable (from the process environment
    by default) through this, with the same default and checks.
    """
    value = _float(os.environ if env is None else env, "PACKET_REQUEST_READ_TIMEOUT", 30.0)
    if value == 0:
        raise ConfigError("PACKET_REQUEST_READ_TIMEOUT must be positive")
    return value
