"""Packet gateway: an OpenAI-compatible API gateway in front of users' own vLLM servers."""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from .config import Settings, load_settings

# Importing the package stays light (standard library only): gunicorn imports the worker class,
# packet.server, in its master process, before gevent patches anything; Flask and SQLAlchemy are
# imported when an app is built.
if TYPE_CHECKING:
    from flask import Flask
    from sqlalchemy.engine.interfaces import DBAPIConnection
    from sqlalchemy.pool import ConnectionPoolEntry

__all__ = ["create_app"]


def create_app(env: Mapping[str, str] | None = None) -> Flask:
    """Build the app: config → extensions → runtime → errors → blueprints → CLI.

    ``env`` replaces the process environment (tests pass their own); nothing here touches the
    network or the database.
    """
    from flask import Flask

    app = Flask(__name__, instance_relative_config=True)
    settings = load_settings(env, instance_path=app.instance_path)
    configure(app, settings)
    register_extensions(app, settings)
    register_errorhandlers(app)
    register_blueprints(app, settings)
    register_commands(app)
    return app


def configure(app: Flask, settings: Settings) -> None:
    from flask.json.provider import DefaultJSONProvider

    app.config.update(
        SQLALCHEMY_DATABASE_URI=settings.database_url,
        SQLALCHEMY_ENGINE_OPTIONS=_engine_options(settings.database_url),
        MAX_CONTENT_LENGTH=settings.max_body_bytes,
        # Flask-Limiter builds the limit storage from these (packet.limits does the counting).
        RATELIMIT_STORAGE_URI=settings.storage_uri,
        # A slow or unreachable Redis must not hold requests: fail fast, then apply the policy.
        RATELIMIT_STORAGE_OPTIONS={
            "socket_connect_timeout": settings.limits_storage_timeout,
            "socket_timeout": settings.limits_storage_timeout,
        },
        JSON_SORT_KEYS=False,
        # Static files are the docs page's assets, whose URLs carry their content's fingerprint.
        SEND_FILE_MAX_AGE_DEFAULT=365 * 24 * 3600,
    )
    if isinstance(app.json, DefaultJSONProvider):  # Flask's own, the one the app uses
        app.json.sort_keys = False
    # Paths match as sent: merging "//" would answer a 308 whose Location is built from the Host
    # header (an open redirect); an unknown path is a 404 in the envelope instead.
    app.url_map.merge_slashes = False
    from .observability import configure_logging

    configure_logging(settings.log_format, settings.log_level)


def _engine_options(url: str) -> dict[str, Any]:
    from sqlalchemy.pool import StaticPool

    if url.startswith("sqlite"):
        options: dict[str, Any] = {"connect_args": {"check_same_thread": False, "timeout": 30}}
        if url in ("sqlite://", "sqlite:///:memory:"):
            options["poolclass"] = StaticPool
        return options
    return {"pool_pre_ping": True, "pool_size": 10, "max_overflow": 20}


