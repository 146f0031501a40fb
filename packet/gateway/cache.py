"""The opt-in exact response cache: which requests use it, their key, hits and what is stored.

A request uses the cache when it sends ``X-Packet-Cache: use`` (``refresh``: go upstream and
store the answer; ``skip``: neither read nor store), or when its account's default is on and
it does not say otherwise; ``Cache-Control: no-store`` skips, ``no-cache`` refreshes. Routes:
chat and text completions, embeddings, and Responses with ``store: false``; never ``n > 1``
with sampling unless the header asked. With the cache off (no header, account default off)
the pipeline never gets here.

The key is the account, the resolved model, the route and the body without ``stream``,
``stream_options`` and ``user``, hashed: ``auto`` and the model's id share an entry; another
account never sees it. Only complete answers are stored, with the usage they were billed; a hit
is counted against requests/min once and costs no tokens and no money, and its usage row says
``cached`` with the tokens it saved. Concurrent identical misses send one request upstream:
the others wait for its entry (``WAIT_SECONDS`` at most; in the same worker on an event, in
other processes by polling Redis while the first holds a lock beside the entry), then go
upstream themselves.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import gevent.event
import orjson

from .. import limits, metrics
from ..errors import InvalidRequest
from ..metering import NO_HOLD
from ..upstream.sse import StreamFormat, StreamResult, named
from . import cache_forms as forms
from .cache_store import CacheStore
from .inbound import Answer, Inbound

if TYPE_CHECKING:
    from ..runtime import Runtime
    from ..usage import Usage

log = logging.getLogger("packet.cache")

USE, REFRESH, SKIP = "use", "refresh", "skip"
HIT, MISS = "hit", "miss"
ROUTES = (forms.CHAT, forms.TEXT, forms.EMBEDDINGS, forms.RESPONSES)
IGNORED = ("model", "stream", "stream_options", "user")  # the model: resolved, apart
WAIT_SECONDS = 10.0
MAX_INFLIGHT = 10_000
POLL_SECONDS = 0.05  # how often a miss led by another process looks for its entry
LOCK = ":lock"
SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


def mode(header: str | None, cache_control: str | None, default: bool) -> str | None:
    """``use``, ``refresh`` or ``skip`` for a request (None: the cache is not involved);
    an unknown header value is a 400."""
    if header is not None:
        asked = header.strip().lower()
        if asked not in (USE, REFRESH, SKIP):
            raise InvalidRequest(
                f"Invalid X-Packet-Cache header {header[:40]!r}: use 'use', 'refresh' or 'skip'."
            )
    elif default:
        asked = USE
    else:
        return None
    if asked != SKIP and cache_control:
        directives = {part.split("=")[0].strip().lower() for part in cache_control.split(",")}
        if "no-store" in directives:
            return SKIP
        if "no-cache" in directives:
            return REFRESH
    return asked


def cacheable(route: str, body: dict[str, Any], explicit: bool) -> bool:
    """Whether the route and body may use the cache at all."""
    if route not in ROUTES:
        return False
    if route == forms.RESPONSES and (body.get("store") is not False or body.get("background")):
        return False
    n = body.get("n")
    sampling = body.get("temperature", 1) != 0
    return explicit or not (type(n) is int and n > 1 and sampling)


def key(prefix: str, account_id: int, route: str, model: str, body: dict[str, Any]) -> str:
    """The entry's key: the account in clear (never shared), the rest hashed."""
    canonical = {name: value for name, value in body.items() if name not in IGNORED}
    text = orjson.dumps([route, model, canonical], option=orjson.OPT_SORT_KEYS)
    # The braces keep the entry and its lock on one Redis Cluster slot.
    return f"{prefix}:cache:{account_id}:{{{hashlib.sha256(text).hexdigest()}}}"


