"""Shared fixtures: apps on SQLite/PostgreSQL, and live processes on 127.0.0.1.

Live tests start real processes: the simulated vLLM (``python -m packet.devserver``) and the
gateway under gunicorn with the gevent worker, exactly as the Procfile runs it. PostgreSQL and
Redis are used when ``TEST_DATABASE_URL`` / ``TEST_REDIS_URL`` are set (``.ci/run`` sets them
when the servers answer) and skipped with a reason otherwise.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import requests
from openai import OpenAI

from packet import create_app, store
from packet.config import normalize_database_url

ROOT = Path(__file__).resolve().parent.parent
POSTGRES_URL = os.environ.get("TEST_DATABASE_URL")
REDIS_URL = os.environ.get("TEST_REDIS_URL")
needs_postgres = pytest.mark.skipif(
    not POSTGRES_URL, reason="TEST_DATABASE_URL not set (no PostgreSQL on this machine)"
)
needs_redis = pytest.mark.skipif(
    not REDIS_URL, reason="TEST_REDIS_URL not set (no Redis on this machine)"
)
BACKENDS = ["sqlite", pytest.param("postgres", marks=needs_postgres)]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(url: str, proc: subprocess.Popen, log: Path, timeout: float = 30.0) -> None:
    """Poll ``url`` until it answers; fail with the process log if the process dies."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"process exited ({proc.returncode}):\n{log.read_text()[-3000:]}")
        try:
            requests.get(url, timeout=1)
            return
        except requests.RequestException:
            time.sleep(0.05)
    raise RuntimeError(f"{url} did not answer in {timeout}s:\n{log.read_text()[-3000:]}")


@dataclass
class RawAnswer:
    """What a server sent back on one raw connection, and whether it then closed it."""

    data: bytes
    closed: bool
    elapsed: float

    @property
    def status(self) -> int | None:
        line = self.data.split(b"\r\n", 1)[0].split()
        return int(line[1]) if len(line) > 1 and line[1].isdigit() else None

    @property
    def headers(self) -> dict[str, str]:
        head = self.data.split(b"\r\n\r\n", 1)[0].decode("latin-1").split("\r\n")[1:]
        return {k.strip().lower(): v.strip() for k, _, v in (h.partition(":") for h in head)}

    @property
    def body(self) -> bytes:
        body = self.data.split(b"\r\n\r\n", 1)[1] if b"\r\n\r\n" in self.data else b""
        return body[: int(self.headers.get("content-length", len(body)))]


def _read_answer(sock: socket.socket, started: float, deadline: float) -> RawAnswer:
    """Read until the server closes the connection (or resets it) or ``deadline`` passes."""
    data = b""
    for _ in range(10_000):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return RawAnswer(data, False, time.monotonic() - started)
        sock.settimeout(remaining)
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            continue
        except ConnectionResetError:
            chunk = b""
        if not chunk:
            return RawAnswer(data, True, time.monotonic() - started)
        data += chunk
    raise RuntimeError("the server kept sending")


def raw_request(
    url: str, data: bytes, *, timeout: float = 10.0, half_close: bool = False
) -> RawAnswer:
    """Send ``data`` as is on a new connection to ``url`` (for requests no client library will
    send) and read until the server closes it or ``timeout`` seconds pass. ``half_close``
    ends the sending side, as a client whose body was cut short does."""
    host, port = url.removeprefix("http://").split(":")
    started = time.monotonic()
    with socket.create_connection((host, int(port)), timeout=timeout) as sock:
        sock.sendall(data)
        if half_close:
            sock.shutdown(socket.SHUT_WR)
        return _read_answer(sock, started, started + timeout)


