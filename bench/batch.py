"""``python -m bench.batch``: the batch worker against a bare loop, and real-time latency with
and without a batch running (about a minute).

1. The same chat lines sent straight to the simulated vLLM by a bare loop (requests, the
   same concurrency as the worker), then run as a batch by one worker: lines/s and CPU per
   line of each (the worker's own process; the loop's own process).
2. Real-time chat requests through the gateway at a steady rate, alone and then while a
   large batch runs on the same endpoint: p50 and p99 latency, and their ratios.

    .venv/bin/python -m bench.batch [--lines 1000] [--concurrency 8] [--seconds 10]
"""

from __future__ import annotations

import argparse
import io
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import requests

from .procs import ROOT, Child, Server, base_env, cpu_seconds, free_port

SIM_FLAGS = ("--token-delay", "0.002")  # 16 tokens a line: about 35 ms each
TIERS = '{"bench": {"rpm": 100000000, "tpm": 1000000000000}}'


def line(i: int) -> dict[str, Any]:
    body = {"model": "auto", "messages": [{"role": "user", "content": f"Line {i}: say hello."}]}
    return {"custom_id": f"l{i}", "method": "POST", "url": "/v1/chat/completions", "body": body}


def bare_loop(url: str, count: int, concurrency: int) -> None:
    """Child process: send ``count`` lines straight to ``url``; print seconds and CPU."""
    session = requests.Session()
    adapter = requests.adapters.HTTPAdapter(pool_maxsize=concurrency)
    session.mount("http://", adapter)

    def send(i: int) -> None:
        body = {k: v for k, v in line(i)["body"].items() if k != "model"}  # vLLM's own default
        answer = session.post(f"{url}/v1/chat/completions", json=body, timeout=60)
        answer.raise_for_status()

    started = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(send, range(count)))
    usage = resource.getrusage(resource.RUSAGE_SELF)
    elapsed = time.perf_counter() - started
    print(json.dumps({"seconds": elapsed, "cpu": usage.ru_utime + usage.ru_stime}))


