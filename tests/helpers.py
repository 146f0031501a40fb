"""Plain helpers shared by the tests: requests to a gateway (with their own id, or raw bytes
no client library would send), polling with a bound, a clock moved by hand, a storage that can
fail, and the price arithmetic the gateway must apply. The processes themselves are in
``processes.py``, the fixtures in ``conftest.py``."""

from __future__ import annotations

import io
import json
import socket
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import openai
import requests
from limits.storage import MemoryStorage

from packet import store

PRICES = {"PACKET_PRICE_INPUT": "100", "PACKET_PRICE_OUTPUT": "300"}  # $ per million tokens
BULK = {"PACKET_TIERS": '{"bulk": {"rpm": 1000000, "tpm": 1000000000}}'}
IN, OUT = 100_000_000, 300_000_000  # the prices above in micro-dollars per million
LONG = 3600  # seconds: a limit window no test sees reset


RATE_HEADERS = (
    "X-RateLimit-Limit",
    "X-RateLimit-Remaining",
    "X-RateLimit-Reset",
    "x-ratelimit-limit-requests",
    "x-ratelimit-remaining-requests",
    "x-ratelimit-reset-requests",
    "x-ratelimit-limit-tokens",
    "x-ratelimit-remaining-tokens",
    "x-ratelimit-reset-tokens",
)


# --- time ---------------------------------------------------------------------------------------