def trickle(url: str, head: bytes, drip: bytes, *, interval: float, limit: float) -> RawAnswer:
    """Send ``head``, then ``drip`` one byte every ``interval`` seconds until the server answers
    or closes the connection; give up (``closed`` false) after ``limit`` seconds."""
    host, port = url.removeprefix("http://").split(":")
    started = time.monotonic()
    deadline = started + limit
    with socket.create_connection((host, int(port)), timeout=limit) as sock:
        sock.sendall(head)
        for byte in drip:
            sock.settimeout(interval)
            try:
                if sock.recv(65536, socket.MSG_PEEK):
                    break  # an answer (or the end of the connection) is there: read it
                return RawAnswer(b"", True, time.monotonic() - started)
            except TimeoutError:
                pass
            except ConnectionResetError:
                return RawAnswer(b"", True, time.monotonic() - started)
            if time.monotonic() >= deadline:
                return RawAnswer(b"", False, time.monotonic() - started)
            try:
                sock.sendall(bytes([byte]))
            except (BrokenPipeError, ConnectionResetError):
                return RawAnswer(b"", True, time.monotonic() - started)
        return _read_answer(sock, started, deadline)


def clean_env(**overrides: str) -> dict[str, str]:
    """The process environment without any gateway settings, plus ``overrides``."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("PACKET_", "GUNICORN_"))
        and k
        not in ("DATABASE_URL", "REDIS_URL", "PORT", "WEB_CONCURRENCY", "PROMETHEUS_MULTIPROC_DIR")
    }
    env.update(overrides)
    return env


class Process:
    """A child process with its log file, stopped at teardown."""

    def __init__(
        self, args: list[str], env: dict[str, str], log: Path, user: str | None = None
    ) -> None:
        self.log = log
        self._log_file = log.open("wb")
        self.proc = subprocess.Popen(
            args,
            cwd=ROOT,
            env=env,
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            user=user,
        )

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> int | None:
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
        self._log_file.close()
        return self.proc.returncode

    def output(self) -> str:
        self._log_file.flush()
        return self.log.read_text(errors="replace")


class Sim(Process):
    """A simulated vLLM server on a free port."""

    def __init__(self, tmp: Path, *args: str, port: int | None = None, wait: bool = True) -> None:
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        super().__init__(
            [sys.executable, "-m", "packet.devserver", "--port", str(self.port), *args],
            clean_env(),
            tmp / f"sim-{self.port}-{uuid.uuid4().hex[:6]}.log",
        )
        if wait:
            wait_for(f"{self.url}/health", self.proc, self.log)

    def requests(self) -> list[dict]:
        return requests.get(f"{self.url}/_sim/requests", timeout=5).json()["data"]

    def request(self, request_id: str) -> dict:
        return next(r for r in self.requests() if r["request_id"] == request_id)


class Gateway(Process):
    """The real gateway: gunicorn + gevent worker, configured through the environment."""

    def __init__(self, tmp: Path, env: dict[str, str], workers: int = 1) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        full_env = clean_env(
            PORT=str(self.port),
            HOST="127.0.0.1",
            WEB_CONCURRENCY=str(workers),
            **({"PACKET_USAGE_FLUSH_INTERVAL": "0.1"} | env),
        )
        super().__init__(
            [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "wsgi:app"],
            full_env,
            tmp / f"gateway-{self.port}.log",
        )
        wait_for(f"{self.url}/health", self.proc, self.log)

    def client(self, key: str, **kwargs) -> OpenAI:
        """The official SDK pointed at this gateway (no retries unless asked)."""
        kwargs.setdefault("max_retries", 0)
        return OpenAI(base_url=f"{self.url}/v1", api_key=key, **kwargs)

    def workers(self, count: int, timeout: float = 30.0) -> list[int]:
        """The pids of the master's ``count`` booted workers (the master itself is ``proc``)."""
        children = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children")
        deadline = time.monotonic() + timeout
        while True:
            pids = [int(pid) for pid in children.read_text().split()]
            if len(pids) >= count:
                return pids
            assert time.monotonic() < deadline, f"{len(pids)} of {count} workers booted"
            time.sleep(0.05)

    @staticmethod
    def connections_to(pid: int, port: int) -> int:
        """How many established TCP connections process ``pid`` holds to ``port`` (Linux)."""
        fds = Path(f"/proc/{pid}/fd")
        links = (os.readlink(fd) for fd in fds.iterdir())
        sockets = {link[8:-1] for link in links if link.startswith("socket:[")}
        count = 0
        for line in Path(f"/proc/{pid}/net/tcp").read_text().splitlines()[1:]:
            fields = line.split()
            remote_port, state, inode = int(fields[2].split(":")[1], 16), fields[3], fields[9]
            count += remote_port == port and state == "01" and inode in sockets
        return count