def register_extensions(app: Flask, settings: Settings) -> None:
    """Bind extensions and build the per-worker runtime. Order matters: see comments."""
    from sqlalchemy import event

    from . import auth, metrics, observability, tracing
    from .auth_throttle import AuthThrottle
    from .extensions import db, limiter, migrate
    from .gateway.cache import ResponseCache
    from .gateway.cache_store import build_store
    from .gateway.owners import Owners
    from .limits import StorageGuard, WindowLimits
    from .metering import Meter
    from .runtime import Runtime
    from .upstream.client import UpstreamClient
    from .upstream.discovery import Discovery
    from .upstream.policy import EndpointPolicy

    db.init_app(app)
    migrate.init_app(app, db, directory=_migrations_dir())
    with app.app_context():
        if db.engine.dialect.name == "sqlite":
            event.listen(db.engine, "connect", _sqlite_pragmas)

    keys = auth.KeyCache(settings.auth_cache_ttl, settings.auth_stale_seconds)
    # The socket timeout of a stream is a backstop only: the relay ends a silent stream itself,
    # with an error event, when it passes its bounds (0: unbounded).
    silence = max(settings.stream_first_byte_timeout, settings.stream_idle_timeout)
    client = UpstreamClient(
        connect_timeout=settings.connect_timeout,
        read_timeout=settings.read_timeout,
        pool_maxsize=settings.pool_maxsize,
        stream_read_timeout=silence + 5 if silence > 0 else None,
        policy=EndpointPolicy(settings.endpoint_allow, settings.endpoint_deny),
    )
    # Flask-Limiter supplies the limit storage from its config; packet.limits counts requests.
    # Its own per-request hooks would find no limit to apply yet cost time on each request: an app
    # already listing the limiter is one init_app adds no hooks to (the double-init guard).
    app.extensions.setdefault("limiter", set()).add(limiter)
    limiter.init_app(app)
    guard = StorageGuard(
        limiter.storage,
        fail_open=settings.limits_fail_open,
        on_error=metrics.limit_storage_error,
    )
    limits = WindowLimits(
        limiter.storage,
        settings.limit_window_seconds,
        prefix=settings.limit_key_prefix,
        guard=guard,
    )
    # Failed key attempts are counted in the same storage, under the same outage policy.
    throttle = AuthThrottle(
        limits.counters.storage,
        guard,
        threshold=settings.auth_failures_per_window,
        window=settings.limit_window_seconds,
        prefix=settings.limit_key_prefix,
        trusted=settings.trusted_proxies,
    )
    # Request ids first, then auth (the v1 blueprint's request limit is keyed by account).
    observability.init_app(app, settings)
    tracing.init_app(app, settings)
    if settings.proxy_hops:
        # Behind N proxies that each append the address they saw (Heroku's router: 1), the
        # client is the N-th address from the right of X-Forwarded-For: REMOTE_ADDR becomes it
        # for everything downstream (the log line, failed-attempt limits), as does the scheme.
        from werkzeug.middleware.proxy_fix import ProxyFix

        hops = settings.proxy_hops
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops)  # type: ignore[method-assign]
    auth.init_app(app, keys, throttle)
    discovery = Discovery(
        client,
        interval=settings.discovery_interval,
        probe_timeout=settings.discovery_timeout,
        cooloff=settings.unhealthy_cooloff,
        warmup_timeout=settings.warmup_timeout,
        on_state=metrics.endpoint_state,
    )
    rt = app.extensions["packet"] = Runtime(
        settings=settings,
        keys=keys,
        client=client,
        discovery=discovery,
        limits=limits,
        meter=Meter(
            app,
            settings,
            touched_keys=keys.drain_touched,
            on_quarantine=metrics.USAGE_QUARANTINED.inc,
        ),
        auth_throttle=throttle,
        owners=Owners(app),
        cache=ResponseCache(
            build_store(
                limiter.storage,
                settings.cache_max_bytes,
                settings.cache_max_entry_bytes,
                settings.cache_ttl,
            ),
            settings.limit_key_prefix,
            settings.cache_max_entry_bytes,
        ),
        background=(functools.partial(metrics.sample, discovery.known),),
    )
    app.before_request(rt.start)


def _sqlite_pragmas(dbapi_connection: DBAPIConnection, _record: ConnectionPoolEntry) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def _migrations_dir() -> str:
    from pathlib import Path

    return str(Path(__file__).resolve().parent.parent / "migrations")


def register_errorhandlers(app: Flask) -> None:
    from .errors import register_error_handlers

    register_error_handlers(app)


def register_blueprints(app: Flask, settings: Settings) -> None:
    from .api import bp as v1
    from .api.docs import bp as docs
    from .api.health import bp as health
    from .api.vllm import root

    app.register_blueprint(v1)
    app.register_blueprint(root)
    app.register_blueprint(health)
    app.register_blueprint(docs)
    if not settings.metrics_bind:  # else gunicorn's master serves /metrics on that bind
        from .api.metrics import bp as metrics

        app.register_blueprint(metrics)
    if settings.admin_token:
        from .admin import bp as admin

        app.register_blueprint(admin)
    if settings.secret_key:
        from .dashboard import init_app as dashboard

        dashboard(app, settings)


def register_commands(app: Flask) -> None:
    from .cli import register

    register(app)
