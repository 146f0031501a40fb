"""Which endpoints are ready and what they serve; choosing one for a request.

One :class:`Discovery` per worker. Endpoint states are probed (``/health`` then ``/v1/models``)
in the background every ``interval`` seconds and on demand when a request meets an endpoint it
has not seen yet, or finds nothing usable — never on every request: a probe already running is
shared, and an endpoint checked moments ago is not probed again.

An endpoint whose address the endpoint policy refuses is BLOCKED, not DOWN: it is a setting,
not an outage, its models are forgotten, and a request that finds only blocked endpoints gets
:class:`Blocked` (the policy error), not the usual "no running endpoint" hint.
"""

from __future__ import annotations

import itertools
import logging
import math
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import gevent

from .client import UpstreamClient
from .errors import Blocked, ModelNotServed, NoEndpoint, UpstreamFailure

log = logging.getLogger("packet.discovery")

HEALTHY, LOADING, STARTING, DOWN = "healthy", "loading", "starting", "down"
BLOCKED = "blocked"
WARMING = (LOADING, STARTING)
_FORGET_AFTER = 600.0
_WARMUP_POLL = 0.5
_RECHECK_AFTER = 1.0
NO_HEALTH_ROUTE = (404, 405, 501)


@dataclass(eq=False)
class EndpointState:
    """The last known facts about one upstream base URL (compared by identity)."""

    url: str
    upstream_key: str | None
    label: str
    ident: str = ""  # the endpoint's id for metrics (``pool-N`` for the shared pool), no URL
    status: str = STARTING
    models: dict[str, dict[str, Any]] = field(default_factory=dict)
    checked_at: float = 0.0
    down_until: float = 0.0
    inflight: int = 0
    last_used: float = 0.0
    error: str | None = None
    ever_healthy: bool = False
    refused_since: float | None = None
    health_route: bool = True
    probing: gevent.Greenlet[[EndpointState], None] | None = field(default=None, repr=False)

    def headers(self) -> dict[str, str]:
        """Headers for this endpoint: its own upstream key, never the client's."""
        return {"Authorization": f"Bearer {self.upstream_key}"} if self.upstream_key else {}

    def ready(self, now: float) -> bool:
        """Healthy at the last probe and not cooling off after a failed request."""
        return self.status == HEALTHY and self.down_until <= now

    def cooling_off(self, now: float) -> bool:
        return self.status == HEALTHY and self.down_until > now


@dataclass(frozen=True)
class Target:
    """Where one attempt of a request goes."""

    state: EndpointState
    model: str