@dataclass
class Database:
    """One migrated database and a Flask app bound to it, for setting up accounts."""

    backend: str
    url: str
    app: object = field(repr=False)

    def account(
        self,
        tier: str = "standard",
        balance_micros: int = 25_000_000,
        endpoints: tuple[str, ...] = (),
        default_model: str | None = None,
        upstream_key: str | None = None,
    ) -> tuple[str, str]:
        """A new account with one key: (name, key)."""
        name = f"acct-{uuid.uuid4().hex[:10]}"
        with self.app.app_context():
            store.create_account(name, tier, balance_micros, default_model)
            for url in endpoints:
                store.add_endpoint(name, url, upstream_key)
            _, key = store.create_key(name, "test")
        return name, key

    def run(self, fn: Callable, *args, **kwargs):
        """Call a store function inside the app context."""
        with self.app.app_context():
            return fn(*args, **kwargs)


def _migrated_app(url: str, **env: str):
    from flask_migrate import upgrade

    app = create_app({"DATABASE_URL": url, "PACKET_USAGE_FLUSH_INTERVAL": "0", **env})
    with app.app_context():
        upgrade()
    return app


@pytest.fixture(scope="session")
def _databases(tmp_path_factory) -> Iterator[dict[str, Database]]:
    made: dict[str, Database] = {}
    dropped: list[str] = []
    sqlite_url = f"sqlite:///{tmp_path_factory.mktemp('db') / 'packet.db'}"
    made["sqlite"] = Database("sqlite", sqlite_url, _migrated_app(sqlite_url))
    if POSTGRES_URL:
        import psycopg

        name = f"packet_test_{uuid.uuid4().hex[:8]}"
        admin_url = normalize_database_url(POSTGRES_URL).replace("postgresql+psycopg", "postgresql")
        with psycopg.connect(admin_url, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        url = admin_url.rsplit("/", 1)[0] + f"/{name}"
        made["postgres"] = Database("postgres", url, _migrated_app(url))
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


class Launcher:
    """Starts sims and gateways into one folder and stops them all at teardown."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.sims: list[Sim] = []
        self.gateways: list[Gateway] = []

    def sim(self, *args: str, **kwargs) -> Sim:
        """``sim("--model", "m", "--token-delay", "0.01")``."""
        sim = Sim(self.folder, *args, **kwargs)
        self.sims.append(sim)
        return sim

    def gateway(
        self,
        database: Database,
        upstreams: list[str] | tuple[str, ...] = (),
        workers: int = 1,
        **env: str,
    ) -> Gateway:
        """``gateway(database, upstreams=[sim.url], PACKET_X="…")``."""
        settings = {
            "DATABASE_URL": database.url,
            "PACKET_UPSTREAMS": ",".join(upstreams),
            "PACKET_LIMIT_KEY_PREFIX": f"t{uuid.uuid4().hex[:8]}",
        }
        settings.update(env)
        gateway = Gateway(self.folder, settings, workers)
        self.gateways.append(gateway)
        return gateway

    def close(self) -> None:
        # SIGINT is gunicorn's quick shutdown: it still runs worker_exit (usage flush).
        for gateway in self.gateways:
            gateway.stop(signal.SIGINT)
        for sim in self.sims:
            sim.stop(signal.SIGKILL)


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
    return _migrated_app(f"sqlite:///{tmp_path / 'unit.db'}")


@pytest.fixture
def make_app(tmp_path) -> Callable[..., object]:
    """``make_app(PACKET_X="…")``: like ``app``, with those settings."""
    return lambda **env: _migrated_app(f"sqlite:///{tmp_path / uuid.uuid4().hex}.db", **env)


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def runner(app):
    return app.test_cli_runner()


# --- private Redis and PostgreSQL, which a test may stop, kill and restart ----------------------


class RedisServer:
    """A redis-server of the test's own on a free port (never the shared one)."""

    def __init__(self, folder: Path) -> None:
        self.folder, self.port, self.process = folder, free_port(), None
        self.url = f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        import redis

        self.process = Process(
            [
                *("redis-server", "--port", str(self.port), "--bind", "127.0.0.1"),
                *("--save", "", "--appendonly", "no"),
            ],
            clean_env(),
            self.folder / f"redis-{uuid.uuid4().hex[:6]}.log",
        )
        client = redis.Redis(port=self.port, socket_connect_timeout=0.5)
        deadline = time.monotonic() + 10
        while True:
            with contextlib.suppress(redis.RedisError):
                if client.ping():
                    return
            assert time.monotonic() < deadline, self.process.output()
            time.sleep(0.05)

    def kill(self) -> None:
        if self.process is not None:
            self.process.stop(signal.SIGKILL)
            self.process = None


@pytest.fixture
def private_redis(tmp_path) -> Iterator[RedisServer]:
    if not shutil.which("redis-server"):
        pytest.skip("redis-server is not installed")
    server = RedisServer(tmp_path)
    yield server
    server.kill()


def _postgres_bin() -> Path | None:
    """The folder of initdb and postgres: on PATH, or Debian's versioned folder."""
    found = shutil.which("initdb")
    if found:
        return Path(found).resolve().parent
    folders = sorted(Path("/usr/lib/postgresql").glob("*/bin"))
    return folders[-1] if folders else None


class PostgresServer:
    """A PostgreSQL cluster of the test's own (initdb in a temporary folder, a free port), run
    as the ``postgres`` user when the tests run as root, since the server refuses root."""

    def __init__(self, bindir: Path, folder: Path) -> None:
        self.bindir, self.folder, self.port, self.process = bindir, folder, free_port(), None
        self.user = "postgres" if os.geteuid() == 0 else None
        self.data = folder / "data"
        if self.user:
            shutil.chown(folder, self.user)
        subprocess.run(
            [
                *(bindir / "initdb", "-D", self.data, "-U", "postgres", "--auth=trust"),
                *("--no-sync", "-E", "UTF8", "--locale=C"),
            ],
            check=True,
            capture_output=True,
            user=self.user,
            env=clean_env(LC_ALL="C"),
        )
        self.admin_url = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def start(self) -> None:
        import psycopg

        self.process = Process(
            [
                *(str(self.bindir / "postgres"), "-D", str(self.data), "-p", str(self.port)),
                *("-k", str(self.folder), "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off"),
            ],
            clean_env(LC_ALL="C"),
            self.folder / f"postgres-{uuid.uuid4().hex[:6]}.log",
            user=self.user,
        )
        deadline = time.monotonic() + 30
        while True:
            with contextlib.suppress(psycopg.OperationalError):
                psycopg.connect(self.admin_url, connect_timeout=1).close()
                return
            assert time.monotonic() < deadline, self.process.output()
            time.sleep(0.05)

    def stop(self) -> None:
        """PostgreSQL's fast shutdown: open connections are closed at once."""
        if self.process is not None:
            self.process.stop(signal.SIGINT)
            self.process = None

    def database(self) -> Database:
        """A new migrated database on this server, for a gateway and its accounts."""
        import psycopg

        name = f"packet_{uuid.uuid4().hex[:8]}"
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        url = self.admin_url.rsplit("/", 1)[0] + f"/{name}"
        return Database("postgres", url, _migrated_app(url))


@pytest.fixture
def private_postgres() -> Iterator[PostgresServer]:
    bindir = _postgres_bin()
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