class Bench:
    def __init__(self, args: argparse.Namespace, folder: Path) -> None:
        self.args, self.folder = args, folder
        self.children: list[Child] = []
        sim_port = free_port()
        self.sim = self._server(
            "sim",
            [sys.executable, "-m", "packet.devserver", "--port", str(sim_port), *SIM_FLAGS],
            base_env(),
            sim_port,
        )
        port = free_port()
        self.env = base_env(
            DATABASE_URL=args.database_url or f"sqlite:///{folder / 'packet.db'}",
            PACKET_UPSTREAMS=self.sim.url,
            PACKET_TIERS=TIERS,
            PACKET_PRICE_INPUT="0.50",
            PACKET_PRICE_OUTPUT="1.50",
            PACKET_BATCH_CONCURRENCY=str(args.concurrency),
            PACKET_BATCH_POLL_SECONDS="0.2",
            PACKET_LIMIT_KEY_PREFIX=f"bb{os.getpid()}",
        )
        self.key = self._account()
        gunicorn = [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "wsgi:app"]
        web = self.env | {"HOST": "127.0.0.1", "PORT": str(port), "WEB_CONCURRENCY": "1"}
        self.gateway = self._server("gateway", gunicorn, web, port)
        self.worker = Child("worker", [sys.executable, "worker.py"], self.env, folder, None)
        self.children.append(self.worker)
        self.headers = {"Authorization": f"Bearer {self.key}"}

    def _server(self, name: str, args: list[str], env: dict[str, str], port: int) -> Server:
        server = Server(name, args, env, self.folder, port, core="0")
        self.children.append(server)
        server.wait_http(f"{server.url}/health")
        return server

    def _account(self) -> str:
        flask = [sys.executable, "-m", "flask", "--app", "app"]
        for args in (
            ["db", "upgrade"],
            ["accounts", "create", "bench", "--tier", "bench", "--balance", "1000000"],
        ):
            subprocess.run([*flask, *args], cwd=ROOT, env=self.env, check=True, capture_output=True)
        made = subprocess.run(
            [*flask, "keys", "create", "bench"],
            cwd=ROOT,
            env=self.env,
            check=True,
            capture_output=True,
            text=True,
        )
        return made.stdout.strip().splitlines()[-1]

    def stop(self) -> None:
        for child in reversed(self.children):
            child.stop()

    def submit(self, count: int) -> str:
        data = "\n".join(json.dumps(line(i)) for i in range(count)).encode()
        files = {"file": ("in.jsonl", io.BytesIO(data))}
        url = self.gateway.url
        uploaded = requests.post(
            f"{url}/v1/files", files=files, data={"purpose": "batch"}, headers=self.headers
        )
        assert uploaded.status_code == 200, uploaded.text
        body = {
            "input_file_id": uploaded.json()["id"],
            "endpoint": "/v1/chat/completions",
            "completion_window": "24h",
        }
        made = requests.post(f"{url}/v1/batches", json=body, headers=self.headers)
        made.raise_for_status()
        return str(made.json()["id"])

    def batch(self, batch_id: str) -> dict[str, Any]:
        answer = requests.get(f"{self.gateway.url}/v1/batches/{batch_id}", headers=self.headers)
        return dict(answer.json())

    def throughput(self) -> dict[str, Any]:
        count = self.args.lines
        flags = ("--concurrency", str(self.args.concurrency))
        loop = subprocess.run(
            [sys.executable, "-m", "bench.batch", "--bare", self.sim.url, str(count), *flags],
            cwd=ROOT,
            env=base_env(),
            check=True,
            capture_output=True,
            text=True,
        )
        bare = json.loads(loop.stdout.strip().splitlines()[-1])
        pid = self.worker.proc.pid
        cpu, started = cpu_seconds(pid), time.perf_counter()
        batch_id = self.submit(count)
        deadline = time.monotonic() + 300
        while (found := self.batch(batch_id))["status"] != "completed":
            assert time.monotonic() < deadline, found
            time.sleep(0.05)
        cpu, seconds = cpu_seconds(pid) - cpu, time.perf_counter() - started
        return {
            "lines": count,
            "bare_lines_per_s": count / bare["seconds"],
            "bare_cpu_ms_per_line": bare["cpu"] * 1000 / count,
            "worker_lines_per_s": count / seconds,  # upload to output file, all included
            "worker_cpu_ms_per_line": cpu * 1000 / count,
        }

    def latencies(self, seconds: float) -> list[float]:
        """Real-time chat requests, 10 a second from 4 threads, for ``seconds``."""
        url = f"{self.gateway.url}/v1/chat/completions"
        body = line(0)["body"]

        def one(_: int) -> float:
            started = time.perf_counter()
            requests.post(url, json=body, headers=self.headers, timeout=30).raise_for_status()
            return time.perf_counter() - started

        taken: list[float] = []
        with ThreadPoolExecutor(4) as pool:
            end = time.monotonic() + seconds
            futures = []
            while time.monotonic() < end:
                futures.append(pool.submit(one, 0))
                time.sleep(0.1)
            taken = [f.result() for f in futures]
        return taken

    def fairness(self) -> dict[str, Any]:
        alone = self.latencies(self.args.seconds)
        batch_id = self.submit(self.args.lines * 5)
        while self.batch(batch_id)["status"] != "in_progress":
            time.sleep(0.05)
        busy = self.latencies(self.args.seconds)
        still = self.batch(batch_id)
        requests.post(f"{self.gateway.url}/v1/batches/{batch_id}/cancel", headers=self.headers)
        figures: dict[str, Any] = {"alone": _percentiles(alone), "with_batch": _percentiles(busy)}
        for name in ("p50", "p99"):
            figures[f"{name}_ratio"] = figures["with_batch"][name] / figures["alone"][name]
        figures["batch_lines_done_meanwhile"] = still["request_counts"]["completed"]
        return figures


def _percentiles(values: list[float]) -> dict[str, float]:
    cuts = statistics.quantiles(values, n=100)
    return {"p50": cuts[49] * 1000, "p99": cuts[98] * 1000, "n": len(values)}


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.batch")
    parser.add_argument("--lines", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--database-url", default=None)
    parser.add_argument("--bare", nargs=2, metavar=("URL", "COUNT"), default=None)
    args = parser.parse_args()
    if args.bare:
        bare_loop(args.bare[0], int(args.bare[1]), args.concurrency)
        return
    with tempfile.TemporaryDirectory(prefix="packet-bench-batch-") as folder:
        bench = Bench(args, Path(folder))
        try:
            report = {"throughput": bench.throughput(), "fairness": bench.fairness()}
        finally:
            bench.stop()
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
