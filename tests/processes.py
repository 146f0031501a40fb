"""The processes and databases the tests start, importable by tests and the benchmarks.

The simulated vLLM (``python -m packet.devserver``), the gateway under gunicorn with the gevent
worker exactly as the Procfile runs it, a migrated database with an app to set up accounts,
and private redis-server and PostgreSQL instances a test may stop and start. The fixtures that
start them are in ``conftest.py``.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import requests
from openai import OpenAI

from packet import create_app, store

ROOT = Path(__file__).resolve().parent.parent
POSTGRES_URL = os.environ.get("TEST_DATABASE_URL")
REDIS_URL = os.environ.get("TEST_REDIS_URL")
needs_postgres = pytest.mark.skipif(
    not POSTGRES_URL, reason="TEST_DATABASE_URL not set (no PostgreSQL on this machine)"
)
needs_redis = pytest.mark.skipif(
    not REDIS_URL, reason="TEST_REDIS_URL not set (no Redis on this machine)"
)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(
    url: str, proc: subprocess.Popen, log: Path, *, status: int = 200, timeout: float = 30.0
) -> requests.Response:
    """Poll ``url`` until it answers ``status`` (200: ready; a test that needs another readiness
    answer, a 503 while loading, names it); fail with the process log if the process dies."""
    deadline = time.monotonic() + timeout
    last = "no answer"
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"process exited ({proc.returncode}):\n{log.read_text()[-3000:]}")
        try:
            response = requests.get(url, timeout=1)
            if response.status_code == status:
                return response
            last = f"{response.status_code} {response.text[:200]}"
        except requests.RequestException as exc:
            last = type(exc).__name__
        time.sleep(0.05)
    raise RuntimeError(
        f"{url} did not answer {status} in {timeout}s (last: {last}):\n{log.read_text()[-3000:]}"
    )


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

    url: str

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

    def wait(self, status: int = 200, timeout: float = 30.0) -> None:
        """Wait until ``/health`` answers ``status``."""
        wait_for(f"{self.url}/health", self.proc, self.log, status=status, timeout=timeout)


class Sim(Process):
    """A simulated vLLM server on a free port; ``health``: the /health status to wait for
    (503 for a sim started ``--loading-seconds``), none with ``wait=False``."""

    def __init__(
        self,
        tmp: Path,
        *args: str,
        port: int | None = None,
        wait: bool = True,
        health: int = 200,
    ) -> None:
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        super().__init__(
            [sys.executable, "-m", "packet.devserver", "--port", str(self.port), *args],
            clean_env(),
            tmp / f"sim-{self.port}-{uuid.uuid4().hex[:6]}.log",
        )
        if wait:
            self.wait(health)

    def requests(self) -> list[dict]:
        return requests.get(f"{self.url}/_sim/requests", timeout=5).json()["data"]

    def probes(self) -> dict[str, int]:
        """How many discovery probes (``/health``, ``/v1/models``) it has answered."""
        return requests.get(f"{self.url}/_sim/probes", timeout=5).json()

    def request(self, request_id: str) -> dict:
        return next(r for r in self.requests() if r["request_id"] == request_id)


class Gateway(Process):
    """The real gateway: gunicorn + gevent worker, configured through the environment;
    ``health``: the /health status to wait for (503 when its limit storage is down)."""

    def __init__(self, tmp: Path, env: dict[str, str], workers: int = 1, health: int = 200) -> None:
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
        self.wait(health)

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


class BatchWorker(Process):
    """The batch worker (``python worker.py``, what ``flask --app app worker`` runs)."""

    def __init__(self, tmp: Path, env: dict[str, str]) -> None:
        full_env = clean_env(**({"PACKET_BATCH_POLL_SECONDS": "0.2"} | env))
        super().__init__(
            [sys.executable, "worker.py"], full_env, tmp / f"worker-{uuid.uuid4().hex[:6]}.log"
        )
        deadline = time.monotonic() + 30
        while "batch worker" not in self.output():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the batch worker did not start:\n{self.output()[-3000:]}")
            time.sleep(0.05)


class S3Server(Process):
    """moto's S3 server (``moto[server]``) on a free port, and the ``AWS_*`` settings that
    point boto3 at it."""

    def __init__(self, tmp: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        super().__init__(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
            clean_env(),
            tmp / f"s3-{self.port}.log",
        )
        wait_for(f"{self.url}/moto-api/", self.proc, self.log)
        self.env = {
            "AWS_ENDPOINT_URL": self.url,
            "AWS_ACCESS_KEY_ID": "test",
            "AWS_SECRET_ACCESS_KEY": "test",
            "AWS_DEFAULT_REGION": "us-east-1",
        }


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


def migrated_app(url: str, **env: str):
    from flask_migrate import upgrade

    app = create_app({"DATABASE_URL": url, "PACKET_USAGE_FLUSH_INTERVAL": "0", **env})
    with app.app_context():
        upgrade()
    return app


class Launcher:
    """Starts sims and gateways into one folder and stops them all at teardown."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.sims: list[Sim] = []
        self.gateways: list[Gateway] = []
        self.workers: list[BatchWorker] = []

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
        health: int = 200,
        **env: str,
    ) -> Gateway:
        """``gateway(database, upstreams=[sim.url], PACKET_X="…")``; ``health``: the /health
        status to wait for."""
        settings = {
            "DATABASE_URL": database.url,
            "PACKET_UPSTREAMS": ",".join(upstreams),
            "PACKET_LIMIT_KEY_PREFIX": f"t{uuid.uuid4().hex[:8]}",
        }
        settings.update(env)
        gateway = Gateway(self.folder, settings, workers, health)
        self.gateways.append(gateway)
        return gateway

    def worker(
        self, database: Database, upstreams: list[str] | tuple[str, ...] = (), **env: str
    ) -> BatchWorker:
        """A batch worker on ``database``, its shared pool ``upstreams``."""
        settings = {"DATABASE_URL": database.url, "PACKET_UPSTREAMS": ",".join(upstreams)}
        worker = BatchWorker(self.folder, settings | env)
        self.workers.append(worker)
        return worker

    def close(self) -> None:
        for worker in self.workers:
            worker.stop(signal.SIGKILL)
        # SIGINT is gunicorn's quick shutdown: it still runs worker_exit (usage flush).
        for gateway in self.gateways:
            gateway.stop(signal.SIGINT)
        for sim in self.sims:
            sim.stop(signal.SIGKILL)


@dataclass
class Live:
    """The processes a module's tests share (the ``live`` fixture): a simulated vLLM and a
    gateway in front of it, on ``database``."""

    database: Database
    sim: Sim
    gateway: Gateway


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


def postgres_bin() -> Path | None:
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
        return Database("postgres", url, migrated_app(url))
