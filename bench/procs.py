"""Child processes of a benchmark run (sim, bare passthrough, gateway, load generator).

Each process gets its own log under the run folder, its own session (so it is stopped with
its children), an open-files limit raised to the hard limit (1,000 streams need thousands of
sockets) and, where ``taskset`` exists, a CPU core.
"""

from __future__ import annotations

import contextlib
import json
import os
import resource
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
GATEWAY_CORE, LOAD_CORE = "0", "1"
_CLK_TCK = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def pinning_available() -> bool:
    """Pin only on a machine with at least two cores and ``taskset``."""
    return shutil.which("taskset") is not None and (os.cpu_count() or 1) >= 2


def _raise_nofile() -> None:
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def base_env(**overrides: str) -> dict[str, str]:
    """This environment without gateway settings (a developer's shell may have some)."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("PACKET_", "GUNICORN_"))
        and k not in ("DATABASE_URL", "REDIS_URL", "PORT", "WEB_CONCURRENCY", "LOG_LEVEL")
    }
    env.update(overrides)
    return env


class Child:
    """One child process with its log, optionally pinned to a core."""

    proc: subprocess.Popen[Any]  # bytes for the servers, text for the load generator

    def __init__(
        self, name: str, args: list[str], env: dict[str, str], folder: Path, core: str | None
    ) -> None:
        self.name = name
        self.log = folder / f"{name}.log"
        if core is not None and pinning_available():
            args = ["taskset", "-c", core, *args]
        with self.log.open("wb") as log:
            self.proc = subprocess.Popen(
                args,
                cwd=ROOT,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                preexec_fn=_raise_nofile,
            )

    def wait_http(self, url: str, timeout: float = 30.0) -> None:
        """Poll ``url`` until it answers; show the log if the process died."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited:\n{self.log.read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(url, timeout=1):
                    return
            except OSError as exc:
                if getattr(exc, "code", None):  # an HTTP error status is an answer
                    return
                time.sleep(0.1)
        raise RuntimeError(f"{self.name}: {url} did not answer in {timeout}s")

    def stop(self) -> None:
        """SIGINT (gunicorn's quick shutdown, still flushing usage), then SIGKILL if needed."""
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGINT)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)


class Server(Child):
    """A child serving HTTP on 127.0.0.1:``port``."""

    def __init__(
        self, name: str, args: list[str], env: dict[str, str], folder: Path, port: int, core: str
    ) -> None:
        super().__init__(name, args, env, folder, core)
        self.port = port
        self.url = f"http://127.0.0.1:{port}"

    def worker_pid(self) -> int:
        """The single gunicorn worker (the master's only child)."""
        children = child_pids(self.proc.pid)
        if not children:
            raise RuntimeError(f"{self.name}: no gunicorn worker found")
        return children[0]


def child_pids(parent: int) -> list[int]:
    """The processes whose parent is ``parent`` (from ``/proc``)."""
    children = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                if int(fields[1]) == parent:
                    children.append(int(entry.name))
    return children


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system) of every thread of ``pid`` so far.

    ``schedstat`` counts nanoseconds; ``stat`` (clock ticks, 10 ms) is the fallback.
    """
    tasks = Path(f"/proc/{pid}/task")
    try:
        return sum(int((t / "schedstat").read_text().split()[0]) for t in tasks.iterdir()) / 1e9
    except (OSError, ValueError, IndexError):
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / _CLK_TCK


def rss_bytes(pid: int) -> int:
    """Resident set size of ``pid``."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


class LoadGenerator(Child):
    """``bench.load`` kept running; one job per line in, one result per line out."""

    proc: subprocess.Popen[str]

    def __init__(self, folder: Path) -> None:
        self.name = "load"
        self.log = folder / "load.log"
        args = [sys.executable, "-m", "bench.load"]
        if pinning_available():
            args = ["taskset", "-c", LOAD_CORE, *args]
        with self.log.open("wb") as log:
            self.proc = subprocess.Popen(
                args,
                cwd=ROOT,
                env=base_env(),
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=log,
                start_new_session=True,
                preexec_fn=_raise_nofile,
                text=True,
            )

    def run(self, job: dict[str, Any]) -> dict[str, Any]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(json.dumps(job) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"load generator exited:\n{self.log.read_text()[-3000:]}")
        return json.loads(line)

    def stop(self) -> None:
        if self.proc.stdin is not None:
            with contextlib.suppress(OSError):
                self.proc.stdin.close()
        super().stop()


@contextlib.contextmanager
def private_database(url: str | None, folder: Path) -> Iterator[str]:
    """A private database: a SQLite file, or a PostgreSQL database made and dropped here."""
    if not url:
        yield f"sqlite:///{folder / 'bench.db'}"
        return
    import psycopg

    from packet.config import normalize_database_url

    admin = normalize_database_url(url).replace("postgresql+psycopg", "postgresql")
    name = f"packet_bench_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield admin.rsplit("/", 1)[0] + f"/{name}"
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