class Clock:
    """A clock the test moves by hand (by default 10 s into a 60 s window)."""

    def __init__(self, now: float = 1_800_000_010.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def until(
    predicate: Callable[[], Any],
    what: str = "the condition",
    timeout: float = 10.0,
    step: float = 0.1,
) -> Any:
    """Poll ``predicate`` until it returns something truthy (returned); fail after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if result:
            return result
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(step)


def fresh_window(window: int, need: float) -> None:
    """Wait, if needed, until the current clock-aligned window has ``need`` seconds left."""
    left = window - time.time() % window
    if left < need:
        time.sleep(left + 0.05)


class BrokenStorage(MemoryStorage):
    """A limits storage whose calls fail while ``down`` (like Redis refusing connections)."""

    def __init__(self) -> None:
        super().__init__()
        self.down = False
        self.calls = 0

    def _call(self) -> None:
        self.calls += 1
        if self.down:
            raise ConnectionError("refused")

    def incr(self, key, expiry, amount=1):
        self._call()
        return super().incr(key, expiry, amount)

    def get(self, key):
        self._call()
        return super().get(key)

    def check(self) -> bool:
        self.calls += 1
        return not self.down


# --- requests to a gateway ----------------------------------------------------------------------


def send(
    gateway, key: str | None, method: str, path: str, *, headers=None, timeout=30, **kwargs
) -> requests.Response:
    """One request to ``gateway`` with ``key`` as the Bearer token (no Authorization if None)."""
    headers = ({"Authorization": f"Bearer {key}"} if key else {}) | (headers or {})
    return requests.request(
        method, f"{gateway.url}{path}", headers=headers, timeout=timeout, **kwargs
    )


def get(gateway, key: str | None, path: str, **kwargs) -> requests.Response:
    return send(gateway, key, "GET", path, **kwargs)


def chat(gateway, key: str, model: str | None = None, **extra) -> requests.Response:
    """A short chat completion (2 tokens), as JSON; ``extra`` fields are added to the body."""
    body = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 2, **extra}
    if model is not None:
        body["model"] = model
    return send(gateway, key, "POST", "/v1/chat/completions", json=body)


def post(
    gateway,
    key: str,
    data: bytes,
    *,
    path: str = "/v1/chat/completions",
    content_type: str = "application/json",
    **kwargs,
) -> requests.Response:
    """POST ``data`` as is (bytes whose length, the gateway's prompt estimate, the test knows)."""
    headers = {"Content-Type": content_type}
    return send(gateway, key, "POST", path, data=data, headers=headers, **kwargs)


def charge(prompt: int, completion: int) -> int:
    """The gateway's rule: micro-dollars, rounded up per request."""
    return -(-(prompt * IN + completion * OUT) // 1_000_000)


def call(
    gateway, key: str, path: str, body: dict, *, drop_after: int | None = None, rid: str = ""
) -> dict:
    """One request with its own X-Request-ID; streams are read (or dropped) event by event."""
    rid = rid or f"t-{uuid.uuid4().hex}"
    headers = {"Authorization": f"Bearer {key}", "X-Request-ID": rid, "Connection": "close"}
    with requests.post(
        f"{gateway.url}{path}", json=body, headers=headers, stream=True, timeout=30
    ) as response:
        events = []
        if response.status_code == 200 and body.get("stream"):
            for line in response.iter_lines():
                if line.startswith(b"data: "):
                    events.append(line[6:])
                    if drop_after is not None and len(events) >= drop_after:
                        break
        else:
            response.content  # noqa: B018 - read it all
        assert response.headers["X-Request-ID"] == rid
        return {"id": rid, "status": response.status_code, "events": events, "body": response}


def balance(database, name: str) -> int:
    return database.run(store.get_account, name).balance_micros


def settled_balance(database, name: str, initial: int, rows: list, timeout: float = 5.0) -> None:
    """Every hold released: the balance is the initial one less what the rows cost."""
    deadline = time.monotonic() + timeout
    expected = initial - sum(r.cost_micros for r in rows)
    while balance(database, name) != expected and time.monotonic() < deadline:
        time.sleep(0.05)
    assert balance(database, name) == expected


def wait_rows(database, name: str, count: int, timeout: float = 20.0) -> list:
    deadline = time.monotonic() + timeout
    while True:
        rows = database.run(store.usage_records, name)
        if len(rows) >= count or time.monotonic() > deadline:
            return rows
        time.sleep(0.1)


def row_of(database, name: str, request_id: str, timeout: float = 20.0):
    """The usage row of one request, once the gateway has written it."""
    deadline = time.monotonic() + timeout
    while True:
        rows = [r for r in database.run(store.usage_records, name) if r.request_id == request_id]
        if rows or time.monotonic() > deadline:
            assert rows, f"no usage row for {request_id}"
            return rows[0]
        time.sleep(0.05)


def rid() -> dict[str, str]:
    """Headers giving a request its own id (the SDKs' ``extra_headers``)."""
    return {"X-Request-ID": f"t-{uuid.uuid4().hex}"}


def settled(sim, ids: set[str], timeout: float = 10.0) -> dict[str, dict]:
    """The simulator's records of ``ids`` once each stream has finished or seen its client go."""
    deadline = time.monotonic() + timeout
    while True:
        truth = {r["request_id"]: r for r in sim.requests() if r["request_id"] in ids}
        if all(r["finished"] or r["disconnected"] for r in truth.values()):
            return truth
        assert time.monotonic() < deadline, "the simulator never saw some streams end"
        time.sleep(0.05)


def mixed(i: int) -> tuple[str, dict]:
    """The ``i``-th request of a mixed load: chat, chat streams with and without usage, and
    completions, each a few tokens long."""
    msgs = [{"role": "user", "content": f"request number {i} of the mixed load"}]
    slow = {"x_sim_token_delay": 0.005}
    return [
        ("/v1/chat/completions", {"messages": msgs, "max_tokens": 8}),
        (
            "/v1/chat/completions",
            {"messages": msgs, "max_tokens": 12, "stream": True}
            | {"stream_options": {"include_usage": True}}
            | slow,
        ),
        ("/v1/completions", {"prompt": f"once upon a time {i}", "max_tokens": 6}),
        ("/v1/chat/completions", {"messages": msgs, "max_tokens": 10, "stream": True} | slow),
    ][i % 4]


class Load:
    """Requests from ``threads`` threads until stopped, or ``count`` are sent, or ``seconds``
    have passed; each keeps its id, status (None when the connection broke), Retry-After and
    the time it was sent. ``plan(i)`` gives the i-th request: (path, body), or (path, body,
    events after which the client drops the stream)."""

    def __init__(
        self,
        gateway,
        key: str,
        plan: Callable[[int], tuple] = mixed,
        *,
        threads: int = 8,
        count: int = 5000,
        seconds: float = 60.0,
    ) -> None:
        self.gateway, self.key, self.plan = gateway, key, plan
        self.threads, self.count, self.seconds = threads, count, seconds
        self.results: list[dict] = []
        self._stop = threading.Event()
        self._next = iter(range(count))
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(max_workers=threads)
        self.started = time.monotonic()

    def start(self) -> Load:
        self._futures = [self._pool.submit(self._run) for _ in range(self.threads)]
        return self

    def _run(self) -> None:
        deadline = self.started + self.seconds
        while not self._stop.is_set() and time.monotonic() < deadline:
            with self._lock:
                i = next(self._next, None)
            if i is None:
                return
            path, body, *drop = self.plan(i)
            rid, sent = f"t-{uuid.uuid4().hex}", time.monotonic() - self.started
            try:
                result = call(
                    self.gateway, self.key, path, body, rid=rid, drop_after=next(iter(drop), None)
                )
                result["retry_after"] = result.pop("body").headers.get("Retry-After")
            except requests.RequestException:
                result = {"id": rid, "status": None, "events": [], "retry_after": None}
            result["sent"] = sent
            with self._lock:
                self.results.append(result)

    def stop(self) -> list[dict]:
        self._stop.set()
        for future in self._futures:
            future.result(timeout=120)
        self._pool.shutdown()
        return self.results

    def statuses(self) -> Counter:
        return Counter(r["status"] for r in self.results)


def metered_against_sent(
    database, name: str, sim, results: list[dict], seen: dict[str, dict] | None = None
) -> dict[str, int]:
    """Every request the simulator saw has exactly one usage row with exactly the tokens it
    sent (rows recovered from a dead worker's checkpoint may have fewer, never more);
    returns the totals. ``seen``: records collected earlier, for runs longer than the
    simulator's history."""
    ids = {r["id"] for r in results}
    served = {r["request_id"] for r in [*(seen or {}).values(), *sim.requests()]} & ids
    truth = (seen or {}) | settled(sim, served, timeout=30)
    assert all(r["finished"] or r["disconnected"] for r in truth.values()), "a stream never ended"
    rows = [r for r in database.run(store.usage_records, name) if r.request_id in ids]
    by_id = {r.request_id: r for r in rows}
    assert len(by_id) == len(rows), "a request was metered twice"
    missing = set(truth) - set(by_id)
    unmetered = {r["id"]: r["status"] for r in results if r["id"] in missing}
    assert not unmetered, f"{len(unmetered)} served, no usage row: {list(unmetered.items())[:5]}"
    unserved = {
        rid: (row.status, row.completion_tokens) for rid, row in by_id.items() if rid not in truth
    }
    assert not unserved, f"{len(unserved)} rows never served: {list(unserved.items())[:5]}"
    for rid, sent in truth.items():
        row = by_id[rid]
        metered = (row.prompt_tokens, row.completion_tokens, row.usage_source)
        upstream = (sent["prompt_tokens"], sent["completion_tokens"])
        asked = {k: v for k, v in sent["body"].items() if k not in ("messages", "prompt")}
        asked |= {"disconnected": sent["disconnected"]}
        if row.usage_source == "recovered":
            assert metered[1] <= upstream[1], (rid, metered, upstream, asked)
        else:
            assert metered[:2] == upstream, (rid, metered, upstream, asked)
    return {
        "served": len(truth),
        "rows": len(rows),
        "recovered": sum(r.usage_source == "recovered" for r in rows),
        "metered": sum(r.completion_tokens for r in rows),
        "sent": sum(t["completion_tokens"] for t in truth.values()),
        "cost": sum(r.cost_micros for r in rows),
    }


# --- raw connections: requests no client library will send ---------------------------------------


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


# --- the dashboard ----------------------------------------------------------------------------

DASHBOARD = {"SECRET_KEY": "test-secret-" + "x" * 32, "PACKET_DASHBOARD_INSECURE_COOKIES": "true"}
PASSWORD = "correct horse battery"


def csrf_token(html: str) -> str:
    """The CSRF token a dashboard page's form carries."""
    import re

    found = re.search(r'name="csrf_token"(?: type="hidden")? value="([^"]+)"', html)
    assert found, "no CSRF token on the page"
    return found.group(1)


def dashboard_user(app, account: str, role: str = "owner", password: str = PASSWORD) -> str:
    """A user of ``account`` who has used their invite to set ``password``: the email."""
    from packet import users

    email = f"{role}-{uuid.uuid4().hex[:8]}@example.com"
    with app.app_context():
        _, token = users.invite(email, account, role)
        users.redeem(token, password)
    return email


def sign_in(client, email: str, password: str = PASSWORD):
    """Sign in with the form, as a browser would (the CSRF token read from the page)."""
    token = csrf_token(client.get("/dashboard/login").text)
    return client.post(
        "/dashboard/login", data={"csrf_token": token, "email": email, "password": password}
    )


# --- batches ------------------------------------------------------------------------------------


def discounted(prompt: int, completion: int) -> int:
    """Half the real-time price (PACKET_BATCH_DISCOUNT's default), rounded up."""
    return -(-charge(prompt, completion) * 500_000 // 1_000_000)


def chat_lines(count: int, prefix: str = "req", max_tokens: int | None = None) -> bytes:
    lines = []
    for i in range(count):
        body: dict = {"model": "auto", "messages": [{"role": "user", "content": f"say {i}"}]}
        if max_tokens is not None:
            body["max_tokens"] = max_tokens
        line = {"custom_id": f"{prefix}-{i}", "method": "POST", "url": "/v1/chat/completions"}
        lines.append(json.dumps(line | {"body": body}))
    return ("\n".join(lines) + "\n").encode()


def submit(client: openai.OpenAI, data: bytes, endpoint: str = "/v1/chat/completions") -> Any:
    uploaded = client.files.create(file=("in.jsonl", io.BytesIO(data)), purpose="batch")
    return client.batches.create(
        input_file_id=uploaded.id, endpoint=endpoint, completion_window="24h"
    )


def wait_status(client: openai.OpenAI, batch_id: str, wanted: set[str], timeout: float = 60.0):
    deadline = time.monotonic() + timeout
    while True:
        batch = client.batches.retrieve(batch_id)
        if batch.status in wanted:
            return batch
        assert time.monotonic() < deadline, f"batch still {batch.status}: {batch}"
        time.sleep(0.2)


def jsonl(client: openai.OpenAI, file_id: str | None) -> list[dict]:
    if file_id is None:
        return []
    return [json.loads(line) for line in client.files.content(file_id).text.splitlines()]


def batch_rows(database: Any, name: str, batch_id: str) -> list:
    return [r for r in database.run(store.usage_records, name) if r.batch_id == batch_id]