class ResponseCache:
    """The cache of one worker: its storage and the identical misses in flight."""

    def __init__(
        self,
        store: CacheStore,
        prefix: str,
        max_entry_bytes: int,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.prefix = prefix
        self.max_entry_bytes = max_entry_bytes
        self.clock = clock
        # Identical misses in flight: the leader's event, and when followers stop waiting.
        self.inflight: dict[str, tuple[gevent.event.Event, float]] = {}

    def consult(
        self, rt: Runtime, inbound: Inbound, body: dict[str, Any], model: str
    ) -> Lookup | None:
        """A hit (``answer`` set, already metered), a miss that will store its answer, or
        None (skipped). Called before admission: a hit is never counted for tokens."""
        principal, route = inbound.principal, inbound.route
        asked = mode(inbound.cache, inbound.cache_control, principal.cache_default)
        if (
            asked is None
            or asked == SKIP
            or not cacheable(route.name, body, inbound.cache is not None)
        ):
            inbound.cache_status = inbound.outcome.cache = SKIP
            return None
        stream = route.wire.stream is not None and body.get("stream") is True
        entry_key = key(self.prefix, principal.account_id, route.name, model, body)
        claimed = False
        if asked == USE:
            waiting = self.inflight.get(entry_key)
            if waiting is None:
                blob, claimed = self.store.fetch(entry_key, entry_key + LOCK, WAIT_SECONDS)
                entry = self._parse(blob, stream)
                if blob is None and not claimed:
                    entry = self._await_elsewhere(entry_key, stream)
            else:
                entry = self._get(entry_key, stream)
                if entry is None:
                    waiting[0].wait(timeout=max(0.0, waiting[1] - time.monotonic()))
                    entry = self._get(entry_key, stream)
            if entry is not None:
                inbound.cache_status = inbound.outcome.cache = HIT
                metrics.cache_lookup(True)
                answer = self._replay(rt, inbound, entry, body, stream)
                return Lookup(self, entry_key, route.name, model, None, answer)
        inbound.cache_status = inbound.outcome.cache = MISS
        metrics.cache_lookup(False)
        return Lookup(self, entry_key, route.name, model, self._lead(entry_key), claimed=claimed)

    def _lead(self, entry_key: str) -> gevent.event.Event | None:
        """Make this miss the one identical misses wait for, unless one is under way. A leader
        that never released (refused before it was sent) is followed only until its deadline."""
        now = time.monotonic()
        current = self.inflight.get(entry_key)
        if current is not None and current[1] > now:
            return None
        if len(self.inflight) >= MAX_INFLIGHT:
            for stale, (event, deadline) in list(self.inflight.items()):
                if deadline <= now:
                    self.release(stale, event)
        event = gevent.event.Event()
        self.inflight[entry_key] = (event, now + WAIT_SECONDS)
        return event

    def _await_elsewhere(self, entry_key: str, stream: bool) -> dict[str, Any] | None:
        """Another process leads these misses: look for its entry until it lets go of its
        lock or ``WAIT_SECONDS`` pass."""
        deadline = time.monotonic() + WAIT_SECONDS
        while time.monotonic() < deadline:
            gevent.sleep(POLL_SECONDS)
            blob, held = self.store.peek(entry_key, entry_key + LOCK)
            if blob is not None:
                return self._parse(blob, stream)
            if not held:
                break
        return None

    def _get(self, entry_key: str, stream: bool) -> dict[str, Any] | None:
        return self._parse(self.store.get(entry_key), stream)

    def _parse(self, blob: bytes | None, stream: bool) -> dict[str, Any] | None:
        if blob is None:
            return None
        try:
            entry = orjson.loads(blob)
        except orjson.JSONDecodeError:
            return None
        return entry if forms.can_render(entry, stream) else None

    def _replay(
        self,
        rt: Runtime,
        inbound: Inbound,
        entry: dict[str, Any],
        body: dict[str, Any],
        stream: bool,
    ) -> Answer:
        """Answer from ``entry``: counted once against requests/min, no tokens, no money."""
        principal = inbound.principal
        counted = inbound.admission = limits.count(rt, principal, None)
        inbound.counted = True
        limits.refuse_over(rt, principal, counted)
        now = self.clock()
        if stream:
            options = body.get("stream_options") or {}
            content = forms.render_sse(
                entry,
                now,
                include_usage=bool(options.get("include_usage")),
                continuous_usage=bool(options.get("continuous_usage_stats")),
            )
            answer = Answer(200, content, "text/event-stream", dict(SSE_HEADERS))
        else:
            answer = Answer(200, forms.render_json(entry, now))
        answer.headers["Age"] = str(max(0, int(now - entry["at"])))
        _meter_hit(rt, inbound, entry, stream)
        return answer

    def put(self, entry_key: str, entry: dict[str, Any], lock: str | None = None) -> None:
        self.store.put(entry_key, orjson.dumps(entry), lock)

    def release(self, entry_key: str, event: gevent.event.Event) -> None:
        """The leader's miss is over (stored or not): its followers look again."""
        if self.inflight.get(entry_key, (None,))[0] is event:
            del self.inflight[entry_key]
        event.set()


def _meter_hit(rt: Runtime, inbound: Inbound, entry: dict[str, Any], stream: bool) -> None:
    """The hit's usage row: no tokens, no cost, ``cached`` with the tokens it saved."""
    principal = inbound.principal
    latency = time.perf_counter() - inbound.started
    prompt, completion = entry["usage"]
    elapsed_ms = int(latency * 1000)
    row = {
        "request_id": inbound.request_id,
        "account_id": principal.account_id,
        "key_id": principal.key_id,
        "endpoint_url": None,
        "model": entry["model"],
        "route": inbound.route.name,
        "stream": stream,
        "status": 200,
        "prompt_tokens": 0,
        "completion_tokens": 0,
        "total_tokens": 0,
        "cost_micros": 0,
        "ttft_ms": elapsed_ms,
        "latency_ms": elapsed_ms,
        "client_disconnected": False,
        "usage_source": "cache",
        "cached": True,
        "saved_tokens": prompt + completion,
    }
    rt.meter.record(row, NO_HOLD)
    inbound.metered = True
    outcome = inbound.outcome  # for the request's log line and metrics
    outcome.model, outcome.status, outcome.stream = entry["model"], 200, stream


@dataclass
class Lookup:
    """One request's use of the cache: a hit's ``answer``, or a miss whose complete answer
    is stored when it ends (``leader``: the one of identical misses others wait for)."""

    cache: ResponseCache
    key: str
    route: str
    model: str
    leader: gevent.event.Event | None
    answer: Answer | None = None
    claimed: bool = False  # this miss holds the lock other processes wait on
    events: list[bytes] = field(default_factory=list)
    size: int = 0
    overflow: bool = False

    def recording(self, fmt: StreamFormat) -> StreamFormat:
        """``fmt``, keeping each upstream event as it came, up to the entry bound."""
        bound = self.cache.max_entry_bytes

        def inspect(event: bytes, result: StreamResult) -> bytes | None:
            if not self.overflow:
                self.size += len(event)
                self.overflow = self.size > bound
                self.events.append(event)
            return fmt.inspect(event, result)

        return StreamFormat(inspect, fmt.error_event, fmt.end, fmt.usage_asked)

    def answered(self, answer: dict[str, Any], used: Usage) -> None:
        """A JSON answer: stored when complete."""
        try:
            if forms.complete_answer(self.route, answer):
                self._put(used, answer, None)
        except Exception:  # an answer the cache cannot keep is still the client's answer
            log.exception("response cache: could not store an answer")
        finally:
            self.release()

    def stream_ended(self, result: StreamResult, used: Usage) -> None:
        """A stream: stored when it finished, without an error, its client still there."""
        try:
            whole = result.done and result.error is None and not result.disconnected
            if whole and not self.overflow:
                events = self._events()
                if events is not None:
                    self._put(used, None, events)
        except Exception:  # the stream was the client's; only its entry is lost
            log.exception("response cache: could not store a stream")
        finally:
            self.events = []
            self.release()

    def _put(self, used: Usage, answer: dict[str, Any] | None, events: list[Any] | None) -> None:
        entry = {
            "route": self.route,
            "model": self.model,
            "at": self.cache.clock(),
            "usage": [used.prompt, used.completion],
            "json": answer,
            "events": events,
        }
        self.cache.put(self.key, entry, self.key + LOCK if self.claimed else None)
        self.claimed = False  # let go with the entry written

    def release(self) -> None:
        if self.leader is not None:
            self.cache.release(self.key, self.leader)
            self.leader = None
        if self.claimed:
            self.claimed = False
            self.cache.store.unclaim(self.key + LOCK)

    def _events(self) -> list[Any] | None:
        if self.route == forms.RESPONSES:
            pairs = [(name.decode(), data) for name, data in map(named, self.events)]
            events = [[name, data] for name, data in pairs if data is not None]
            return events if forms.complete_events(events) else None
        chunks = []
        for event in self.events:
            if not event.startswith(b"data:"):
                continue
            payload = event[5:].strip()
            if payload == b"[DONE]":
                continue
            try:
                chunk = orjson.loads(payload)
            except orjson.JSONDecodeError:
                return None
            if not isinstance(chunk, dict) or chunk.get("error"):
                return None
            chunks.append(chunk)
        return forms.complete_chunks(chunks)
