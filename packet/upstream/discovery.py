"""Which endpoints are ready and what they serve; choosing one for a request.

One :class:`Discovery` per worker. Endpoint states are probed (``/health`` then ``/v1/models``)
in the background every ``discovery_interval`` seconds and on demand when a request meets an
endpoint it has not seen yet — never on every request.
"""

from __future__ import annotations

import itertools
import logging
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import gevent

from .client import UpstreamClient
from .errors import ModelNotServed, NoEndpoint, UpstreamFailure

log = logging.getLogger("packet.discovery")

HEALTHY, LOADING, STARTING, DOWN = "healthy", "loading", "starting", "down"
_FORGET_AFTER = 600.0
_WARMUP_POLL = 0.5


@dataclass
class EndpointState:
    """The last known facts about one upstream base URL."""

    url: str
    upstream_key: str | None
    label: str
    status: str = STARTING
    models: dict[str, dict[str, Any]] = field(default_factory=dict)
    checked_at: float = 0.0
    down_until: float = 0.0
    inflight: int = 0
    last_used: float = 0.0
    error: str | None = None
    ever_healthy: bool = False

    def headers(self) -> dict[str, str]:
        """Headers for this endpoint: its own upstream key, never the client's."""
        return {"Authorization": f"Bearer {self.upstream_key}"} if self.upstream_key else {}

    def ready(self, now: float) -> bool:
        return self.status == HEALTHY and self.down_until <= now


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
    ) -> None:
        self.client = client
        self.interval = interval
        self.probe_timeout = probe_timeout
        self.cooloff = cooloff
        self.warmup_timeout = warmup_timeout
        self._states: dict[tuple[str, str | None], EndpointState] = {}
        self._round_robin = itertools.count()
        self._loop: gevent.Greenlet | None = None

    # --- registry -----------------------------------------------------------------------------

    def states(self, endpoints: Iterable[tuple[str, str | None, str]]) -> list[EndpointState]:
        """States for (url, upstream key, label) triples, probing unseen ones now."""
        now = time.monotonic()
        states, unseen = [], []
        for url, key, label in endpoints:
            state = self._states.get((url, key))
            if state is None:
                state = self._states[(url, key)] = EndpointState(url, key, label)
            if state.checked_at == 0.0 or now - state.checked_at > 3 * max(self.interval, 1.0):
                unseen.append(state)
            state.last_used = now
            states.append(state)
        if unseen:
            self.refresh(unseen)
        return states

    def refresh(self, states: Sequence[EndpointState]) -> None:
        """Probe the given endpoints concurrently and wait (bounded) for the answers."""
        jobs = [gevent.spawn(self.probe, state) for state in states]
        gevent.joinall(jobs, timeout=self.probe_timeout * 2 + 1)

    def probe(self, state: EndpointState) -> None:
        """Ask one endpoint for its health and its models; update its state."""
        try:
            status, _ = self.client.get(f"{state.url}/health", state.headers(), self.probe_timeout)
            if status == 200:
                code, body = self.client.get(
                    f"{state.url}/v1/models", state.headers(), self.probe_timeout
                )
                cards = body.get("data") if code == 200 and isinstance(body, dict) else None
                if isinstance(cards, list):
                    state.models = {c["id"]: c for c in cards if isinstance(c, dict) and "id" in c}
                    state.status, state.error, state.ever_healthy = HEALTHY, None, True
                else:
                    state.status, state.error = DOWN, f"/v1/models answered {code}"
            elif status == 503:
                state.status, state.error = LOADING, "model is loading"
            else:
                state.status, state.error = DOWN, f"/health answered {status}"
        except UpstreamFailure as exc:
            state.status = DOWN if state.ever_healthy else STARTING
            state.error = str(exc)
        state.checked_at = time.monotonic()

    def mark_down(self, state: EndpointState, reason: str) -> None:
        """Skip this endpoint for the cool-off period (a failed request, not a probe)."""
        log.warning("endpoint %s marked down for %.0fs: %s", state.label, self.cooloff, reason)
        state.down_until = time.monotonic() + self.cooloff
        state.error = reason

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
        """Model id → card, over the ready endpoints (first endpoint's card wins)."""
        now = time.monotonic()
        models: dict[str, dict[str, Any]] = {}
        for state in states:
            if state.ready(now):
                for model_id, card in state.models.items():
                    models.setdefault(model_id, card)
        return dict(sorted(models.items()))

    def route(
        self,
        states: Sequence[EndpointState],
        model: str | None,
        default_model: str | None = None,
        exclude: Sequence[EndpointState] = (),
    ) -> Target:
        """Pick an endpoint for ``model`` (None = auto), waiting for warming ones if needed."""
        deadline = time.monotonic() + self.warmup_timeout
        while True:
            target = self._pick(states, model, default_model, exclude)
            if target is not None:
                return target
            warming = [s for s in states if s not in exclude and s.status in (LOADING, STARTING)]
            if not warming or time.monotonic() >= deadline:
                break
            gevent.sleep(min(_WARMUP_POLL, max(0.0, deadline - time.monotonic())))
            self.refresh(warming)
        served = self.served_models([s for s in states if s not in exclude])
        if model and served:
            raise ModelNotServed(model, list(served))
        raise NoEndpoint(
            "No running inference endpoint found.",
            retry_after=int(max(self.interval, 1))
            if any(s.status in (LOADING, STARTING) for s in states)
            else None,
        )

    def _pick(
        self,
        states: Sequence[EndpointState],
        model: str | None,
        default_model: str | None,
        exclude: Sequence[EndpointState],
    ) -> Target | None:
        now = time.monotonic()
        ready = [s for s in states if s.ready(now) and s not in exclude]
        if not ready:
            return None
        if not model:
            served = self.served_models(ready)
            if not served:
                return None
            model = default_model if default_model in served else next(iter(served))
        candidates = [s for s in ready if model in s.models]
        if not candidates:
            return None
        fewest = min(s.inflight for s in candidates)
        tied = [s for s in candidates if s.inflight == fewest]
        return Target(tied[next(self._round_robin) % len(tied)], model)
