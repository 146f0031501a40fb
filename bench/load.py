"""The load generator: its own process, so its CPU never counts as the gateway's.

It reads one job per line (JSON) on stdin and answers one result per line on stdout, so the
orchestrator can read the gateway's CPU time right before and right after each job. Every job
is bounded in count and in time; each connection is kept alive across requests.

    python -m bench.load   (then: {"host": "127.0.0.1", "port": 8001, ...} per line)
"""

from gevent import monkey

monkey.patch_all()

import http.client  # noqa: E402
import json  # noqa: E402
import re  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402
from typing import Any  # noqa: E402

import gevent  # noqa: E402

_GRACE = 30.0


@dataclass
class Tally:
    """What the greenlets of one job measured."""

    latencies: list[float] = field(default_factory=list)
    ttfts: list[float] = field(default_factory=list)
    errors: int = 0
    samples: list[str] = field(default_factory=list)
    started: int = 0

    def error(self, what: str, count: int = 1) -> None:
        self.errors += count
        if len(self.samples) < 5:
            self.samples.append(what[:300])


def _connect(job: dict[str, Any]) -> http.client.HTTPConnection:
    if job["host"] != "127.0.0.1":
        raise ValueError("the benchmark only sends traffic to 127.0.0.1")
    return http.client.HTTPConnection(job["host"], job["port"], timeout=job["socket_timeout"])


def _one(
    conn: http.client.HTTPConnection, job: dict[str, Any], payload: bytes, tally: Tally
) -> bool:
    """Send one request and read the whole answer; returns False when the connection is spent."""
    began = time.perf_counter()
    conn.request("POST", job["path"], payload, job["headers"])
    resp = conn.getresponse()
    first: float | None = None
    if job["stream"]:
        tail = b""
        while chunk := resp.read1(65536):
            if first is None and b"data:" in chunk:
                first = time.perf_counter()
            tail = (tail + chunk)[-8192:]  # a Responses stream ends with the whole response
        body = tail
    else:
        body = resp.read()
    ended = time.perf_counter()
    if resp.status != 200:
        tally.error(f"HTTP {resp.status}: {body[:200]!r}")
    elif job["stream"] and (job.get("end", "[DONE]").encode() not in body or _failed(body)):
        tally.error(f"stream did not finish cleanly: ...{body[-200:]!r}")
    else:
        tally.latencies.append(ended - began)
        if first is not None:
            tally.ttfts.append(first - began)
    return not resp.will_close


def _failed(tail: bytes) -> bool:
    """An in-band error object at the end of a stream (not a response's ``"error": null``)."""
    return re.search(rb'"error":\s*\{', tail) is not None


def _worker(
    job: dict[str, Any], payload: bytes, tally: Tally, deadline: float, delay: float
) -> None:
    gevent.sleep(delay)
    conn: http.client.HTTPConnection | None = None
    while tally.started < job["count"] and time.monotonic() < deadline:
        tally.started += 1
        try:
            conn = conn or _connect(job)
            if not _one(conn, job, payload, tally):
                conn.close()
                conn = None
        except (OSError, http.client.HTTPException) as exc:
            tally.error(f"{type(exc).__name__}: {exc}")
            if conn is not None:
                conn.close()
            conn = None
    if conn is not None:
        conn.close()


def summarize(values: list[float]) -> dict[str, float] | None:
    """p50/p90/p99/max in milliseconds (nearest rank)."""
    if not values:
        return None
    ordered = sorted(values)

    def rank(q: float) -> float:
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000

    return {"p50": rank(0.5), "p90": rank(0.9), "p99": rank(0.99), "max": ordered[-1] * 1000}


def run(job: dict[str, Any]) -> dict[str, Any]:
    """Drive one job: ``concurrency`` connections (opened over ``ramp`` seconds), at most
    ``count`` requests and ``duration`` seconds."""
    payload = json.dumps(job["body"]).encode()
    tally = Tally()
    began = time.monotonic()
    deadline = began + job["duration"]
    ramp = job.get("ramp", 0.0) / job["concurrency"]
    workers = [
        gevent.spawn(_worker, job, payload, tally, deadline, i * ramp)
        for i in range(job["concurrency"])
    ]
    gevent.joinall(workers, timeout=job["duration"] + _GRACE)
    gevent.killall(workers, block=True, timeout=5)
    # A server that stalls must not go unnoticed: requests cut off at the time limit are errors.
    if cut := tally.started - len(tally.latencies) - tally.errors:
        tally.error(f"{cut} request(s) unanswered at the time limit", cut)
    elapsed = time.monotonic() - began
    return {
        "ok": len(tally.latencies),
        "errors": tally.errors,
        "started": tally.started,
        "error_samples": tally.samples,
        "elapsed": elapsed,
        "rps": len(tally.latencies) / elapsed if elapsed else 0.0,
        "latency": summarize(tally.latencies),
        "ttft": summarize(tally.ttfts),
    }


def main() -> None:
    for line in sys.stdin:
        if line.strip():
            print(json.dumps(run(json.loads(line))), flush=True)


if __name__ == "__main__":
    main()
