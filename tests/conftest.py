"""Shared fixtures: apps on SQLite/PostgreSQL, and live processes on 127.0.0.1.

Live tests (``tests/live/``) start real processes: the simulated vLLM and the gateway under
gunicorn with the gevent worker; the classes that run them are in ``tests/processes.py``, plain
helpers (requests, raw sockets, polling, prices) in ``tests/helpers.py``. PostgreSQL and Redis
are used when ``TEST_DATABASE_URL`` / ``TEST_REDIS_URL`` are set (``.ci/run`` sets them when
the servers answer) and skipped with a reason otherwise.
"""

from __future__ import annotations

import shutil
import tempfile
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from processes import (
    POSTGRES_URL,
    Database,
    Gateway,
    Launcher,
    Live,
    PostgresServer,
    RedisServer,
    Sim,
    migrated_app,
    needs_postgres,
    postgres_bin,
)

from packet.config import normalize_database_url

BACKENDS = ["sqlite", pytest.param("postgres", marks=needs_postgres)]


@pytest.fixture(scope="session")
def _databases(tmp_path_factory) -> Iterator[dict[str, Database]]:
    made: dict[str, Database] = {}
    dropped: list[str] = []
    sqlite_url = f"sqlite:///{tmp_path_factory.mktemp('db') / 'packet.db'}"
    made["sqlite"] = Database("sqlite", sqlite_url, migrated_app(sqlite_url))
    if POSTGRES_URL:
        import psycopg

        name = f"packet_test_{uuid.uuid4().hex[:8]}"
        admin_url = normalize_database_url(POSTGRES_URL).replace("postgresql+psycopg", "postgresql")
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        url = admin_url.rsplit("/", 1)[0] + f"/{name}"
        made["postgres"] = Database("postgres", url, migrated_app(url))
        dropped.append(name)
    yield made
    for db in made.values():
        with db.app.app_context():
            from packet.extensions import db as sqla

            sqla.engine.dispose()
    for name in dropped:
        import psycopg

        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="module", params=BACKENDS)
def database(request, _databases) -> Database:
    """Each test using this runs on SQLite and, when available, PostgreSQL."""
    return _databases[request.param]


@pytest.fixture
def sqlite_database(_databases) -> Database:
    return _databases["sqlite"]


@pytest.fixture
def postgres_database(_databases) -> Database:
    if "postgres" not in _databases:
        pytest.skip("TEST_DATABASE_URL not set (no PostgreSQL on this machine)")
    return _databases["postgres"]


@pytest.fixture
def launcher(tmp_path) -> Iterator[Launcher]:
    launched = Launcher(tmp_path)
    yield launched
    launched.close()


@pytest.fixture(scope="module")
def module_launcher(tmp_path_factory) -> Iterator[Launcher]:
    """For modules whose tests can share processes (one start per module)."""
    launched = Launcher(tmp_path_factory.mktemp("procs"))
    yield launched
    launched.close()


@pytest.fixture(scope="module")
def module_sim(module_launcher) -> Sim:
    """One simulated vLLM shared by the module's tests."""
    return module_launcher.sim()


@pytest.fixture(scope="module")
def live_env() -> dict[str, str]:
    """Settings (``PACKET_…``) of the gateway ``live`` starts: none; a module that needs its
    own overrides this fixture."""
    return {}


@pytest.fixture(scope="module")
def live_database(_databases) -> Database:
    """The database of the gateway ``live`` starts: SQLite; a module overrides this fixture
    (``return database``) to run on each backend."""
    return _databases["sqlite"]


@pytest.fixture(scope="module")
def live(module_launcher, module_sim, live_database, live_env) -> Live:
    """A simulated vLLM and a gateway in front of it, started once for the module's tests."""
    gateway = module_launcher.gateway(live_database, upstreams=[module_sim.url], **live_env)
    return Live(live_database, module_sim, gateway)


@pytest.fixture
def start_sim(launcher) -> Callable[..., Sim]:
    return launcher.sim


@pytest.fixture
def start_gateway(launcher) -> Callable[..., Gateway]:
    return launcher.gateway


@pytest.fixture
def sim(start_sim) -> Sim:
    """One simulated vLLM with the default model."""
    return start_sim()


@pytest.fixture
def gateway(start_gateway, sqlite_database, sim) -> Gateway:
    """A gateway on SQLite whose shared pool is ``sim``."""
    return start_gateway(sqlite_database, upstreams=[sim.url])


@pytest.fixture
def app(tmp_path):
    """A migrated app on a fresh SQLite file, for unit tests with Flask's test client."""
    return migrated_app(f"sqlite:///{tmp_path / 'unit.db'}")


@pytest.fixture
def make_app(tmp_path) -> Callable[..., object]:
    """``make_app(PACKET_X="…")``: like ``app``, with those settings."""
    return lambda **env: migrated_app(f"sqlite:///{tmp_path / uuid.uuid4().hex}.db", **env)


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def runner(app):
    return app.test_cli_runner()


@pytest.fixture
def private_redis(tmp_path) -> Iterator[RedisServer]:
    if not shutil.which("redis-server"):
        pytest.skip("redis-server is not installed")
    server = RedisServer(tmp_path)
    yield server
    server.kill()


@pytest.fixture
def private_postgres() -> Iterator[PostgresServer]:
    bindir = postgres_bin()
    if bindir is None or not (bindir / "postgres").exists():
        pytest.skip("PostgreSQL's server binaries (initdb, postgres) are not installed")
    # Not under tmp_path: pytest's folders are private to the user running the tests.
    folder = Path(tempfile.mkdtemp(prefix="packet-pg-"))
    try:
        server = PostgresServer(bindir, folder)
        server.start()
        yield server
        server.stop()
    finally:
        shutil.rmtree(folder, ignore_errors=True)