class Discovery:
    """Per-worker registry of endpoint states with background refresh and routing."""

    def __init__(
        self,
        client: UpstreamClient,
        *,
        interval: float,
        probe_timeout: float,
        cooloff: float,
        warmup_timeout: float,
        on_state: Callable[[EndpointState, bool], None] = lambda state, cooling: None,
    ) -> None:
        self.client = client
        self.interval = interval
        self.probe_timeout = probe_timeout
        self.cooloff = cooloff
        self.warmup_timeout = warmup_timeout
        self.on_state = on_state
        self._states: dict[tuple[str, str | None], EndpointState] = {}
        self._round_robin = itertools.count()
        self._loop: gevent.Greenlet[[], None] | None = None

    # --- registry -----------------------------------------------------------------------------

    def states(self, endpoints: Iterable[tuple[str, str | None, str, str]]) -> list[EndpointState]:
        """States for (url, upstream key, label, id) rows, probing unseen or stale ones now."""
        now = time.monotonic()
        stale_after = 3 * max(self.interval, _RECHECK_AFTER)
        states, unseen = [], []
        for url, key, label, ident in endpoints:
            state = self._states.get((url, key))
            if state is None:
                state = self._states[(url, key)] = EndpointState(url, key, label, ident)
            if state.checked_at == 0.0 or now - state.checked_at > stale_after:
                unseen.append(state)
            state.last_used = now
            states.append(state)
        if unseen:
            self.refresh(unseen)
        return states

    def refresh(self, states: Sequence[EndpointState], max_age: float = 0.0) -> None:
        """Probe the endpoints not checked within ``max_age`` seconds; wait (bounded).

        A probe already running for an endpoint is joined rather than repeated, so many
        requests meeting the same unseen endpoint cost one probe.
        """
        now = time.monotonic()
        jobs = []
        for state in states:
            if state.probing is None and now - state.checked_at >= max_age:
                state.probing = gevent.spawn(self._probe_once, state)
            if state.probing is not None:
                jobs.append(state.probing)
        if jobs:
            gevent.joinall(jobs, timeout=self.probe_timeout * 2 + 1)

    def _probe_once(self, state: EndpointState) -> None:
        try:
            self.probe(state)
        finally:
            state.probing = None

    def probe(self, state: EndpointState) -> None:
        """Ask one endpoint for its health and its models; update its state.

        A server without a ``/health`` route (llama.cpp's, Ollama, LM Studio, TGI answer it
        404 or 405) is judged by ``/v1/models`` alone, and not asked for its health again.
        """
        try:
            status = 200
            if state.health_route:
                status, _ = self.client.get(
                    f"{state.url}/health", state.headers(), self.probe_timeout
                )
                if status in NO_HEALTH_ROUTE:
                    state.health_route, status = False, 200
            if status == 200:
                self._read_models(state)
            elif status == 503:
                state.status, state.error = LOADING, "model is loading"
            else:
                state.status, state.error = DOWN, f"/health answered {status}"
            state.refused_since = None
        except Blocked as exc:
            self.mark_blocked(state, str(exc))
        except UpstreamFailure as exc:
            state.status = self._unreachable_status(state)
            state.error = str(exc)
        state.checked_at = time.monotonic()
        self.on_state(state, False)

    def _read_models(self, state: EndpointState) -> None:
        code, body = self.client.get(f"{state.url}/v1/models", state.headers(), self.probe_timeout)
        cards = body.get("data") if code == 200 and isinstance(body, dict) else None
        if isinstance(cards, list):
            state.models = {
                c["id"]: _completed(c, state.models.get(c["id"]))
                for c in cards
                if isinstance(c, dict) and isinstance(c.get("id"), str)
            }
            state.status, state.error, state.ever_healthy = HEALTHY, None, True
        elif code == 503:  # a server without /health that is still loading its model
            state.status, state.error = LOADING, "model is loading"
        else:
            state.status, state.error = DOWN, f"/v1/models answered {code}"

    def _unreachable_status(self, state: EndpointState) -> str:
        """STARTING for a new endpoint that refuses connections (vLLM binds its port only once
        the model is loaded) for up to the warm-up bound; DOWN after that, or once it has been
        healthy, so a dead or mistyped URL does not make every request wait."""
        now = time.monotonic()
        if state.refused_since is None:
            state.refused_since = now
        if state.ever_healthy or now - state.refused_since >= self.warmup_timeout:
            return DOWN
        return STARTING

    def mark_down(self, state: EndpointState, reason: str) -> None:
        """Skip this endpoint for the cool-off period (a failed request, not a probe)."""
        log.warning("endpoint %s marked down for %.0fs: %s", state.label, self.cooloff, reason)
        state.down_until = time.monotonic() + self.cooloff
        state.error = reason
        self.on_state(state, True)

    def mark_blocked(self, state: EndpointState, reason: str) -> None:
        """The policy refused the endpoint's address (a probe or a request's new connection)."""
        if state.status != BLOCKED:
            log.warning("endpoint %s blocked by the endpoint policy: %s", state.label, reason)
        state.status, state.error, state.models = BLOCKED, reason, {}
        state.refused_since = None

    def known(self) -> list[EndpointState]:
        """Every endpoint this worker has met (for the metrics' sampler)."""
        return list(self._states.values())

    def start(self) -> None:
        """Start the background refresh loop (once per worker)."""
        if self._loop is None and self.interval > 0:
            self._loop = gevent.spawn(self._run)

    def stop(self) -> None:
        if self._loop is not None:
            self._loop.kill(block=False)
            self._loop = None

    def _run(self) -> None:
        while True:
            gevent.sleep(self.interval)
            now = time.monotonic()
            for key, state in list(self._states.items()):
                if now - state.last_used > _FORGET_AFTER and state.inflight == 0:
                    del self._states[key]
            try:
                self.refresh(list(self._states.values()))
            except Exception:
                log.exception("discovery refresh failed")

    # --- routing ------------------------------------------------------------------------------

    def served_models(self, states: Sequence[EndpointState]) -> dict[str, dict[str, Any]]:
        """Model id → card over the ready endpoints, sorted by id (first endpoint's card wins)."""
        now = time.monotonic()
        models: dict[str, dict[str, Any]] = {}
        for state in states:
            if state.ready(now):
                for model_id, card in state.models.items():
                    models.setdefault(model_id, card)
        return dict(sorted(models.items()))

    def route(
        self, states: Sequence[EndpointState], model: str | None, default_model: str | None = None
    ) -> Target:
        """Pick an endpoint for ``model`` (None = auto), waiting for warming ones if needed.

        When nothing is usable, endpoints not checked for a second are probed once more (the
        state may be stale); while some endpoint is loading or starting, the request waits up
        to the warm-up bound. Then :class:`ModelNotServed` or :class:`NoEndpoint` is raised.
        """
        deadline = time.monotonic() + self.warmup_timeout
        rechecked = False
        while True:
            target = self.pick(states, model, default_model)
            if target is not None:
                return target
            warming = [s for s in states if s.status in WARMING]
            if not warming and not rechecked:
                rechecked = True
                unready = [s for s in states if s.status != HEALTHY]
                if unready:
                    self.refresh(unready, max_age=_RECHECK_AFTER)
                    continue
            remaining = deadline - time.monotonic()
            if not warming or remaining <= 0:
                break
            gevent.sleep(min(_WARMUP_POLL, remaining))
            self.refresh(warming, max_age=_WARMUP_POLL)
        raise self._unavailable(states, model)

    def pick(
        self,
        states: Sequence[EndpointState],
        model: str | None,
        default_model: str | None = None,
        exclude: Sequence[EndpointState] = (),
    ) -> Target | None:
        """A ready endpoint for ``model`` now, or None: fewest requests in flight, ties in turn.

        Auto (``model`` None): the account's default model when a ready endpoint serves it,
        otherwise the alphabetically first model id served.
        """
        now = time.monotonic()
        ready = [s for s in states if s.ready(now) and s not in exclude]
        if not ready:
            return None
        if not model:
            if default_model and any(default_model in s.models for s in ready):
                model = default_model
            else:  # the alphabetically first: a minimum, not a sorted table per request
                model = min((m for s in ready for m in s.models), default=None)
                if model is None:
                    return None
        candidates = [s for s in ready if model in s.models]
        if not candidates:
            return None
        fewest = min(s.inflight for s in candidates)
        tied = [s for s in candidates if s.inflight == fewest]
        return Target(tied[next(self._round_robin) % len(tied)], model)

    def _unavailable(self, states: Sequence[EndpointState], model: str | None) -> UpstreamFailure:
        """404 for a model nobody serves or served; 503 otherwise, with a sensible Retry-After."""
        now = time.monotonic()
        served = self.served_models(states)
        warming = any(s.status in WARMING for s in states)
        known = any(model in s.models for s in states)
        if model and served and not known and not warming:
            return ModelNotServed(model, list(served))
        if not states:
            return NoEndpoint("no endpoint configured")
        if all(s.status == BLOCKED for s in states):
            return Blocked(states[0].error or "blocked by the endpoint policy")
        waits = [self.interval] + [s.down_until - now for s in states if s.cooling_off(now)]
        return NoEndpoint("no ready endpoint", retry_after=max(1, math.ceil(min(waits))))


def _completed(card: dict[str, Any], known: dict[str, Any] | None) -> dict[str, Any]:
    """A model card with the fields OpenAI's clients read, where a sparse server left them out
    (``created`` is when the gateway first saw the model, so it does not change per probe)."""
    if "object" in card and "created" in card and "owned_by" in card:
        return card
    created = known.get("created") if known else None
    return {
        "id": card["id"],
        "object": "model",
        "created": created if isinstance(created, int) else int(time.time()),
        "owned_by": "packet",
    } | card
