"""``make bench``: start the simulated vLLM, a bare passthrough and the gateway, load them from
a separate process and print one table (direct upstream vs bare vs gateway).

The gateway runs as in production: gunicorn, one gevent worker, SQLite (or ``--database-url``),
auth, tier limits and metering on, a non-zero price so every request reserves and settles.
Where ``taskset`` exists, the gateway and the bare passthrough share core 0 and the simulator
and the load generator core 1. CPU time is read from ``/proc`` for the worker process itself,
the figure a busy machine disturbs least.

With ``--litellm`` (``make bench-litellm``) the LiteLLM proxy, installed from PyPI into its own
venv, gets the same load as a fourth target on the gateway's core (see ``bench/litellm.py``).

    make bench                  # 3–5 minutes
    make bench BENCH_ARGS=--quick
    make bench BENCH_ARGS="--runs 3 --redis-url redis://127.0.0.1:6379/0"   # medians of 3
    make bench-litellm
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, TypeVar

from . import litellm
from .procs import (
    GATEWAY_CORE,
    LOAD_CORE,
    ROOT,
    LoadGenerator,
    Server,
    base_env,
    cpu_seconds,
    free_port,
    pinning_available,
    private_database,
    rss_bytes,
)
from .report import render

MODEL = "bench/sim-model"
TIERS = '{"bench": {"rpm": 100000000, "tpm": 1000000000000}}'
PROMPT = [{"role": "user", "content": "Say hello to the benchmark, in sixteen words."}]
RESULTS = Path(__file__).resolve().parent / "results"
PROD_DATABASE = "postgresql://postgres@127.0.0.1:5432/test"
PROD_REDIS = "redis://127.0.0.1:6379/0"
JSON = {"Content-Type": "application/json"}
T = TypeVar("T")


@dataclass(frozen=True)
class Plan:
    """How much load each phase sends (every loop is bounded by count and by seconds)."""

    requests: int
    seconds: float
    stream_tokens: int
    streams_fast: int
    slow_streams_c: int
    slow_stream_tokens: int
    many_streams: int
    many_tokens: int
    many_delay: float
    many_ramp: float
    ttft_streams: int


FULL = Plan(3000, 8.0, 256, 300, 16, 100, 1000, 20, 0.5, 3.0, 60)
QUICK = Plan(800, 3.0, 256, 80, 16, 50, 200, 10, 0.5, 1.0, 20)


@dataclass
class Target:
    """Where a phase sends its load, and the process whose CPU it costs (None: not measured)."""

    name: str
    server: Server
    headers: dict[str, str]
    pid: int | None


@dataclass(frozen=True)
class Route:
    """A route a phase loads: its path, its body for ``tokens`` tokens, how its stream ends."""

    path: str
    body: Callable[[int], dict[str, Any]]
    end: str = "[DONE]"


CHAT = Route(
    "/v1/chat/completions", lambda n: {"model": MODEL, "messages": PROMPT, "max_tokens": n}
)
HELLO = [{"role": "user", "content": "Say hello to the benchmark."}]
# The other routes' rows: name → (route, streamed). Each is loaded like chat's c=16 row (or its
# 0 ms/token stream) against the bare passthrough of the same route.
ROUTES: dict[str, tuple[Route, bool]] = {
    "embeddings": (
        Route(
            "/v1/embeddings",
            lambda _n: {"model": MODEL, "input": ["Embed this sentence, please."] * 4},
        ),
        False,
    ),
    "rerank": (
        Route(
            "/v1/rerank",
            lambda _n: {"model": MODEL, "query": "cat", "documents": ["a cat", "a dog", "a hat"]},
        ),
        False,
    ),
    "tokenize": (Route("/tokenize", lambda _n: {"model": MODEL, "prompt": "Count me."}), False),
    "responses_stream": (
        Route(
            "/v1/responses",
            lambda n: {"model": MODEL, "input": PROMPT[0]["content"], "max_output_tokens": n},
            "response.completed",
        ),
        True,
    ),
    "messages_stream": (
        Route(
            "/v1/messages",
            lambda n: {"model": MODEL, "messages": HELLO, "max_tokens": n},
            "message_stop",
        ),
        True,
    ),
}


class Bench:
    """One benchmark run: processes, phases, results."""

    def __init__(self, args: argparse.Namespace, folder: Path) -> None:
        self.args = args
        plan = QUICK if args.quick else FULL
        if args.many_streams:
            plan = replace(plan, many_streams=min(args.many_streams, 10_000))
        self.plan = plan
        self.folder = folder
        self.servers: list[Server] = []
        self.load: LoadGenerator | None = None
        self.results: dict[str, dict[str, Any]] = {}

    # --- processes ----------------------------------------------------------------------------

    def start(self) -> list[Target]:
        sim_port = free_port()
        sim = self._serve(
            "sim",
            [sys.executable, "-m", "packet.devserver", "--port", str(sim_port), "--model", MODEL],
            base_env(),
            sim_port,
            LOAD_CORE,
            "/health",
        )
        gateway_env = self._gateway_env(sim.url)
        key = self._account(gateway_env)
        bare_port = free_port()
        bare = self._serve(
            "bare",
            self._gunicorn("bench.bare:create_app()"),
            base_env(
                **self._gunicorn_env(bare_port, "bare"), BARE_UPSTREAM=sim.url, LOG_LEVEL="INFO"
            ),
            bare_port,
            GATEWAY_CORE,
            "/health",
        )
        gateway = self._serve(
            "gateway",
            self._gunicorn("wsgi:app"),
            gateway_env,
            int(gateway_env["PORT"]),
            GATEWAY_CORE,
            "/health",
        )
        targets = [
            Target("direct", sim, JSON, None),
            Target("bare", bare, JSON, bare.worker_pid()),
            Target("gateway", gateway, JSON | _bearer(key), gateway.worker_pid()),
        ]
        if self.args.litellm:
            targets.append(self._litellm(sim.url))
        self.load = LoadGenerator(self.folder)
        return targets

    def _litellm(self, upstream: str) -> Target:
        """The LiteLLM proxy on the gateway's core, keyed with its master key."""
        port = free_port()
        peer = self._serve(
            "litellm",
            litellm.prepare(self.folder, MODEL, upstream, port),
            litellm.environment(),
            port,
            GATEWAY_CORE,
            litellm.READY,
            litellm.START_SECONDS,
        )
        headers = JSON | _bearer(litellm.MASTER_KEY)
        return Target("litellm", peer, headers, litellm.serving_pid(peer))

    def _serve(
        self,
        name: str,
        args: list[str],
        env: dict[str, str],
        port: int,
        core: str,
        probe: str,
        timeout: float = 30.0,
    ) -> Server:
        server = Server(name, args, env, self.folder, port, core)
        self.servers.append(server)
        server.wait_http(server.url + probe, timeout)
        return server

    @staticmethod
    def _gunicorn(app: str) -> list[str]:
        return [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", app]

    def _gunicorn_env(self, port: int, name: str) -> dict[str, str]:
        metrics = self.folder / f"metrics-{name}"
        metrics.mkdir()
        return {
            "HOST": "127.0.0.1",
            "PORT": str(port),
            "WEB_CONCURRENCY": "1",
            "PROMETHEUS_MULTIPROC_DIR": str(metrics),
            # Room for every stream of the many-streams phase on the one worker.
            "GUNICORN_WORKER_CONNECTIONS": str(max(4000, self.plan.many_streams + 500)),
        }

    def _gateway_env(self, upstream: str) -> dict[str, str]:
        database = self.args.database_url or f"sqlite:///{self.folder / 'packet.db'}"
        env = base_env(
            **self._gunicorn_env(free_port(), "gateway"),
            DATABASE_URL=database,
            PACKET_UPSTREAMS=upstream,
            PACKET_TIERS=TIERS,
            PACKET_PRICE_INPUT="0.50",
            PACKET_PRICE_OUTPUT="1.50",
            PACKET_LIMIT_KEY_PREFIX=f"bench{os.getpid()}",
            LOG_LEVEL="INFO",
        )
        if self.args.redis_url:
            env["REDIS_URL"] = self.args.redis_url
        for setting in self.args.gateway_env or ():
            name, _, value = setting.partition("=")
            env[name] = value
        return env

    def _account(self, env: dict[str, str]) -> str:
        """Migrate, create an account on the huge ``bench`` tier and return a fresh key."""
        name = f"bench-{os.getpid()}-{int(time.time())}"
        flask = [sys.executable, "-m", "flask", "--app", "app"]
        for args in (
            ["db", "upgrade"],
            ["accounts", "create", name, "--tier", "bench", "--balance", "1000000"],
        ):
            subprocess.run([*flask, *args], cwd=ROOT, env=env, check=True, capture_output=True)
        made = subprocess.run(
            [*flask, "keys", "create", name],
            cwd=ROOT,
            env=env,
            check=True,
            capture_output=True,
            text=True,
        )
        return made.stdout.strip().splitlines()[-1]

    def stop(self) -> None:
        if self.load is not None:
            self.load.stop()
        for server in reversed(self.servers):
            server.stop()

    # --- phases -------------------------------------------------------------------------------

    def measure(
        self,
        target: Target,
        *,
        stream: bool,
        concurrency: int,
        count: int,
        seconds: float,
        tokens: int = 16,
        delay: float = 0.0,
        sample_rss: bool = False,
        ramp: float = 0.0,
        route: Route | None = None,
        headers: dict[str, str] | None = None,
    ) -> dict[str, Any]:
        """Run one job against ``target`` (chat unless ``route`` says otherwise, with
        ``headers`` added to the target's); add the worker's CPU (and peak RSS) over the job."""
        load = self.load
        assert load is not None
        route = route or CHAT
        body: dict[str, Any] = route.body(tokens)
        if stream:
            body |= {"stream": True, "x_sim_token_delay": delay}
        job = {
            "host": "127.0.0.1",
            "port": target.server.port,
            "path": route.path,
            "end": route.end,
            "headers": target.headers | (headers or {}),
            "body": body,
            "stream": stream,
            "concurrency": concurrency,
            "count": count,
            "duration": seconds,
            "socket_timeout": 60.0,
            "ramp": ramp,
        }
        pid = target.pid
        before, rss_before = _read(cpu_seconds, pid), _read(rss_bytes, pid)
        if sample_rss and rss_before is not None:
            result, peak = _sampling_peak(lambda: load.run(job), lambda: _read(rss_bytes, pid) or 0)
            result["rss_per_stream"] = (peak - rss_before) / max(1, concurrency)
        else:
            result = load.run(job)
        after = _read(cpu_seconds, pid)
        if before is not None and after is not None:
            result["cpu"] = after - before
        result["tokens"] = tokens * result["ok"] if stream else 0
        return result

    def phases(self) -> dict[str, Callable[[Target], dict[str, Any]]]:
        """Every phase by name, in the order they run."""
        p = self.plan
        phases: dict[str, Callable[[Target], dict[str, Any]]] = {}
        for c in (1, 16, 64):
            phases[f"nonstream_c{c}"] = functools.partial(
                self.measure,
                stream=False,
                concurrency=c,
                count=p.requests // 3 if c == 1 else p.requests,
                seconds=p.seconds,
            )
        phases["stream_0ms"] = lambda t: self.measure(
            t,
            stream=True,
            concurrency=1,
            count=p.streams_fast,
            seconds=p.seconds,
            tokens=p.stream_tokens,
        )
        for name, (route, streamed) in ROUTES.items():
            phases[name] = functools.partial(
                self.measure,
                stream=streamed,
                concurrency=1 if streamed else 16,
                count=p.streams_fast if streamed else p.requests,
                seconds=p.seconds,
                tokens=p.stream_tokens,
                route=route,
            )
        # The same body every time with the response cache asked for: all but the first are
        # hits on the gateway (the header means nothing to the others, which pass it through).
        phases["cache_hit"] = functools.partial(
            self.measure,
            stream=False,
            concurrency=16,
            count=p.requests,
            seconds=p.seconds,
            headers={"X-Packet-Cache": "use"},
        )
        # Time to first token with the upstream pacing its tokens, as a real model does. (With
        # 0 ms per token the simulator floods the core it shares with the load generator, and
        # the first event's arrival measures that contention more than the relay.)
        phases["stream_ttft"] = lambda t: self.measure(
            t,
            stream=True,
            concurrency=1,
            count=p.ttft_streams,
            seconds=p.seconds + 10,
            tokens=8,
            delay=0.02,
        )
        phases["stream_20ms"] = lambda t: self.measure(
            t,
            stream=True,
            concurrency=p.slow_streams_c,
            count=p.slow_streams_c * 4,
            seconds=p.slow_stream_tokens * 0.02 * 4 + 10,
            tokens=p.slow_stream_tokens,
            delay=0.02,
        )
        phases["many_streams"] = lambda t: self.measure(
            t,
            stream=True,
            concurrency=p.many_streams,
            count=p.many_streams,
            seconds=p.many_tokens * p.many_delay + p.many_ramp + 30,
            tokens=p.many_tokens,
            delay=p.many_delay,
            sample_rss=True,
            ramp=p.many_ramp,
        )
        return phases

    def run(self, targets: list[Target], only: list[str] | None, runs: int) -> None:
        """Warm up, then each phase against every target in turn, ``runs`` times
        (back to back, so noise hits every target alike); each figure is the runs' median."""
        for target in targets[1:]:
            self.measure(target, stream=False, concurrency=16, count=500, seconds=5)
            self.measure(target, stream=True, concurrency=4, count=20, seconds=5, tokens=32)
        for name, measure in self.phases().items():
            if not only or name in only:
                self._phase(name, targets, measure, runs)

    def _phase(
        self,
        name: str,
        targets: list[Target],
        measure: Callable[[Target], dict[str, Any]],
        runs: int,
    ) -> None:
        print(f"  {name}:", end="", flush=True)
        samples: dict[str, list[dict[str, Any]]] = {t.name: [] for t in targets}
        for _ in range(runs):
            for target in targets:
                result = measure(target)
                samples[target.name].append(result)
                print(
                    f" {target.name} {result['ok']} ok/{result['errors']} err", end="", flush=True
                )
                if result["error_samples"]:
                    print(f" ({result['error_samples'][0][:120]})", end="", flush=True)
        self.results[name] = {t: median_result(r) for t, r in samples.items()}
        print(flush=True)


def median_result(results: list[dict[str, Any]]) -> dict[str, Any]:
    """Per figure, the median over runs (nested summaries too); other values from the first.

    Memory per stream is the largest run's: a later run reuses what the first one grew.
    """
    merged: dict[str, Any] = {}
    for key, first in results[0].items():
        values = [r.get(key) for r in results]
        dicts = [v for v in values if isinstance(v, dict)]
        numbers = [v for v in values if isinstance(v, int | float) and not isinstance(v, bool)]
        if isinstance(first, dict) and len(dicts) == len(values):
            merged[key] = median_result(dicts)
        elif len(numbers) == len(values):
            merged[key] = max(numbers) if key == "rss_per_stream" else statistics.median(numbers)
        else:
            merged[key] = first
    return merged


def _read(probe: Callable[[int], T], pid: int | None) -> T | None:
    """``probe(pid)``, or None when the target is not measured or its process has gone (a
    crashed server leaves its figures blank instead of ending the run)."""
    if pid is None:
        return None
    try:
        return probe(pid)
    except OSError:
        return None


def _bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def _sampling_peak(
    job: Callable[[], dict[str, Any]], probe: Callable[[], int]
) -> tuple[dict[str, Any], int]:
    """Run ``job`` in a thread while sampling ``probe`` every 0.2 s; (result, peak sample)."""
    box: dict[str, Any] = {}
    thread = threading.Thread(target=lambda: box.update(result=job()), daemon=True)
    thread.start()
    peak = probe()
    while thread.is_alive():
        thread.join(0.2)
        peak = max(peak, probe())
    return box["result"], peak


def machine() -> dict[str, Any]:
    """What the table was measured on (the load average hints at noise from other work)."""
    model = platform.processor() or "unknown CPU"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    return {
        "date": time.strftime("%Y-%m-%d %H:%M %Z"),
        "cpu": model,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "pinned": pinning_available(),
        "loadavg": os.getloadavg()[0],
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smaller phases (about a minute)")
    parser.add_argument("--database-url", help="gateway database (default: SQLite in a temp dir)")
    parser.add_argument("--redis-url", help="limit storage (default: in memory)")
    parser.add_argument(
        "--phases",
        help="comma-separated subset: nonstream_c1,…,stream_0ms,embeddings,rerank,tokenize,"
        "responses_stream,messages_stream,cache_hit,stream_ttft,stream_20ms,many_streams",
    )
    parser.add_argument("--runs", type=int, default=1, help="repeat each phase; report medians")
    parser.add_argument(
        "--many-streams", type=int, help="streams open at once in the many_streams phase"
    )
    parser.add_argument("--keep-logs", action="store_true", help="keep the processes' logs")
    parser.add_argument(
        "--gateway-env",
        action="append",
        metavar="NAME=VALUE",
        help="a setting for the gateway (repeatable), e.g. LOG_FORMAT=json",
    )
    parser.add_argument(
        "--litellm",
        action="store_true",
        help="also load the LiteLLM proxy from .venv-litellm (make bench-litellm installs it)",
    )
    parser.add_argument(
        "--profile",
        choices=("dev", "prod"),
        default="dev",
        help="dev: SQLite, limits in memory (make run's defaults); prod: a private PostgreSQL "
        f"database on --database-url (default {PROD_DATABASE}) and Redis limits on --redis-url "
        f"(default {PROD_REDIS}), as operators run it",
    )
    args = parser.parse_args(argv)

    folder = Path(tempfile.mkdtemp(prefix="packet-bench-"))
    if args.profile == "prod":
        args.redis_url = args.redis_url or PROD_REDIS
        with private_database(args.database_url or PROD_DATABASE, folder) as url:
            args.database_url = url
            _bench(args, folder)
    else:
        _bench(args, folder)


def _bench(args: argparse.Namespace, folder: Path) -> None:
    """One benchmark run with ``args``, its processes' logs in ``folder``."""
    bench = Bench(args, folder)
    meta = machine() | {
        "profile": args.profile,
        "runs": max(1, args.runs),
        "limits": "redis" if args.redis_url else "memory",
        "database": args.database_url.split(":", 1)[0] if args.database_url else "sqlite",
    }
    if args.litellm:
        meta["litellm"] = litellm.version()
    print(f"packet bench ({'quick' if args.quick else 'full'}), logs in {folder}", flush=True)
    try:
        bench.run(bench.start(), args.phases.split(",") if args.phases else None, meta["runs"])
    finally:
        bench.stop()
    meta["loadavg_end"] = os.getloadavg()[0]
    table = render(bench.results, meta, bench.plan)
    print(table)
    RESULTS.mkdir(exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    (RESULTS / f"bench-{stamp}.txt").write_text(table + "\n")
    (RESULTS / f"bench-{stamp}.json").write_text(
        json.dumps(
            {"machine": meta, "plan": asdict(bench.plan), "results": bench.results}, indent=1
        )
    )
    print(f"results: {RESULTS}/bench-{stamp}.{{txt,json}}")
    if not args.keep_logs:
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
